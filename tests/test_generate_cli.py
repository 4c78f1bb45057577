"""`guard generate` and `guard info` as a user and a script see them: every option, messages, exit
codes, JSON. Tiny random-weight models, 64x64, 2 steps."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tiny_models as tm
from click.testing import CliRunner
from PIL import Image, PngImagePlugin

from generator.publishing import PublishOptions
from guard.cli import main
from guard.webui.infotext import read_file


def run(*args: str | Path, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, [str(a) for a in args], env=env, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_files")
    folder = tm.sd_folder(tmp_path_factory)
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(folder)
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(root / "init.png")
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    mask.save(root / "mask.png")
    return {
        "folder": folder,
        "lora": tm.save_lora(pipe, root / "detail.safetensors"),
        "embedding": tm.save_embedding(root / "EasyNegative.safetensors"),
        "vae": tm.save_vae_single_file(root / "other-vae.safetensors"),
        "init": root / "init.png",
        "mask": root / "mask.png",
    }


TINY = ("--steps", "2", "--size", "64x64", "--device", "cpu")


def _watermark_ready() -> bool:
    import guard.watermark

    return hasattr(guard.watermark, "embed")


# publish() watermarks by default; these tests need guard.watermark (issue 3) to exist
needs_watermark = pytest.mark.skipif(not _watermark_ready(), reason="guard.watermark not built yet")


def verdict(path: Path):
    from guard.verdict import verify

    return verify(path, watermark=False)


def test_generate_with_every_txt2img_option(files, tmp_path):
    out = tmp_path / "out"
    code, stdout, stderr = run(
        "generate", "a blue bird, flying over a field of flowers",
        "--negative", "EasyNegative, lowres",
        "--model", files["folder"],
        "--sampler", "Euler a",
        "--steps", "2",
        "--cfg", "6.5",
        "--seed", "1478966807",
        "--size", "64x64",
        "--batch-count", "2",
        "--batch-size", "2",
        "--lora", f"{files['lora']}:0.7",
        "--embedding", str(files["embedding"]),
        "--device", "cpu",
        "--no-low-memory",
        "-o", out,
        "--format", "png",
        "--training", "allowed",
        "--no-watermark",
        "--ledger", tmp_path / "ledger.sqlite3",
        "--name", "Ada",
        "--json",
    )  # fmt: skip
    assert code == 0, stderr
    results = json.loads(stdout)
    seeds = [1478966807 + i for i in range(4)]
    assert [r["seed"] for r in results] == seeds
    names = sorted(p.name for p in out.iterdir())
    slug = "a-blue-bird-flying-over-a-field-of-flowers"
    assert names == [f"{i:05d}-{s}-{slug}.png" for i, s in enumerate(seeds)]
    info, _ = read_file(out / names[2])
    assert info.prompt == "a blue bird, flying over a field of flowers <lora:detail:0.7>"
    assert info.negative_prompt == "EasyNegative, lowres"
    assert info.params["Sampler"] == "Euler a"
    assert info.params["CFG scale"] == "6.5"
    assert info.params["Seed"] == str(seeds[2])
    assert set(info.get("Lora hashes")) == {"detail"}
    assert set(info.get("TI hashes")) == {"EasyNegative"}
    assert results[2]["parameters"] == info.to_text()
    v = verdict(out / names[0])
    assert v.state == "trusted" and v.training == "allowed"
    assert v.c2pa.signer["subject"] == "Ada"
    assert (tmp_path / "ledger.sqlite3").exists()


@needs_watermark
def test_human_output_lists_each_file(files, tmp_path):
    code, stdout, stderr = run(
        "generate", "a red cat", "-m", files["folder"], *TINY, "--seed", "3", "-o", tmp_path
    )
    assert code == 0, stderr
    path = tmp_path / "00000-3-a-red-cat.png"
    assert stdout.strip().splitlines() == [f"{path}  (seed 3)"]
    assert path.exists()
    # too small to carry the watermark: said on stderr, never silently
    assert "not watermarked" in stderr


def test_no_progress_bar_is_drawn_into_a_redirected_stderr(files, tmp_path):
    """`guard generate … 2> log`: neither the loading, sampling nor hires-fix bar writes its
    `\\r` frames into the log (CliRunner's stderr is not a terminal)."""
    code, stdout, stderr = run(
        "generate", "a red cat", "-m", files["folder"], *TINY, "--seed", "3",
        "--hires-scale", "1.5", "--hires-steps", "1", "--no-watermark", "-o", tmp_path,
    )  # fmt: skip
    assert code == 0, stderr
    assert stdout.strip().endswith("(seed 3)")
    assert "\r" not in stderr and "it/s" not in stderr


def test_model_from_environment_and_low_memory(files, tmp_path):
    code, _, stderr = run(
        "generate", "a cat", *TINY, "--low-memory", "-o", tmp_path, "--no-watermark",
        env={"GUARD_MODEL": str(files["folder"])},
    )  # fmt: skip
    assert code == 0, stderr
    [path] = tmp_path.iterdir()
    assert read_file(path)[0].params["Model"] == "tiny-sd"


@pytest.mark.parametrize("fmt", ["jpg", "webp"])
def test_format_option_and_info_reads_exif(files, tmp_path, fmt):
    code, _, stderr = run(
        "generate", "a cat", "-m", files["folder"], *TINY, "--seed", "9", "-o", tmp_path,
        "--format", fmt, "--no-watermark",
    )  # fmt: skip
    assert code == 0, stderr
    path = tmp_path / f"00000-9-a-cat.{fmt}"
    code, stdout, _ = run("info", path)
    assert code == 0
    assert stdout.startswith(
        "a cat\nSteps: 2, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 9"
    )


def test_img2img_and_inpaint_options(files, tmp_path):
    code, _, stderr = run(
        "generate", "a cat", "-m", files["folder"], *TINY, "--seed", "1", "-o", tmp_path,
        "--init-image", files["init"], "--strength", "0.5", "--no-watermark",
    )  # fmt: skip
    assert code == 0, stderr
    code, _, stderr = run(
        "generate", "a cat", "-m", files["folder"], *TINY, "--seed", "1", "-o", tmp_path,
        "--init-image", files["init"], "--mask", files["mask"], "--mask-blur", "0",
        "--strength", "1", "--no-watermark",
    )  # fmt: skip
    assert code == 0, stderr
    img2img, inpaint = sorted(tmp_path.iterdir())
    assert read_file(img2img)[0].params["Denoising strength"] == "0.5"
    assert read_file(inpaint)[0].params["Mask blur"] == "0"
    original = np.asarray(Image.open(files["init"]).convert("RGB"))
    result = np.asarray(Image.open(inpaint).convert("RGB"))
    assert np.array_equal(result[:16], original[:16])  # above the mask: untouched
    v = verdict(inpaint)
    assert {i["relationship"] for i in v.c2pa.ingredients} == {"parentOf", "inputTo"}


def test_vae_option(files, tmp_path):
    code, _, stderr = run(
        "generate", "a cat", "-m", files["folder"], *TINY, "-o", tmp_path, "--no-watermark",
        "--vae", files["vae"],
    )  # fmt: skip
    assert code == 0, stderr
    [path] = tmp_path.iterdir()
    assert read_file(path)[0].params["VAE"] == "other-vae"


def test_single_file_with_config_option(files, tmp_path, tmp_path_factory):
    single = tm.sd_single_file(tmp_path_factory)
    code, _, stderr = run(
        "generate", "a cat", "-m", single, "--config", files["folder"], *TINY, "-o", tmp_path,
        "--no-watermark",
    )  # fmt: skip
    assert code == 0, stderr
    [path] = tmp_path.iterdir()
    assert read_file(path)[0].params["Model"] == single.stem


def test_refiner_options(tmp_path, tmp_path_factory):
    base = tm.sdxl_folder(tmp_path_factory)
    refiner = tm.sdxl_folder(tmp_path_factory, refiner=True)
    code, _, stderr = run(
        "generate", "a cat", "-m", base, *TINY, "-o", tmp_path, "--no-watermark",
        "--refiner", refiner, "--refiner-switch", "0.5",
    )  # fmt: skip
    assert code == 0, stderr
    [path] = tmp_path.iterdir()
    info = read_file(path)[0]
    assert info.params["Refiner"].startswith("tiny-sdxl-refiner [")
    assert info.params["Refiner switch at"] == "0.5"


# ---- failures: one line on stderr, exit 2, nothing written ----------------------------------------
def test_uncached_hub_model_is_one_actionable_line(tmp_path):
    code, stdout, stderr = run(
        "generate", "a cat", "-m", "someone/uncached-model", *TINY, "-o", tmp_path / "o"
    )
    assert code == 2
    assert "Traceback" not in stderr and stdout == ""
    [line] = stderr.strip().splitlines()[-1:]
    assert line.startswith("guard: error: model 'someone/uncached-model'")
    assert "hub cannot be reached" in line and "--model" in line
    assert not (tmp_path / "o").exists()


def test_uncached_refiner_names_the_refiner_option(tmp_path, tmp_path_factory):
    code, _, stderr = run(
        "generate", "a cat", "-m", tm.sdxl_folder(tmp_path_factory), *TINY, "-o", tmp_path / "o",
        "--refiner", "someone/uncached-refiner",
    )  # fmt: skip
    assert code == 2 and "Traceback" not in stderr
    assert "refiner 'someone/uncached-refiner'" in stderr and "--refiner" in stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--sampler", "Euler z"), "unknown sampler 'Euler z'"),
        (("--size", "65x64"), "multiples of 8"),
        (("--size", "huge"), "expected WIDTHxHEIGHT"),
        (("--mask", "m.png"), "--mask needs --init-image"),
        (("--lora", "missing.safetensors:0.5"), "--lora missing.safetensors: no such file"),
        (("--embedding", "nope.pt"), "--embedding nope.pt: no such file"),
        (("--strength", "1.5", "--init-image", "x.png"), "--strength 1.5"),
        (("--refiner-switch", "1"), "--refiner-switch"),
    ],
)
def test_bad_options_fail_before_loading_a_model(tmp_path, args, message):
    # the model does not exist: these errors must come first, without loading anything
    code, _, stderr = run(
        "generate", "a cat", "-m", "someone/uncached", *args, "-o", tmp_path / "o"
    )
    assert code == 2
    assert message in stderr and "Traceback" not in stderr
    assert not (tmp_path / "o").exists()


