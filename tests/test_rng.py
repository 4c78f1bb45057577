"""web UI's random number sources: NV (Philox) reproduced on the CPU, CPU/GPU generators per image.

Reference values:
- DOCUMENTED: the example in web UI's modules/rng_philox.py docstring (seed 0, shape 3x4), printed
  from torch's CUDA generator; web UI's own numpy implementation matches it to ~3e-7 (float32
  rounding of log/sin), and so must guard's.
- WEBUI_*: computed by running web UI's published rng_philox algorithm (v1.10) outside this
  repository; guard must give the same float32 bits.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from generator import rng

DOCUMENTED = [
    [-0.92466259, -0.42534415, -2.6438457, 0.14518388],
    [-0.12086647, -0.57972564, -0.62285122, -0.32838709],
    [-1.07454231, -0.36314407, -1.67105067, 2.26550497],
]
# seed 1478966807, shape (4, 64, 64) (a 512x512 SD latent): [c, 0, :3] of the first draw
WEBUI_FIRST = [
    [-0.8315610885620117, 0.04007655382156372, -1.2702585458755493],
    [-0.021237796172499657, 0.02912074141204357, 1.441382884979248],
    [0.3565431237220764, -1.7045230865478516, -1.2244482040405273],
    [-0.8731236457824707, -1.4862257242202759, 0.8216379284858704],
]
WEBUI_FIRST_LAST_ROW = [2.050445795059204, 0.04282379895448685]  # [3, 63, -2:]
WEBUI_SECOND = [0.6124639511108398, 0.859122097492218, -0.7413272857666016]  # next draw [0, 0, :3]
WEBUI_SEED_ABOVE_32_BITS = [-0.2827352285385132, -1.0128042697906494]  # seed 2**32 + 7, shape (2,)


def test_nv_matches_the_documented_cuda_values():
    got = rng.PhiloxNormal(0).randn((3, 4))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, DOCUMENTED, rtol=0, atol=1e-6)


def test_nv_is_bit_identical_to_web_uis_algorithm():
    g = rng.PhiloxNormal(1478966807)
    first = g.randn((4, 64, 64))
    assert first[:, 0, :3].tolist() == WEBUI_FIRST
    assert first[3, 63, -2:].tolist() == WEBUI_FIRST_LAST_ROW
    # the next call moves the counter offset: the sampler-step noise of web UI's NV generator
    assert g.randn((4, 64, 64))[0, 0, :3].tolist() == WEBUI_SECOND
    # the key is the whole 64-bit seed, high word included
    assert rng.PhiloxNormal(2**32 + 7).randn((2,)).tolist() == WEBUI_SEED_ABOVE_32_BITS


def test_nv_noise_is_standard_normal_and_seed_dependent():
    a = rng.PhiloxNormal(7).randn((4, 128, 128))
    assert abs(float(a.mean())) < 0.01 and abs(float(a.std()) - 1) < 0.01
    assert not np.array_equal(a, rng.PhiloxNormal(8).randn((4, 128, 128)))
    assert np.array_equal(a, rng.PhiloxNormal(7).randn((4, 128, 128)))


def test_initial_noise_per_source():
    shape = (4, 8, 8)
    seeds = [5, 6]
    gens = [rng.generator(s, "cpu", "cpu") for s in seeds]
    cpu = rng.initial_noise(shape, "cpu", seeds, gens)
    assert cpu.shape == (2, *shape) and cpu.dtype == torch.float32
    # web UI's CPU source: torch.randn from a CPU generator seeded with the image's seed
    assert torch.equal(cpu[1], torch.randn(shape, generator=torch.Generator().manual_seed(6)))
    # the generator has moved on: per-step noise continues the same stream, as in web UI
    follow = torch.randn(shape, generator=gens[0])
    stream = torch.Generator().manual_seed(5)
    torch.randn(shape, generator=stream)
    assert torch.equal(follow, torch.randn(shape, generator=stream))
    nv = rng.initial_noise(shape, "nv", seeds, gens)
    assert np.array_equal(nv[0].numpy(), rng.PhiloxNormal(5).randn(shape))
    # "GPU" on a CPU machine is CPU noise, as web UI does on CPU and Apple's mps
    assert rng.noise_device("gpu", "cpu") == "cpu" and rng.noise_device("gpu", "mps") == "cpu"
    assert rng.noise_device("gpu", "cuda") == "cuda" and rng.noise_device("nv", "cuda") == "cpu"


def test_infotext_spelling():
    assert rng.from_infotext("NV") == "nv" and rng.from_infotext("CPU") == "cpu"
    assert rng.from_infotext(None) == "gpu"  # web UI: a missing RNG field means GPU
    with pytest.raises(ValueError, match="CPU, GPU and NV"):
        rng.from_infotext("philox")


# ---- in generation --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def gen(tmp_path_factory):
    import tiny_models as tm

    from generator.generate import Generator
    from generator.models import load_model

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GUARD_HOME", str(tmp_path_factory.mktemp("home")))
        return Generator(load_model(tm.sd_folder(tmp_path_factory), progress=False), progress=False)


def _settings(**kw):
    from generator.settings import Settings

    base = {"prompt": "a blue bird", "steps": 2, "width": 64, "height": 64, "seed": 42}
    base.update(kw)
    return Settings(**base)


def test_nv_generation_starts_from_web_uis_noise_and_says_so(gen):
    from guard.webui.infotext import Infotext

    s = _settings(rng="nv", seed=1478966807, sampler="Euler")
    latents = gen._latents(s, [1478966807], [rng.generator(1478966807, "nv", "cpu")])
    assert latents.shape == (1, 4, 8, 8)
    assert np.array_equal(latents[0].numpy(), rng.PhiloxNormal(1478966807).randn((4, 8, 8)))
    made = next(gen.images(s))
    info = Infotext.parse(made.infotext.to_text())
    assert info.params["RNG"] == "NV" and rng.from_infotext(info.params["RNG"]) == "nv"
    again = np.asarray(next(gen.images(s)).image)
    assert np.array_equal(np.asarray(made.image), again)
    cpu = next(gen.images(_settings(rng="cpu", seed=1478966807, sampler="Euler")))
    assert cpu.infotext.params["RNG"] == "CPU"
    assert not np.array_equal(np.asarray(cpu.image), again)


def test_gpu_source_is_not_written_and_nv_is_refused_for_img2img(gen, tmp_path):
    from PIL import Image

    from generator.errors import GenerationError
    from generator.settings import validate

    made = next(gen.images(_settings(rng="gpu")))
    assert "RNG" not in made.infotext.params  # web UI omits its default source
    init = tmp_path / "init.png"
    Image.new("RGB", (64, 64), (90, 120, 200)).save(init)
    with pytest.raises(GenerationError, match="text-to-image only"):
        validate(_settings(rng="nv", init_image=init))
    with pytest.raises(GenerationError, match="--rng"):
        validate(_settings(rng="philox"))


def test_clip_skip_changes_the_conditioning_and_is_written(gen):
    plain = next(gen.images(_settings(sampler="Euler")))
    skipped = next(gen.images(_settings(sampler="Euler", clip_skip=2)))
    assert "Clip skip" not in plain.infotext.params  # web UI writes it only when above 1
    assert skipped.infotext.params["Clip skip"] == "2"
    assert not np.array_equal(np.asarray(plain.image), np.asarray(skipped.image))
