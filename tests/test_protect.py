"""guard.protect (guard.protection) and `guard protect`: the attack plumbing on tiny random-weight diffusers models,
the CLI with its signed, watermarked output, and (opt-in, ../shared) the real effect on taef2."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tiny_models as tm
import torch
from click.testing import CliRunner
from helpers import art, sha256
from PIL import Image

from guard.cli import main
from guard.errors import GuardError, ModelNotFoundError, TooSmallError
from guard.protection import ASSERTION_LABEL, PRESETS, Protected, Protection, load_model, protect

EPS = 8 / 255
FAST = dict(steps=2, progress=False)


@pytest.fixture(scope="module")
def sd(tmp_path_factory) -> Path:
    return tm.sd_folder(tmp_path_factory)


@pytest.fixture(scope="module")
def vae():
    torch.manual_seed(0)
    return tm._vae().eval()


@pytest.fixture(scope="module")
def unet(sd):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel.from_pretrained(sd, subfolder="unet").eval()


def encoder_of(vae):
    from guard.protection.models import VaeDecoder, VaeEncoder

    return VaeEncoder(vae), VaeDecoder(vae)


def astuple(result: Protected) -> tuple[Image.Image, Protection]:
    assert isinstance(result, Protected)
    return result.image, result.record


def diff(a: Image.Image, b: Image.Image) -> np.ndarray:
    return np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16)


@pytest.mark.parametrize("size", [(64, 64), (97, 71)])
def test_textural_stays_within_eps_and_changes_the_image(vae, size):
    enc, dec = encoder_of(vae)
    im = art(*size)
    out, record = astuple(protect(im, encoder=enc, decoder=dec, eps=EPS, **FAST))
    d = diff(out, im)
    assert out.size == im.size and out.mode == "RGB"
    assert np.abs(d).max() <= 8  # eps 8/255 after rounding to 8 bits
    assert (d != 0).mean() > 0.3  # a perturbation over most of the image
    assert record.objective == "reconstruction" and record.steps == 2


@pytest.mark.parametrize("native", [False, True])
def test_bf16_autocast_only_where_the_cpu_runs_it_natively(vae, monkeypatch, native):
    """Emulated bfloat16 made a 192² protection 34x slower (323 s against 9.6 s in fp32) on an
    AVX2 CPU: the CPU default asks whether the hardware has it, and an explicit bf16 is obeyed."""
    import guard.devices

    monkeypatch.setattr(guard.devices, "cpu_has_fast_bf16", lambda: native)
    enc, dec = encoder_of(vae)
    seen: list[bool] = []

    class Recording(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(torch.is_autocast_enabled("cpu"))
            return self.inner(x)

    protect(art(64, 64), encoder=Recording(enc), decoder=dec, eps=EPS, device="cpu", **FAST)
    assert seen and set(seen) == {native}
    seen.clear()
    protect(art(64, 64), encoder=Recording(enc), decoder=dec, eps=EPS, bf16=True, **FAST)
    assert seen and set(seen) == {True}


def test_the_attack_raises_its_objective(vae):
    """More steps disrupt the (random) autoencoder's reconstruction more: the optimiser works."""
    enc, dec = encoder_of(vae)
    im = art(64, 64)
    x = torch.from_numpy(np.asarray(im, dtype=np.float32) / 255).permute(2, 0, 1)[None]

    def err(img: Image.Image) -> float:
        t = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255).permute(2, 0, 1)[None]
        with torch.no_grad():
            return float(((dec(enc(t)) - x) ** 2).mean())

    base = err(im)
    rng = np.random.default_rng(0)
    noise = np.clip(np.asarray(im, dtype=np.int16) + rng.choice([-8, 8], (64, 64, 3)), 0, 255)
    noisy = err(Image.fromarray(noise.astype(np.uint8)))  # a random perturbation of the same size
    out = protect(
        im, encoder=enc, decoder=dec, eps=EPS, steps=4, robust=False, progress=False
    ).image
    assert err(out) - base > 5 * abs(noisy - base) and err(out) > base * 1.05