def test_output_folder_that_is_a_file(files, tmp_path):
    blocker = tmp_path / "out"
    blocker.write_text("not a folder")
    code, _, stderr = run("generate", "a cat", "-m", files["folder"], *TINY, "-o", blocker)
    assert code == 2 and "is a file" in stderr
    assert "Traceback" not in stderr and blocker.read_text() == "not a folder"
    # the library says it too
    from generator.errors import GenerationError
    from generator.generate import Generator
    from generator.models import load_model
    from generator.settings import Settings

    gen = Generator(load_model(files["folder"], progress=False), progress=False)
    with pytest.raises(GenerationError, match="cannot use it as the output folder"):
        gen.generate(Settings("a cat", steps=2, width=64, height=64), blocker / "sub")


def test_lora_on_an_incompatible_model(files, tmp_path, tmp_path_factory):
    code, _, stderr = run(
        "generate", "a cat", "-m", tm.sdxl_folder(tmp_path_factory), *TINY, "-o", tmp_path,
        "--lora", files["lora"], "--no-watermark",
    )  # fmt: skip
    assert code == 2
    assert "--lora" in stderr and "cannot be applied" in stderr and "SDXL" in stderr


# ---- guard info ------------------------------------------------------------------------------------
WEB_UI = (
    "a blue bird, flying over a field of flowers\n"
    "Negative prompt: EasyNegative\n"
    "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 2822745983, Size: 512x512, "
    "Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, "
    'TI hashes: "EasyNegative: c74b4e810b03", Version: v1.5.1'
)


