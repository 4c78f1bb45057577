"""What a protection run did, in a form the manifest can carry; and the --strength presets.

No torch here: the CLI and the manifest code read these without loading any model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from PIL import Image

Mode = Literal["textural", "semantic", "fused"]
Strength = Literal["low", "medium", "high"]

ASSERTION_LABEL = "org.guard.protection"
VERSION = "1"
DEFAULT_OPTIMISER = "sign-cosine"

# eps in 1/255 units and steps; medium is the default. Figures behind them: docs/benchmarks.md#protect.
# The perturbation is made at half resolution (protect's scale=2), which is smoother and ~1.6 dB
# less visible at one eps, so medium and high take ~1.2x the eps of the per-pixel perturbation
# for the same visibility (medium: 32-33 dB PSNR, as 8/255 per pixel was); low keeps 4/255.
PRESETS: dict[str, tuple[float, int]] = {
    "low": (4 / 255, 6),
    "medium": (9.5 / 255, 8),
    "high": (14 / 255, 12),
}
DEFAULT_STRENGTH: Strength = "medium"
MODES: tuple[Mode, ...] = ("textural", "semantic", "fused")


def preset(strength: str) -> tuple[float, int]:
    """(eps, steps) for a --strength name."""
    try:
        return PRESETS[strength]
    except KeyError:
        raise ValueError(
            f"unknown strength {strength!r}; use one of {', '.join(PRESETS)}"
        ) from None


def default_steps(eps: float) -> int:
    """Steps for a custom eps: those of the nearest preset at or above it."""
    for eps_p, steps in sorted(PRESETS.values()):
        if eps <= eps_p + 1e-9:
            return steps
    return max(steps for _, steps in PRESETS.values())


@dataclass(frozen=True)
class Protection:
    """The parameters of one protection run, recorded in the output's Content Credentials."""

    mode: Mode
    eps: float
    steps: int
    robust: bool
    model: str
    optimiser: str = DEFAULT_OPTIMISER
    objective: str = "reconstruction"  # 'reconstruction' (with a decoder) or 'latent-target'
    strategy: str = "tiles"
    eot: str = "cycle"  # the transformations optimised over (robust only)
    scale: int = 1  # the perturbation's resolution is 1/scale of the image's (upsampled onto it)
    version: str = VERSION

    def to_assertion(self) -> dict[str, Any]:
        """The data of the `org.guard.protection` assertion (eps also in 1/255 units, as artists read it)."""
        data = asdict(self)
        data["eps"] = round(self.eps, 6)
        data["eps_255"] = round(self.eps * 255, 3)
        data["tool"] = "guard.protect"
        return data


@dataclass(frozen=True)
class Protected:
    """What `guard.protect` returns: the protected pixels and the record of how they were made."""

    image: Image.Image
    record: Protection