def test_encoder_only_pulls_towards_the_target(vae):
    enc, _ = encoder_of(vae)
    im = art(64, 64)
    target = Image.new("RGB", (64, 64), (255, 0, 255))
    out, record = astuple(protect(im, encoder=enc, target=target, **FAST))
    assert record.objective == "latent-target"
    with torch.no_grad():

        def z(img):
            t = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255).permute(2, 0, 1)[None]
            return enc(t)

        zt = z(target)
        assert float(((z(out) - zt) ** 2).mean()) < float(((z(im) - zt) ** 2).mean())


@pytest.mark.parametrize("mode", ["semantic", "fused"])
def test_semantic_and_fused_modes(vae, unet, mode):
    enc, dec = encoder_of(vae)
    im = art(64, 64)
    out, record = astuple(protect(im, encoder=enc, decoder=dec, unet=unet, mode=mode, **FAST))
    d = diff(out, im)
    assert np.abs(d).max() <= 8 and (d != 0).any()
    assert record.mode == mode


def test_semantic_without_unet_is_refused(vae):
    enc, dec = encoder_of(vae)
    with pytest.raises(ValueError, match="UNet"):
        protect(art(64, 64), encoder=enc, decoder=dec, mode="semantic", **FAST)


def test_mask_protects_only_its_region(vae):
    enc, dec = encoder_of(vae)
    im = art(96, 64)
    mask = Image.new("L", im.size, 0)
    mask.paste(255, (0, 0, 48, 64))
    d = diff(protect(im, encoder=enc, decoder=dec, mask=mask, **FAST).image, im)
    assert (d[:, :48] != 0).mean() > 0.3
    assert not d[:, 48:].any()


def test_alpha_is_kept_and_greyscale_stays_grey(vae):
    enc, dec = encoder_of(vae)
    rgba = art(80, 64, mode="RGBA")
    out = protect(rgba, encoder=enc, decoder=dec, **FAST).image
    assert out.mode == "RGBA"
    assert np.array_equal(np.asarray(out.getchannel("A")), np.asarray(rgba.getchannel("A")))
    for mode in ("L", "LA"):
        grey = art(72, 64).convert(mode)
        g = protect(grey, encoder=enc, decoder=dec, **FAST).image
        assert g.mode == mode and np.abs(diff(g, grey)).max() <= 8 and diff(g, grey).any()


def test_large_image_is_tiled_without_seams(vae):
    from guard.protection.attacks import windows

    wins = windows(200, 136, 128)
    cover = np.zeros((200, 136), int)
    for t, left, h, w in wins:
        assert t % 8 == 0 and left % 8 == 0 and t + h <= 200 and left + w <= 136
        cover[t : t + h, left : left + w] += 1
    assert len(wins) > 1 and cover.min() >= 1  # overlapping tiles cover the image
    enc, dec = encoder_of(vae)
    im = art(200, 136)
    out = protect(im, encoder=enc, decoder=dec, tile=128, **FAST).image
    d = diff(out, im)
    assert np.abs(d).max() <= 8 and (d != 0).mean() > 0.3


def test_too_small_image_is_a_clear_error(vae):
    enc, _ = encoder_of(vae)
    with pytest.raises(TooSmallError, match="64 px"):
        protect(art(63, 200), encoder=enc, **FAST)


def test_model_folder_and_offline_hub_id(sd):
    out = protect(art(64, 64), model=str(sd), **FAST).image
    assert out.size == (64, 64)
    with pytest.raises(ModelNotFoundError, match="--model"):
        protect(art(64, 64), model="someone/not-cached-model", **FAST)


def test_protection_record_is_a_manifest_assertion():
    data = Protection("textural", 8 / 255, 8, True, "sd15").to_assertion()
    assert data["eps_255"] == 8.0 and data["mode"] == "textural" and data["robust"] is True
    assert json.loads(json.dumps(data)) == data
    assert PRESETS["medium"][0] == 9.5 / 255