def test_info_on_a_web_ui_image(tmp_path):
    meta = PngImagePlugin.PngInfo()
    meta.add_text("parameters", WEB_UI)
    path = tmp_path / "00012-2822745983.png"
    Image.new("RGB", (16, 16)).save(path, pnginfo=meta)
    code, stdout, _ = run("info", path)
    assert code == 0 and stdout == WEB_UI + "\n"
    code, stdout, _ = run("info", path, "--json")
    [data] = json.loads(stdout)
    assert data["found"] and data["source"] == "PNG text chunk"
    assert data["seed"] == 2822745983 and data["sampler"] == "Euler a"
    assert data["width"] == data["height"] == 512
    assert data["ti_hashes"] == {"EasyNegative": "c74b4e810b03"}


def test_info_without_parameters_and_several_files(tmp_path):
    plain = tmp_path / "plain.png"
    Image.new("RGB", (16, 16)).save(plain)
    code, _, stderr = run("info", plain)
    assert code == 1 and "no generation parameters" in stderr
    meta = PngImagePlugin.PngInfo()
    meta.add_text("parameters", WEB_UI)
    made = tmp_path / "made.png"
    Image.new("RGB", (16, 16)).save(made, pnginfo=meta)
    code, stdout, _ = run("info", made, plain, "--json")
    assert code == 1
    reports = json.loads(stdout)
    assert [r["found"] for r in reports] == [True, False]
    code, _, stderr = run("info", tmp_path / "missing.png")
    assert code == 2 and "Traceback" not in stderr


