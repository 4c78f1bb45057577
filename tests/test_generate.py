"""Generation library: txt2img / img2img / inpaint, LoRA, embeddings, VAE, SDXL refiner, single-file
checkpoints, reproducibility and publishing. Tiny random-weight models, 64x64, 2 steps."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import tiny_models as tm
from PIL import Image

from generator.errors import GenerationError, ModelLoadError
from generator.generate import Generator
from generator.models import load_model
from generator.publishing import PublishOptions, next_index, slug
from generator.samplers import BASES, parse_sampler
from generator.settings import Settings, parse_embedding, parse_lora, parse_size
from guard.errors import ModelNotFoundError
from guard.webui.infotext import GENERATION_ASSERTION, Infotext, read_file


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("gen_files")
    folder = tm.sd_folder(tmp_path_factory)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GUARD_HOME", str(root / "home"))
        from diffusers import StableDiffusionPipeline

        pipe = StableDiffusionPipeline.from_pretrained(folder)
        lora = tm.save_lora(pipe, root / "detail.safetensors")
    return {
        "folder": folder,
        "lora": lora,
        "embedding": tm.save_embedding(root / "EasyNegative.safetensors"),
        "embedding_pt": tm.save_embedding(root / "badhands.pt", vectors=1, seed=5),
        "root": root,
    }


@pytest.fixture(scope="module")
def model(files, tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GUARD_HOME", str(tmp_path_factory.mktemp("home")))
        return load_model(files["folder"], progress=False)


@pytest.fixture(scope="module")
def gen(model):
    return Generator(model, progress=False)


def settings(**kw) -> Settings:
    base = {"prompt": "a blue bird", "steps": 2, "width": 64, "height": 64, "seed": 42}
    base.update(kw)
    return Settings(**base)


def pixels(made) -> np.ndarray:
    return np.asarray(made.image.convert("RGB"), dtype=np.int16)


def one(gen, **kw) -> np.ndarray:
    return pixels(next(gen.images(settings(**kw))))


def manifest(path: Path):
    from guard.verdict import verify

    return verify(path, watermark=False)


# ---- txt2img and publishing --------------------------------------------------------------------
def test_txt2img_writes_a_signed_png_with_web_ui_infotext(gen, model, tmp_path):
    [item] = gen.generate(
        settings(prompt="A blue bird, flying!"), tmp_path, PublishOptions(watermark=False)
    )
    assert item.path == tmp_path / "00000-42-a-blue-bird-flying.png"
    info, where = read_file(item.path)
    assert where == "PNG text chunk"
    assert info.to_text() == item.infotext.to_text()
    assert info.params["Seed"] == "42" and info.params["Steps"] == "2"
    # web UI 1.10 writes the sampler and its schedule type as two fields
    assert (info.params["Sampler"], info.params["Schedule type"]) == ("DPM++ 2M", "Karras")
    assert info.params["RNG"] == "CPU"
    assert info.params["Model"] == "tiny-sd"
    assert info.params["Model hash"] == model.hash
    # a folder model's hash is its UNet weights file's sha256, 10 digits
    weights = model.ref.path / "unet" / "diffusion_pytorch_model.safetensors"
    assert model.hash == hashlib.sha256(weights.read_bytes()).hexdigest()[:10]

    v = manifest(item.path)
    assert v.state == "trusted"  # the local identity's CA is trusted on this machine
    assert v.digital_source_type.endswith("trainedAlgorithmicMedia")
    assert v.training == "notAllowed"
    assert v.c2pa.actions[0]["action"] == "c2pa.created"
    assert "tiny-sd" in (v.c2pa.actions[0]["software_agent"] or "")
    data = v.c2pa.assertions[GENERATION_ASSERTION]
    assert data["seed"] == 42 and data["steps"] == 2 and data["task"] == "txt2img"
    assert data["prompt"] == "A blue bird, flying!"
    assert Infotext.from_dict(data).to_text() == item.infotext.to_text()


def test_training_permission_is_recorded(gen, tmp_path):
    [item] = gen.generate(settings(), tmp_path, PublishOptions(watermark=False, training="allowed"))
    assert manifest(item.path).training == "allowed"


@pytest.mark.parametrize("fmt", ["jpg", "webp"])
def test_other_formats_carry_infotext_in_exif(gen, tmp_path, fmt):
    [item] = gen.generate(settings(), tmp_path, PublishOptions(watermark=False, fmt=fmt))
    assert item.path.suffix == f".{fmt}"
    info, where = read_file(item.path)
    assert where == "EXIF UserComment"
    assert info.to_text() == item.infotext.to_text()
    assert manifest(item.path).state == "trusted"


# ---- seeds ---------------------------------------------------------------------------------------
def test_same_seed_same_pixels_and_different_seed_differs(gen):
    a, b, c = one(gen, seed=5), one(gen, seed=5), one(gen, seed=6)
    assert np.array_equal(a, b)
    assert np.abs(a - c).mean() > 1


def test_batches_use_consecutive_seeds_like_web_ui(gen):
    made = list(gen.images(settings(seed=10, batch_count=2, batch_size=2)))
    assert [m.seed for m in made] == [10, 11, 12, 13]
    assert [m.index for m in made] == [0, 1, 2, 3]
    assert [m.infotext.params["Seed"] for m in made] == ["10", "11", "12", "13"]
    # an image's noise does not depend on its batch: seed 13 alone gives the same picture, up to
    # float rounding of batched math (the same settings, batch size included, give identical pixels)
    assert np.abs(pixels(made[3]) - one(gen, seed=13)).max() <= 2
    again = list(gen.images(settings(seed=10, batch_count=2, batch_size=2)))
    assert all(np.array_equal(pixels(a), pixels(b)) for a, b in zip(made, again, strict=True))


def test_random_seed_is_recorded_and_reproduces(gen):
    made = next(gen.images(settings(seed=-1)))
    assert 0 <= made.seed < 2**32
    assert made.infotext.params["Seed"] == str(made.seed)
    assert np.array_equal(pixels(made), one(gen, seed=made.seed))


def test_files_are_numbered_and_never_overwritten(gen, tmp_path):
    existing = tmp_path / "00000-42-a-blue-bird.png"
    existing.write_bytes(b"someone else's file")
    (tmp_path / "00006-1-other.png").write_bytes(b"x")
    items = gen.generate(settings(batch_size=2), tmp_path, PublishOptions(watermark=False))
    assert [p.path.name for p in items] == ["00007-42-a-blue-bird.png", "00008-43-a-blue-bird.png"]
    assert existing.read_bytes() == b"someone else's file"
    assert next_index(tmp_path) == 9


# ---- img2img and inpainting ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def init_and_mask(files):
    root = files["root"]
    rng = np.random.default_rng(0)
    init = Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    init.save(root / "init.png")
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (24, 24, 40, 40))
    mask.save(root / "mask.png")
    return root / "init.png", root / "mask.png"


def test_img2img(gen, tmp_path, init_and_mask):
    init, _ = init_and_mask
    weak = one(gen, init_image=init, strength=0.3, steps=4)
    strong = one(gen, init_image=init, strength=0.9, steps=4)
    assert not np.array_equal(weak, strong)
    [item] = gen.generate(
        settings(init_image=init, strength=0.6), tmp_path, PublishOptions(watermark=False)
    )
    assert item.infotext.params["Denoising strength"] == "0.6"
    v = manifest(item.path)
    assert v.state == "trusted"
    assert "c2pa.edited" in [a["action"] for a in v.c2pa.actions]
    assert [(i["relationship"], i["title"]) for i in v.c2pa.ingredients] == [
        ("parentOf", "init.png")
    ]
    assert v.c2pa.assertions[GENERATION_ASSERTION]["task"] == "img2img"


def test_img2img_size_defaults_to_the_init_image(gen, files):
    src = files["root"] / "odd.png"
    Image.new("RGB", (75, 67), "gray").save(src)
    made = next(gen.images(Settings("x", steps=2, init_image=src, seed=1)))
    assert made.image.size == (72, 64)  # rounded down to multiples of 8
    assert made.infotext.params["Size"] == "72x64"


def test_img2img_size_follows_the_init_images_exif_orientation(gen, files):
    """A phone photo stores its pixels sideways and says so in EXIF: the output takes the upright
    size, as the picture is shown and as it is fed to the pipeline (it was 96x64 before)."""
    src = files["root"] / "portrait.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    Image.new("RGB", (96, 64), "gray").save(src, exif=exif.tobytes())
    _, checked = gen.check(Settings("x", steps=2, init_image=src, seed=1))
    assert (checked.width, checked.height) == (64, 96)


def test_inpaint_keeps_pixels_outside_the_mask(gen, tmp_path, init_and_mask):
    init, mask = init_and_mask
    original = np.asarray(Image.open(init).convert("RGB"), dtype=np.int16)
    out = one(gen, init_image=init, mask=mask, mask_blur=0, strength=1.0)
    outside = np.ones((64, 64), bool)
    outside[24:40, 24:40] = False
    assert np.array_equal(out[outside], original[outside])
    assert np.abs(out[~outside] - original[~outside]).mean() > 5

    [item] = gen.generate(
        settings(init_image=init, mask=mask), tmp_path, PublishOptions(watermark=False)
    )
    assert item.infotext.params["Mask blur"] == "4"
    v = manifest(item.path)
    assert "c2pa.edited" in [a["action"] for a in v.c2pa.actions]
    rel = sorted((i["relationship"], i["title"]) for i in v.c2pa.ingredients)
    assert rel == [("inputTo", "mask.png"), ("parentOf", "init.png")]
    assert v.digital_source_type.endswith("compositeWithTrainedAlgorithmicMedia")


def test_transparent_mask_areas_are_kept(gen, init_and_mask, files):
    init, _ = init_and_mask
    rgba = Image.new("RGBA", (64, 64), (255, 255, 255, 0))  # white but fully transparent
    rgba.paste((255, 255, 255, 255), (0, 0, 16, 16))
    rgba.save(files["root"] / "alpha-mask.png")
    original = np.asarray(Image.open(init).convert("RGB"), dtype=np.int16)
    out = one(gen, init_image=init, mask=files["root"] / "alpha-mask.png", mask_blur=0)
    assert np.array_equal(out[16:, 16:], original[16:, 16:])


# ---- LoRA and textual inversion ------------------------------------------------------------------
def test_lora_changes_the_image_and_is_recorded(gen, files):
    lora = files["lora"]
    base = one(gen)
    made = next(gen.images(settings(loras=[(lora, 0.8)])))
    assert np.abs(pixels(made) - base).mean() > 0.5
    assert made.infotext.prompt == "a blue bird <lora:detail:0.8>"
    with lora.open("rb") as f:  # web UI's "addnet" hash: sha256 of the tensors after the header
        n = int.from_bytes(f.read(8), "little")
        f.seek(8 + n)
        addnet = hashlib.sha256(f.read()).hexdigest()[:12]
    assert made.infotext.get("Lora hashes") == {"detail": addnet}
    # weights are unloaded after the run
    assert np.array_equal(one(gen), base)
    # a weight of 0 is the same as no LoRA
    assert np.array_equal(one(gen, loras=[(lora, 0.0)]), base)


def test_lora_weight_from_a_prompt_tag(gen, files):
    made = next(
        gen.images(settings(prompt="a blue bird <lora:detail:0.3>", loras=[(files["lora"], 1.0)]))
    )
    assert made.infotext.prompt == "a blue bird <lora:detail:0.3>"
    assert np.array_equal(pixels(made), one(gen, loras=[(files["lora"], 0.3)]))


def test_lora_tag_without_a_file_is_an_error(gen):
    with pytest.raises(GenerationError, match=r"--lora path/to/missing\.safetensors"):
        next(gen.images(settings(prompt="x <lora:missing:1>")))


def test_embedding_acts_through_its_token(gen, files):
    emb = files["embedding"]
    base = one(gen, negative_prompt="lowres")
    unused = one(gen, negative_prompt="lowres", embeddings=[(emb, None)])
    assert np.array_equal(base, unused)  # loaded but not in any prompt: no effect
    made = next(gen.images(settings(negative_prompt="EasyNegative", embeddings=[(emb, None)])))
    assert np.abs(pixels(made) - one(gen, negative_prompt="EasyNegative")).mean() > 0.1
    digest = hashlib.sha256(emb.read_bytes()).hexdigest()[:12]
    assert made.infotext.get("TI hashes") == {"EasyNegative": digest}
    # the token is removed again after the run
    assert gen.model.pipe.tokenizer.convert_tokens_to_ids("EasyNegative") in (
        None,
        gen.model.pipe.tokenizer.unk_token_id,
    )


def test_web_ui_pt_embedding_with_a_custom_token(gen, files):
    made = next(
        gen.images(
            settings(
                prompt="a blue bird, hands-tok", embeddings=[(files["embedding_pt"], "hands-tok")]
            )
        )
    )
    assert "hands-tok" in made.infotext.get("TI hashes")
    assert not np.array_equal(pixels(made), one(gen, prompt="a blue bird, hands-tok"))


# ---- samplers ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_every_sampler_runs_in_the_pipeline(gen):
    outputs = {}
    for name in [*BASES, "Euler SGM Uniform", "DPM++ 2M Exponential", "Euler Align Your Steps"]:
        # 4 steps: at 2, web UI's schedules all give sigma_max, sigma_min, 0 and first-order
        # steps coincide
        made = next(gen.images(settings(sampler=name, seed=3, steps=4)))
        chosen = parse_sampler(name)
        assert made.infotext.params["Sampler"] == chosen.base
        assert made.infotext.params["Schedule type"] == chosen.schedule
        outputs[name] = pixels(made)
        assert made.image.size == (64, 64)
    distinct = {o.tobytes() for o in outputs.values()}
    assert len(distinct) == len(outputs)  # samplers and schedules really differ
    # stochastic samplers are reproducible too (Brownian tree seeded from the image seed)
    assert np.array_equal(one(gen, sampler="DPM++ SDE", seed=3, steps=4), outputs["DPM++ SDE"])
    assert np.array_equal(one(gen, sampler="Euler a", seed=3, steps=4), outputs["Euler a"])


# ---- models --------------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".safetensors", ".ckpt"])
def test_single_file_checkpoint_round_trip(files, tmp_path_factory, gen, suffix):
    single = tm.sd_single_file(tmp_path_factory, suffix)
    m = load_model(single, config=files["folder"], progress=False)
    assert m.ref.kind == "single_file" and m.family == "sd"
    assert m.hash == hashlib.sha256(single.read_bytes()).hexdigest()[:10]
    assert m.name == single.stem
    made = next(Generator(m, progress=False).images(settings()))
    assert made.infotext.params["Model"] == single.stem
    assert np.array_equal(pixels(made), one(gen))  # same weights -> same pixels


def test_sdxl_single_file_checkpoint_round_trip(tmp_path_factory):
    folder = load_model(tm.sdxl_folder(tmp_path_factory), progress=False)
    single = load_model(
        tm.sdxl_single_file(tmp_path_factory),
        config=tm.sdxl_folder(tmp_path_factory),
        progress=False,
    )
    assert single.family == "sdxl" and type(single.pipe).__name__ == "StableDiffusionXLPipeline"
    a = next(Generator(folder, progress=False).images(settings()))
    b = next(Generator(single, progress=False).images(settings()))
    assert np.array_equal(pixels(a), pixels(b))


def test_single_file_offline_without_config_says_how_to_fix(tmp_path_factory):
    single = tm.sd_single_file(tmp_path_factory)
    with pytest.raises(ModelNotFoundError) as info:
        load_model(single, progress=False)
    msg = str(info.value)
    assert str(single) in msg
    assert "--config" in msg and "stable-diffusion-v1-5/stable-diffusion-v1-5" in msg
    assert "hub cannot be reached" in msg


def test_uncached_hub_id_offline():
    with pytest.raises(ModelNotFoundError) as info:
        load_model("someone/not-a-cached-model", progress=False)
    msg = str(info.value)
    assert "'someone/not-a-cached-model'" in msg
    assert "hub cannot be reached" in msg
    assert "local diffusers folder" in msg and "--model" in msg


def test_not_a_model(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match=r"model_index\.json"):
        load_model(tmp_path / "empty", progress=False)
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(ModelNotFoundError, match="cannot be read as a model checkpoint"):
        load_model(bad, progress=False)


@pytest.mark.parametrize("kind", ["single_file", "folder"])
def test_vae_override(files, gen, tmp_path, kind):
    if kind == "single_file":
        vae = tm.save_vae_single_file(tmp_path / "other-vae.safetensors")
    else:
        vae = tm.save_vae_folder(tmp_path / "other-vae")
    m = load_model(files["folder"], vae=vae, progress=False)
    made = next(Generator(m, progress=False).images(settings()))
    assert made.infotext.params["VAE"] == "other-vae"
    assert len(made.infotext.params["VAE hash"]) == 10
    assert np.abs(pixels(made) - one(gen)).mean() > 1


def test_vae_of_another_architecture_is_refused(files, tmp_path):
    from diffusers import AutoencoderKL
    from safetensors.torch import save_file

    other = AutoencoderKL(block_out_channels=(8, 16), norm_num_groups=4, latent_channels=4)
    save_file(
        {k: v.contiguous() for k, v in other.state_dict().items()}, tmp_path / "x.safetensors"
    )
    with pytest.raises(ModelLoadError, match="does not fit model"):
        load_model(files["folder"], vae=tmp_path / "x.safetensors", progress=False)


def test_sdxl_with_refiner(tmp_path_factory):
    base = load_model(tm.sdxl_folder(tmp_path_factory), progress=False)
    refiner = load_model(
        tm.sdxl_folder(tmp_path_factory, refiner=True), share_from=base, progress=False
    )
    assert base.family == "sdxl" and refiner.refiner_only
    assert refiner.pipe.vae is base.pipe.vae  # shared, not loaded twice
    plain = next(Generator(base, progress=False).images(settings()))
    both = Generator(base, refiner, progress=False)
    made = next(both.images(settings(refiner_switch=0.5, steps=4)))
    assert made.image.size == (64, 64)
    assert made.infotext.params["Refiner"] == f"tiny-sdxl-refiner [{refiner.hash}]"
    assert made.infotext.params["Refiner switch at"] == "0.5"
    assert not np.array_equal(pixels(made), pixels(plain))
    again = next(both.images(settings(refiner_switch=0.5, steps=4)))
    assert np.array_equal(pixels(made), pixels(again))
    with pytest.raises(ModelLoadError, match="refiner"):
        next(Generator(refiner, progress=False).images(settings()))


def test_refiner_needs_an_sdxl_base(model, tmp_path_factory):
    refiner = load_model(tm.sdxl_folder(tmp_path_factory, refiner=True), progress=False)
    with pytest.raises(GenerationError, match="not an SDXL model"):
        Generator(model, refiner)


# ---- settings that cannot work fail before any model work ----------------------------------------
@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"width": 60, "height": 64}, "multiples of 8"),
        ({"steps": 0}, "--steps"),
        ({"strength": 0.0}, "--strength"),
        ({"init_image": Path(__file__), "strength": 0.3}, "leaves no denoising step"),
        ({"batch_size": 0}, "at least 1"),
        ({"seed": -2}, "--seed"),
        ({"mask": Path("m.png")}, "--mask needs --init-image"),
        ({"init_image": Path("nope.png")}, "no such file"),
        ({"loras": [(Path("nope.safetensors"), 1.0)]}, r"--lora nope\.safetensors: no such file"),
        ({"sampler": "Euler z"}, "unknown sampler"),
    ],
)
def test_bad_settings(gen, kw, match, tmp_path):
    with pytest.raises(Exception, match=match):
        gen.generate(settings(**kw), tmp_path / "out", PublishOptions(watermark=False))
    assert not (tmp_path / "out").exists()


def test_argument_parsers(tmp_path):
    assert parse_size("512x768") == (512, 768)
    assert parse_size("640") == (640, 640)
    with pytest.raises(GenerationError):
        parse_size("big")
    assert parse_lora("a/detail.safetensors:0.6") == (Path("a/detail.safetensors"), 0.6)
    assert parse_lora("detail.safetensors") == (Path("detail.safetensors"), 1.0)
    assert parse_embedding("EasyNegative.safetensors:easyneg") == (
        Path("EasyNegative.safetensors"),
        "easyneg",
    )
    odd = tmp_path / "name:with:colons.pt"
    odd.write_bytes(b"x")
    assert parse_embedding(str(odd)) == (odd, None)
    assert (
        slug("A blue bird, flying over a field of flowers!")
        == "a-blue-bird-flying-over-a-field-of-flowers"
    )
    assert slug("<lora:x:1> ☃ ") == "image"
    assert slug("猫の絵") == "猫の絵"
    assert len(slug("word " * 40)) <= 48


def test_generation_assertion_is_json_and_complete(gen, tmp_path, files):
    [item] = gen.generate(
        settings(
            negative_prompt="EasyNegative",
            embeddings=[(files["embedding"], None)],
            loras=[(files["lora"], 0.5)],
        ),
        tmp_path,
        PublishOptions(watermark=False),
    )
    data = manifest(item.path).c2pa.assertions[GENERATION_ASSERTION]
    json.dumps(data)
    for key in (
        "prompt",
        "negative_prompt",
        "steps",
        "sampler",
        "cfg_scale",
        "seed",
        "width",
        "height",
        "model",
        "model_hash",
        "lora_hashes",
        "ti_hashes",
        "loras",
        "version",
    ):
        assert key in data, key
    assert data["loras"] == [{"name": "detail", "weight": 0.5}]


def _watermark_ready() -> bool:
    import guard.watermark

    return hasattr(guard.watermark, "embed")


@pytest.mark.skipif(not _watermark_ready(), reason="guard.watermark not built yet")
def test_output_verifies_trusted_ai_generated_with_watermark(gen, tmp_path):
    """The whole promise at once: 256 px (the watermark's minimum), default publishing."""
    from guard.verdict import verify

    [item] = gen.generate(settings(width=256, height=256, seed=11), tmp_path)
    assert item.watermark_id is not None and item.notes == []
    v = verify(item.path)
    assert v.state == "trusted"
    assert v.digital_source_type.endswith("trainedAlgorithmicMedia")
    assert v.watermark.found and v.watermark.id == item.watermark_id
    assert v.ledger is not None and v.ledger.file_matches_record
    assert v.training == "notAllowed"


# ---- web UI prompt syntax at sampling time -------------------------------------------------------
class _UnetCalls:
    """The text conditioning the UNet receives at each call (one call per step, CFG batched)."""

    def __init__(self, pipe):
        self.states = []
        self.unet = pipe.unet

    def __enter__(self):
        def hook(module, args, kwargs):
            self.states.append(kwargs["encoder_hidden_states"].detach().clone())

        self.handle = self.unet.register_forward_pre_hook(hook, with_kwargs=True)
        return self.states

    def __exit__(self, *exc):
        self.handle.remove()


def _plain_rows(pipe, texts):
    """Independent reference: each text as one 77-token row through the text encoder."""
    import torch

    tok = pipe.tokenizer
    rows = [tok(t, padding="max_length", max_length=77).input_ids for t in texts]
    with torch.no_grad():
        return pipe.text_encoder(torch.tensor(rows)).last_hidden_state


@pytest.mark.parametrize(
    ("prompt", "sampler", "steps", "expected"),
    [
        # [from:to:when]: `from` up to and including the step numbered `when` (0-based count)
        ("a [red:blue:2] bird", "Euler", 5, ["red", "red", "red", "blue", "blue"]),
        ("a [red:blue:0.4] bird", "Euler", 5, ["red", "red", "red", "blue", "blue"]),
        # [a|b]: web UI shows the first option on steps 0 and 1, then one option per step
        ("a [red|blue] bird", "Euler", 4, ["red", "red", "blue", "red"]),
        # a second-order sampler: web UI doubles the steps and counts every model call
        ("a [red:blue:2] bird", "Heun", 3, ["red", "red", "red", "blue", "blue"]),
    ],
)
def test_prompt_editing_switches_the_conditioning_at_web_uis_step(
    gen, prompt, sampler, steps, expected
):
    import torch

    pipe = gen.model.pipe
    with _UnetCalls(pipe) as states:
        next(gen.images(settings(prompt=prompt, sampler=sampler, steps=steps)))
    red, blue = _plain_rows(pipe, ["a red bird", "a blue bird"])
    assert len(states) == len(expected)
    for state, word in zip(states, expected):
        torch.testing.assert_close(state[1], red if word == "red" else blue)  # [negative, prompt]


def test_a_150_token_prompts_last_words_change_the_image(gen):
    filler = " ".join(["b"] * 140)
    pipe = gen.model.pipe
    with _UnetCalls(pipe) as states:
        a = one(gen, prompt=filler + " red cat" * 4, cfg_scale=12)
    b = one(gen, prompt=filler + " blue bird" * 4, cfg_scale=12)
    assert states[0].shape[1] == 154  # tokens 141-148 are in a second 77-token chunk
    # truncated at 77 tokens, the two prompts would give identical pixels
    assert np.abs(a - b).mean() > 0.1


def test_weighted_prompt_reaches_the_unet_as_web_ui_weights_it(gen):
    """web UI's "Original" emphasis, end to end: the UNet gets the plain encoding with the weighted
    token's row times 1.6, then the whole chunk rescaled to the plain chunk's mean. The final layer
    norm gets a learned-looking bias for the test, as real CLIP has: an untrained one centres every
    token, so there would be no mean to restore. (A pixel threshold, as before, measured only how
    much one row of 77 moves a random-weight UNet: 0.26 grey levels under torch 2.14.)"""
    import torch

    pipe = gen.model.pipe
    encoder = pipe.text_encoder
    norm = getattr(encoder, "final_layer_norm", None) or encoder.text_model.final_layer_norm
    saved = norm.bias.detach().clone()
    try:
        with torch.no_grad():
            norm.bias.copy_(
                torch.randn(norm.bias.shape, generator=torch.Generator().manual_seed(3))
            )
        plain = _plain_rows(pipe, ["a blue bird"])[0]
        ids = pipe.tokenizer("a blue bird", padding="max_length", max_length=77).input_ids
        [blue] = pipe.tokenizer("blue", add_special_tokens=False).input_ids
        row = ids.index(blue)
        weights = torch.ones(77, 1)
        weights[row] = 1.6
        expected = plain * weights * (plain.mean() / (plain * weights).mean())
        assert abs(plain.mean()) > 1e-3  # the mean restoration is really exercised

        with _UnetCalls(pipe) as weighted_calls:
            weighted = one(gen, prompt="a (blue:1.6) bird")
        with _UnetCalls(pipe) as plain_calls:
            unweighted = one(gen, prompt="a blue bird")
    finally:
        with torch.no_grad():
            norm.bias.copy_(saved)
    for state in weighted_calls:  # CFG batches [negative, positive]
        torch.testing.assert_close(state[1], expected)
    for state in plain_calls:
        torch.testing.assert_close(state[1], plain)
    ratio = weighted_calls[0][1] / plain
    torch.testing.assert_close(ratio[row], ratio[row + 1] * 1.6)  # the weighted row, 1.6 times
    assert (weighted != unweighted).any()  # and the weighting reaches the pixels


def test_and_is_refused_with_an_explanation(gen):
    with pytest.raises(GenerationError, match="AND"):
        next(gen.images(settings(prompt="a cat AND a dog")))


# ---- hires fix ------------------------------------------------------------------------------------
def hires(**kw):
    from generator.hires import Hires

    return Hires(**kw)


def test_hires_fix_makes_the_larger_image_and_writes_web_ui_infotext(gen, tmp_path):
    s = settings(steps=2, hires=hires(scale=2, steps=3, upscaler="Latent", denoise=0.5))
    with _UnetCalls(gen.model.pipe) as states:
        [item] = gen.generate(s, tmp_path, PublishOptions(watermark=False))
    assert len(states) == 2 + 3  # the first pass, then exactly --hires-steps steps
    assert [st.shape[0] for st in states] == [2] * 5
    assert Image.open(item.path).size == (128, 128)
    info, _ = read_file(item.path)
    assert info.params["Size"] == "64x64"  # web UI writes the first pass's size
    text = info.to_text().splitlines()[-1]
    assert "Denoising strength: 0.5, RNG: CPU, Hires upscale: 2, Hires steps: 3, " in text
    assert "Hires upscaler: Latent, Version:" in text
    data = manifest(item.path).c2pa.assertions[GENERATION_ASSERTION]
    assert data["hires_upscale"] == 2.0 and data["hires_steps"] == 3
    assert data["hires_upscaler"] == "Latent" and data["denoising_strength"] == 0.5


@pytest.mark.parametrize("upscaler", ["Lanczos", "Nearest", "Latent (nearest-exact)", "None"])
def test_hires_size_crops_like_web_ui(gen, upscaler):
    made = next(gen.images(settings(hires=hires(size=(128, 96), upscaler=upscaler))))
    # 64x64 covers 128x96 at 128x128, then web UI crops the latent to 128x96
    assert made.image.size == (128, 96)
    assert made.infotext.params["Hires resize"] == "128x96"
    assert "Hires upscale" not in made.infotext.params
    assert made.infotext.params["Denoising strength"] == "0.7"  # web UI's default


@pytest.mark.parametrize(("steps", "denoise"), [(3, 0.3), (4, 0.75), (5, 1.0), (1, 0.05)])
def test_hires_runs_exactly_hires_steps_from_web_uis_start(gen, steps, denoise):
    from generator.hires import img2img_schedule

    total, strength = img2img_schedule(steps, denoise)
    # web UI: a schedule of int(steps / denoise) steps, of which the last `steps` run
    assert total == max(steps, int(steps / min(denoise, 0.999)))
    assert min(int(total * strength), total) == steps  # what diffusers runs
    with _UnetCalls(gen.model.pipe) as states:
        next(gen.images(settings(steps=2, hires=hires(steps=steps, denoise=denoise))))
    assert len(states) == 2 + steps


def test_hires_upscalers_resize_as_web_ui():
    import torch

    from generator import hires as hr

    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    t = hr.target(64, 64, hires(size=(128, 96)))
    assert (t.upscale_to, t.truncate, t.size) == ((128, 128), (0, 4), (128, 96))
    out = hr.upscale_latents(latents, t, "Latent (bicubic antialiased)")
    full = torch.nn.functional.interpolate(latents, size=(16, 16), mode="bicubic", antialias=True)
    torch.testing.assert_close(out, full[:, :, 2:14, :])  # 4 rows cut, 2 at each end
    assert hr.target(64, 48, hires(size=(0, 96))).size == (128, 96)  # 0: keep the aspect ratio
    assert hr.target(64, 64, hires(scale=1.5)).size == (96, 96)

    picture = Image.fromarray(np.arange(48 * 64 * 3, dtype=np.uint8).reshape(48, 64, 3))
    nearest = hr.upscale_image(picture, (128, 96), "Nearest")
    assert np.array_equal(
        np.asarray(nearest), np.asarray(picture.resize((128, 96), Image.Resampling.NEAREST))
    )
    lanczos = hr.upscale_image(picture, (100, 75), "Lanczos")
    # web UI's Lanczos upscaler: scale by 1.5625, snap to multiples of 8, then Lanczos to the size
    step = picture.resize((100, 75), Image.Resampling.LANCZOS).resize(
        (96, 72), Image.Resampling.LANCZOS
    )
    assert np.array_equal(
        np.asarray(lanczos), np.asarray(step.resize((100, 75), Image.Resampling.LANCZOS))
    )


def test_hires_settings_are_checked_before_any_model_work(tmp_path):
    from generator.hires import parse_upscaler
    from generator.settings import validate

    assert parse_upscaler("latent-bicubic-antialiased") == "Latent (bicubic antialiased)"
    assert parse_upscaler("lanczos") == "Lanczos"
    with pytest.raises(GenerationError, match="weights"):
        parse_upscaler("R-ESRGAN 4x+")
    with pytest.raises(GenerationError, match="unknown upscaler"):
        parse_upscaler("bilinear")
    with pytest.raises(GenerationError, match="--hires-upscaler 4x-UltraSharp"):
        validate(settings(hires=hires(upscaler="4x-UltraSharp")))
    init = tmp_path / "init.png"
    Image.new("RGB", (64, 64)).save(init)
    with pytest.raises(GenerationError, match="txt2img"):
        validate(settings(init_image=init, hires=hires()))
    with pytest.raises(GenerationError, match="--hires-denoise"):
        validate(settings(hires=hires(denoise=0)))
    with pytest.raises(GenerationError, match="final size"):
        validate(settings(width=1024, height=1024, hires=hires(scale=8)))


def test_sdxl_editing_switches_both_encoders_and_the_pooled_vector_and_reaches_the_refiner(
    tmp_path_factory,
):
    import torch

    base = load_model(tm.sdxl_folder(tmp_path_factory), progress=False)
    refiner = load_model(
        tm.sdxl_folder(tmp_path_factory, refiner=True), share_from=base, progress=False
    )
    seen = {"base": [], "refiner": []}

    def recorder(name):
        def hook(module, args, kwargs):
            pooled = kwargs["added_cond_kwargs"]["text_embeds"]
            seen[name].append((kwargs["encoder_hidden_states"][1], pooled[1]))

        return hook

    handles = [
        base.pipe.unet.register_forward_pre_hook(recorder("base"), with_kwargs=True),
        refiner.pipe.unet.register_forward_pre_hook(recorder("refiner"), with_kwargs=True),
    ]
    try:
        s = settings(prompt="a [red:blue:1] bird", sampler="Euler", steps=6, refiner_switch=0.5)
        next(Generator(base, refiner, progress=False).images(s))
    finally:
        for h in handles:
            h.remove()

    def reference(pipe, text):  # diffusers' own encoding of a plain prompt
        embeds, _, pooled, _ = pipe.encode_prompt(
            text, device="cpu", do_classifier_free_guidance=False
        )
        return embeds[0], pooled[0]

    red, blue = reference(base.pipe, "a red bird"), reference(base.pipe, "a blue bird")
    assert len(seen["base"]) == 3 and len(seen["refiner"]) == 3
    # steps 0 and 1 read "red", then "blue": both encoders' states and SDXL's pooled vector switch
    for (states, pooled), want in zip(seen["base"], (red, red, blue)):
        torch.testing.assert_close(states, want[0])
        torch.testing.assert_close(pooled, want[1])
    # the refiner carries on at web UI's steps 3 to 5, with its own encoder
    refined_blue = reference(refiner.pipe, "a blue bird")
    for states, pooled in seen["refiner"]:
        torch.testing.assert_close(states, refined_blue[0])
        torch.testing.assert_close(pooled, refined_blue[1])


def test_sdxl_hires_fix(tmp_path_factory):
    base = load_model(tm.sdxl_folder(tmp_path_factory), progress=False)
    made = next(
        Generator(base, progress=False).images(
            settings(prompt="a blue bird, " * 30, hires=hires(scale=2, upscaler="Lanczos", steps=2))
        )
    )
    assert made.image.size == (128, 128)
    assert made.infotext.params["Hires upscaler"] == "Lanczos"