# -- the library workflow: guard.protect_file ---------------------------------------------------


def test_protect_file_publishes_a_signed_protected_png(sd, tmp_path):
    import guard
    from guard.protection.workflow import ProtectedFile

    src = tmp_path / "art.png"
    art(96, 80).save(src)
    ticks: list[tuple[int, int]] = []
    calls: list[int] = []

    def identity():
        calls.append(1)
        return guard.Identity.default()

    model = load_model(str(sd))
    pub = guard.protect_file(
        src, model=model, steps=2, identity=identity, on_progress=lambda d, t: ticks.append((d, t))
    )
    assert isinstance(pub, guard.Published) and isinstance(pub, ProtectedFile)
    assert pub.path == tmp_path / "art.protected.png" and pub.source == src
    assert pub.protection is not None and pub.protection.steps == 2 and calls == [1]
    assert (
        ticks
        and ticks[-1][0] == ticks[-1][1]
        and [d for d, _ in ticks] == sorted(d for d, _ in ticks)
    )
    v = guard.verify(pub.path)
    assert v.ok and v.c2pa.assertions[ASSERTION_LABEL]["steps"] == 2
    assert pub.to_dict()["protection"]["eps_255"] == 9.5 and pub.to_dict()["skipped"] is None


def test_protect_file_keeps_a_signed_inputs_history_and_refuses_overwrite(sd, tmp_path):
    import guard
    from guard.errors import OutputExistsError

    src = tmp_path / "art.png"
    art(96, 80).save(src)
    signed = guard.sign(src, source="ai").path
    model = load_model(str(sd))
    pub = guard.protect_file(signed, tmp_path / "out" / "p.png", model=model, steps=1)
    v = guard.verify(pub.path)
    assert v.c2pa.digital_source_type and v.c2pa.digital_source_type.endswith(
        "trainedAlgorithmicMedia"
    )
    assert [i["relationship"] for i in v.c2pa.ingredients][:1] == ["parentOf"]
    calls: list[int] = []
    with pytest.raises(OutputExistsError):
        guard.protect_file(signed, pub.path, model=model, steps=1, identity=lambda: calls.append(1))
    assert calls == []


# -- CLI --------------------------------------------------------------------------------------


def run(*args):
    r = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return r.exit_code, r.stdout, r.stderr


def test_cli_writes_a_signed_protected_png(sd, tmp_path):
    from guard.verdict import verify

    src = tmp_path / "art.png"
    art(256, 256).save(src)
    before = sha256(src)
    code, out, err = run("protect", src, "--model", sd, "--steps", "1", "--json")
    assert code == 0, err
    [result] = json.loads(out)  # a list for one input too, as every command's --json
    dst = tmp_path / "art.protected.png"
    assert Path(result["output"]) == dst and sha256(src) == before
    assert Image.open(dst).format == "PNG"
    assert np.abs(diff(Image.open(dst).convert("RGB"), Image.open(src))).max() <= 8 + 3
    v = verify(dst, watermark=True)
    assert v.ok
    assert v.c2pa.training == "notAllowed" or v.training == "notAllowed"
    assert any(a["action"] == "c2pa.edited" for a in v.c2pa.actions)
    assert v.c2pa.assertions[ASSERTION_LABEL]["eps_255"] == 9.5
    assert [i.get("relationship") for i in v.c2pa.ingredients] == ["parentOf"]
    assert result["watermark_id"] and v.watermark and v.watermark.found


def test_cli_draws_no_progress_bar_into_a_redirected_stderr(sd, tmp_path):
    """`guard protect art.png 2> log`: no tqdm frames in the log (CliRunner's stderr is no
    terminal); the bar is drawn on a terminal only."""
    src = tmp_path / "art.png"
    art(64, 64).save(src)
    code, out, err = run("protect", src, "--model", sd, "--steps", "2")
    assert code == 0, err
    assert "protected" in out and (tmp_path / "art.protected.png").exists()
    assert "\r" not in err and "step/s" not in err