def test_info_falls_back_to_the_c2pa_assertion(files, tmp_path):
    """A tool that rewrote the PNG without its text chunk but kept C2PA: the assertion remains."""
    from generator.generate import Generator
    from generator.models import load_model
    from generator.settings import Settings

    gen = Generator(load_model(files["folder"], progress=False), progress=False)
    [item] = gen.generate(
        Settings("a cat", steps=2, width=64, height=64, seed=4),
        tmp_path,
        PublishOptions(watermark=False),
    )
    from guard.provenance import c2pa_io

    data = item.path.read_bytes()
    stripped = _drop_png_text(data)
    assert c2pa_io.has_manifest(stripped, "image/png")
    copy = tmp_path / "stripped.png"
    copy.write_bytes(stripped)
    assert "parameters" not in Image.open(copy).info
    code, stdout, _ = run("info", copy, "--json")
    [report] = json.loads(stdout)
    assert code == 0 and report["source"] == "C2PA assertion org.guard.generation"
    assert report["infotext"] == item.infotext.to_text()


def _drop_png_text(data: bytes) -> bytes:
    """Remove tEXt/iTXt/zTXt chunks (the C2PA manifest becomes invalid but stays readable)."""
    import struct

    out, pos = bytearray(data[:8]), 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        end = pos + 12 + length
        if kind not in (b"tEXt", b"iTXt", b"zTXt"):
            out += data[pos:end]
        pos = end
    return bytes(out)


def test_hires_fix_options_and_info(files, tmp_path):
    code, stdout, stderr = run(
        "generate", "a (blue:1.2) bird, [red:cat:1] BREAK field", "-m", files["folder"], *TINY,
        "--seed", "5", "--hires-scale", "1.5", "--hires-steps", "2",
        "--hires-upscaler", "latent-bicubic", "--hires-denoise", "0.55",
        "--no-watermark", "-o", tmp_path, "--json",
    )  # fmt: skip
    assert code == 0, stderr
    [item] = json.loads(stdout)
    path = Path(item["path"])
    assert Image.open(path).size == (96, 96)
    code, text, _ = run("info", path)
    assert code == 0
    assert text.startswith("a (blue:1.2) bird, [red:cat:1] BREAK field\n")  # as typed
    assert "Size: 64x64" in text and "Denoising strength: 0.55" in text
    assert "Hires upscale: 1.5, Hires steps: 2, Hires upscaler: Latent (bicubic), " in text
    code, out, _ = run("info", path, "--json")
    [data] = json.loads(out)
    assert data["hires_upscale"] == 1.5 and data["hires_upscaler"] == "Latent (bicubic)"


def test_hires_size_option(files, tmp_path):
    code, _, stderr = run(
        "generate", "a cat", "-m", files["folder"], *TINY, "--hires-size", "128x0",
        "--hires-upscaler", "Lanczos", "--no-watermark", "-o", tmp_path,
    )  # fmt: skip
    assert code == 0, stderr
    [path] = tmp_path.iterdir()
    assert Image.open(path).size == (128, 128)
    info = read_file(path)[0]
    assert info.params["Hires resize"] == "128x0" and info.params["Hires upscaler"] == "Lanczos"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--hires-steps", "4"), "turn it on with --hires-scale"),
        (("--hires-scale", "2", "--hires-size", "1024x1024"), "not both"),
        (("--hires-scale", "2", "--hires-upscaler", "R-ESRGAN 4x+"), "weights"),
        (("--hires-scale", "2", "--hires-upscaler", "bilinear"), "unknown upscaler"),
        (("--hires-size", "0x0"), "--hires-size '0x0'"),
        (("--hires-scale", "2", "--hires-denoise", "0"), "--hires-denoise 0"),
        (("--hires-scale", "2", "--init-image", "x.png"), "txt2img"),
        (("--hires-scale", "9"), "--hires-scale 9"),
        (("--size", "4096x4096", "--hires-scale", "2"), "final size"),
    ],
)
def test_bad_hires_options_fail_before_loading_a_model(tmp_path, args, message):
    code, _, stderr = run(
        "generate", "a cat", "-m", "someone/uncached", *args, "-o", tmp_path / "o"
    )
    assert code == 2
    assert message in stderr and "Traceback" not in stderr
    assert not (tmp_path / "o").exists()
