"""Initial noise the way web UI makes it: per image, from the image's seed, with its three sources.

- `cpu`: torch's CPU generator (web UI's "CPU"): the same noise on every device. guard's default.
- `gpu`: a generator on the device the model runs on (web UI's default "GPU"); CPU noise on a CPU
  or Apple machine, as in web UI.
- `nv`: web UI's "NV" source: the numbers `torch.randn(..., device="cuda")` gives, computed on any
  device, so a web UI infotext with `RNG: NV` gives the same starting noise here without an
  NVIDIA GPU.

NV is CUDA's Philox4x32-10 counter-based generator followed by a Box-Muller transform, with the
counter and key layout torch's CUDA kernel uses: key = the 64-bit seed, counter = (call offset, 0,
element index, 0), and the first of the two Box-Muller outputs per element. Written here with
numpy (no library exposes that exact layout); the constants are Philox's published ones.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

RngSource = Literal["cpu", "gpu", "nv"]
SOURCES: tuple[str, ...] = ("cpu", "gpu", "nv")
# infotext spelling (web UI's randn_source option); GPU is web UI's default and is not written
INFOTEXT = {"cpu": "CPU", "gpu": "GPU", "nv": "NV"}

_PHILOX_M = (np.uint64(0xD2511F53), np.uint64(0xCD9E8D57))
_PHILOX_W = (np.uint32(0x9E3779B9), np.uint32(0xBB67AE85))
_LOW32 = np.uint64(0xFFFFFFFF)
_TWO_POW32_INV = np.float32(2.3283064e-10)
_TWO_POW32_INV_2PI = np.float32(2.3283064e-10 * 6.2831855)


def from_infotext(value: str | None) -> RngSource:
    """web UI's `RNG` field -> source; a missing field means GPU, as web UI reads it."""
    if value is None or not str(value).strip():
        return "gpu"
    wanted = str(value).strip().lower()
    if wanted not in SOURCES:
        raise ValueError(f"RNG '{value}': web UI's sources are CPU, GPU and NV")
    return wanted  # type: ignore[return-value]


class PhiloxNormal:
    """torch CUDA's randn stream for one seed, reproduced on the CPU.

    Each `randn` call uses the next counter offset, as web UI's NV generator does for the
    initial noise and then for each sampler step.
    """

    def __init__(self, seed: int) -> None:
        self.seed = int(seed) & 0xFFFFFFFFFFFFFFFF
        self.offset = 0

    def randn(self, shape: tuple[int, ...]) -> np.ndarray:
        n = int(np.prod(shape))
        counter = np.zeros((4, n), dtype=np.uint32)
        counter[0] = self.offset
        counter[2] = np.arange(n, dtype=np.uint32)
        self.offset += 1
        key = np.array(
            [[self.seed & 0xFFFFFFFF] * n, [self.seed >> 32] * n], dtype=np.uint32
        ).reshape(2, n)
        out = _philox4x32_10(counter, key)
        return _box_muller_first(out[0], out[1]).reshape(shape)


def _mulhilo(a: np.ndarray, m: np.uint64) -> tuple[np.ndarray, np.ndarray]:
    product = a.astype(np.uint64) * m
    return (product >> np.uint64(32)).astype(np.uint32), (product & _LOW32).astype(np.uint32)


def _philox4x32_10(counter: np.ndarray, key: np.ndarray) -> np.ndarray:
    c = counter.copy()
    k = key.copy()
    for i in range(10):
        hi0, lo0 = _mulhilo(c[0], _PHILOX_M[0])
        hi1, lo1 = _mulhilo(c[2], _PHILOX_M[1])
        c = np.stack([hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0])
        if i < 9:
            k = np.stack([k[0] + _PHILOX_W[0], k[1] + _PHILOX_W[1]])
    return c


def _box_muller_first(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    # web UI's reference computes this in float64 from the float32 constants (numpy promotes
    # uint32 x float32 to float64), then rounds to float32; done the same way for equal bits
    c, c2pi = np.float64(_TWO_POW32_INV), np.float64(_TWO_POW32_INV_2PI)
    u = x.astype(np.float64) * c + np.float64(_TWO_POW32_INV / np.float32(2))
    v = y.astype(np.float64) * c2pi + np.float64(_TWO_POW32_INV_2PI / np.float32(2))
    return (np.sqrt(-2.0 * np.log(u)) * np.sin(v)).astype(np.float32)


def noise_device(source: RngSource, device: str) -> str:
    """Where torch draws the numbers: web UI draws "GPU" noise on the CPU for Apple's mps."""
    if source == "gpu" and device not in ("cpu", "mps"):
        return device
    return "cpu"


def generator(seed: int, source: RngSource, device: str) -> Any:
    """The torch generator for an image's per-step noise (ancestral and SDE samplers)."""
    import torch

    return torch.Generator(noise_device(source, device)).manual_seed(int(seed))


def initial_noise(
    shape: tuple[int, ...], source: RngSource, seeds: list[int], generators: list[Any]
) -> Any:
    """Latent noise for a batch: one float32 draw of `shape` per image, stacked.

    cpu/gpu draw from each image's own torch generator (`generator()`), which the sampler's
    per-step noise then continues from, as web UI's ImageRNG does; nv computes Philox from the
    seed. Drawn in float32 whatever the model's dtype, as web UI draws it.
    """
    import torch

    if source == "nv":
        return torch.stack([torch.from_numpy(PhiloxNormal(seed).randn(shape)) for seed in seeds])
    return torch.stack(
        [torch.randn(shape, generator=g, device=g.device, dtype=torch.float32) for g in generators]
    )