def test_cli_batch_resumes_and_warns_about_jpeg(sd, tmp_path):
    folder = tmp_path / "arts"
    folder.mkdir()
    for i in range(2):
        art(64, 64, seed=i).save(folder / f"a{i}.png")
    code, out, err = run("protect", folder, "--model", sd, "--steps", "1", "--json")
    assert code == 0, err
    assert all(r["skipped"] is None for r in json.loads(out))
    stamp = (folder / "a0.protected.png").stat().st_mtime_ns
    (folder / "a1.protected.png").unlink()  # as if interrupted
    code, out, _ = run("protect", folder, "--model", sd, "--steps", "1", "--json")
    res = {Path(r["input"]).name: r["skipped"] for r in json.loads(out)}
    assert res == {"a0.png": "exists", "a1.png": None}
    assert (folder / "a0.protected.png").stat().st_mtime_ns == stamp
    code, _, err = run(
        "protect", folder / "a0.png", "-o", tmp_path / "x.jpg", "--model", sd, "--steps", "1"
    )
    assert code == 0 and "weakens the protection" in err


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_bytes(b""), "empty"),
        (lambda p: art(40, 40).save(p), "64 px"),
        (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n garbage"), ""),
    ],
)
def test_cli_bad_inputs_fail_clearly_and_leave_the_input(sd, tmp_path, make, message):
    src = tmp_path / "bad.png"
    make(src)
    before = src.read_bytes()
    code, _, err = run("protect", src, "--model", sd, "--steps", "1")
    assert code == 2 and err.startswith("guard: error:") and message in err
    assert src.read_bytes() == before and not (tmp_path / "bad.protected.png").exists()


def test_cli_refuses_to_overwrite_a_single_output(sd, tmp_path):
    src = tmp_path / "art.png"
    art(64, 64).save(src)
    (tmp_path / "art.protected.png").write_bytes(b"keep")
    code, _, err = run("protect", src, "--model", sd, "--steps", "1")
    assert code == 2 and "--force" in err
    assert (tmp_path / "art.protected.png").read_bytes() == b"keep"


def test_cli_batch_outputs_never_collide(sd, tmp_path):
    """Two artworks with one output name: refused before any work, --force or not (the second
    overwrote the first before, leaving its ledger record pointing at another picture)."""
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        art(64, 64, seed=len(folder)).save(tmp_path / folder / "art.png")
    out = tmp_path / "out"
    sources = [tmp_path / "a" / "art.png", tmp_path / "b" / "art.png"]
    for force in ([], ["--force"]):
        code, _, err = run(
            "protect", *sources, "--out-dir", out, "--model", sd, "--steps", "1", *force
        )
        assert code == 2 and "Traceback" not in err
        assert str(out / "art.protected.png") in err and all(str(s) in err for s in sources)
        assert not (out / "art.protected.png").exists()


def test_cli_force_never_overwrites_the_input(sd, tmp_path):
    src = tmp_path / "art.png"
    art(64, 64).save(src)
    before = sha256(src)
    code, _, err = run("protect", src, "-o", src, "--force", "--model", sd, "--steps", "1")
    assert code == 2 and "input" in err
    assert sha256(src) == before


def test_cli_one_bad_artwork_does_not_stop_the_batch(sd, tmp_path):
    folder = tmp_path / "arts"
    folder.mkdir()
    (folder / "a0.png").write_bytes(b"")  # sorted first
    art(64, 64, seed=1).save(folder / "a1.png")
    code, out, err = run("protect", folder, "--model", sd, "--steps", "1", "--json")
    assert code == 2
    [line] = [line for line in err.splitlines() if line.startswith("guard: error:")]
    assert line.startswith("guard: error:") and str(folder / "a0.png") in line
    assert [Path(r["input"]).name for r in json.loads(out)] == ["a1.png"]
    assert (folder / "a1.protected.png").exists() and not (folder / "a0.protected.png").exists()


# -- the real effect, on the trained taef2 stand-in ----------------------------------------------


@pytest.mark.slow
@pytest.mark.shared
def test_default_preset_disrupts_a_trained_autoencoder(shared_dir):
    d = shared_dir / "models" / "taef2"
    enc = torch.export.load(str(d / "taef2_encoder.pt2")).module()
    dec = torch.export.load(str(d / "taef2_decoder.pt2")).module()
    im = Image.open(shared_dir / "datasets" / "cset14" / "pepper.png").convert("RGB")
    im = im.resize((192, 192), Image.BICUBIC)
    eps, steps = PRESETS["medium"]
    out = protect(im, encoder=enc, decoder=dec, eps=eps, steps=steps, progress=False).image
    assert np.abs(diff(out, im)).max() <= np.ceil(eps * 255)

    def psnr(img):
        t = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255).permute(2, 0, 1)[None]
        x = torch.from_numpy(np.asarray(im, dtype=np.float32) / 255).permute(2, 0, 1)[None]
        with torch.no_grad():
            mse = float(((dec(enc(t)).clamp(0, 1) - x) ** 2).mean())
        return -10 * np.log10(mse)

    assert psnr(im) - psnr(out) > 4.0  # dB; ~10 dB measured, Mist at eps 16 gets ~7


def test_a_batch_loads_the_model_once_and_runs_one_progress_bar(sd, tmp_path, monkeypatch):
    """protect_files is the batch: one model load for every file, one bar whose total is every
    file's steps x tiles, and a bad file is yielded as Failed while the others go on."""
    import tqdm.auto

    import guard.protection as gp
    from guard.protection.workflow import Failed, ProtectedFile, protect_files

    loads: list[str] = []
    real_load = gp.load_model
    monkeypatch.setattr(gp, "load_model", lambda *a, **k: loads.append("x") or real_load(*a, **k))
    bars: list[Any] = []

    class Bar(tqdm.auto.tqdm):  # records the bars that are drawn
        def __init__(self, *a: Any, **k: Any) -> None:
            k["disable"] = k.get("disable") is True  # None: drawn (on a terminal)
            super().__init__(*a, **{**k, "file": io.StringIO()})
            if not k["disable"]:
                bars.append(self)

    monkeypatch.setattr(tqdm.auto, "tqdm", Bar)
    jobs = []
    for i, size in enumerate([(64, 64), (96, 80), (72, 64)]):
        art(*size, seed=i).save(tmp_path / f"a{i}.png")
        jobs.append((tmp_path / f"a{i}.png", tmp_path / f"a{i}.protected.png"))
    (tmp_path / "bad.png").write_bytes(b"")
    jobs.insert(1, (tmp_path / "bad.png", tmp_path / "bad.protected.png"))
    out = list(protect_files(jobs, model=str(sd), steps=2, progress=True, keep_going=True))
    assert [type(r) for r in out] == [ProtectedFile, Failed, ProtectedFile, ProtectedFile]
    assert loads == ["x"] and len(bars) == 1
    assert bars[0].total == 2 * 3 + 1 and bars[0].n == bars[0].total  # steps x files + the bad one
    with pytest.raises(GuardError):
        list(protect_files(jobs[1:2], model=str(sd), steps=1))


def test_low_band_perturbation_is_smooth_and_within_eps(vae):
    """scale=4: the perturbation is a bilinear upsampling of a 4x coarser one, still <= eps;
    scale=1 is per pixel."""
    enc, dec = encoder_of(vae)
    im = art(96, 64)
    out = protect(im, encoder=enc, decoder=dec, eps=EPS, scale=4, eot="purify", **FAST)
    d = diff(out.image, im).astype(np.float32)
    fine = diff(protect(im, encoder=enc, decoder=dec, eps=EPS, scale=1, **FAST).image, im)
    assert np.abs(d).max() <= 8 and (d != 0).mean() > 0.3
    step = lambda a: np.abs(np.diff(a.astype(np.float32), axis=1)).mean()  # noqa: E731
    assert step(d) < 0.5 * step(fine)  # neighbouring pixels move together
    assert out.record.scale == 4 and out.record.eot == "purify"
