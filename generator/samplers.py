"""Stable Diffusion web UI sampler names -> diffusers schedulers.

People copy "DPM++ 2M Karras" out of web UI infotexts and forum posts; guard accepts exactly
those names (and writes them back into its own infotext) so settings move between the
two tools unchanged.
The mapping follows the table in diffusers' scheduler overview; where diffusers has no exact port of
the k-diffusion sampler, the closest scheduler is used and `Sampler.approximate` says so.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass, field
from typing import Any

from guard.errors import GuardError


class UnknownSamplerError(GuardError):
    """The sampler name is not one web UI (and guard) knows."""


@dataclass(frozen=True)
class _Base:
    scheduler: str  # class name in diffusers
    kwargs: dict[str, Any] = field(default_factory=dict)
    approximate: bool = False
    # SDE samplers draw noise from a Brownian tree seeded separately from the latents' generator
    brownian: bool = False


# Base sampler names exactly as web UI spells them.
BASES: dict[str, _Base] = {
    "Euler": _Base("EulerDiscreteScheduler"),
    "Euler a": _Base("EulerAncestralDiscreteScheduler"),
    "DPM++ 2M": _Base(
        "DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}
    ),
    "DPM++ 2M SDE": _Base(
        "DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++", "solver_order": 2}
    ),
    "DPM++ SDE": _Base("DPMSolverSDEScheduler", brownian=True),
    # diffusers has no ancestral single-step DPM++; the stochastic 2nd-order single-step solver
    # is the closest.
    "DPM++ 2S a": _Base(
        "DPMSolverSinglestepScheduler",
        {"algorithm_type": "sde-dpmsolver++", "solver_order": 2, "lower_order_final": True},
        approximate=True,
    ),
    "DPM2": _Base("KDPM2DiscreteScheduler"),
    "DPM2 a": _Base("KDPM2AncestralDiscreteScheduler"),
    "Heun": _Base("HeunDiscreteScheduler"),
    "LMS": _Base("LMSDiscreteScheduler"),
    "DDIM": _Base("DDIMScheduler"),
    "PLMS": _Base("PNDMScheduler", {"skip_prk_steps": True}),
    "UniPC": _Base("UniPCMultistepScheduler"),
    "LCM": _Base("LCMScheduler"),
}

# Schedule-type suffix -> (scheduler __init__ argument that must exist, config override)
SCHEDULES: dict[str, tuple[str, dict[str, Any]]] = {
    "Karras": ("use_karras_sigmas", {"use_karras_sigmas": True}),
    "Exponential": ("use_exponential_sigmas", {"use_exponential_sigmas": True}),
    # SGM Uniform spaces timesteps evenly down from the last training step: diffusers' "trailing".
    "SGM Uniform": ("timestep_spacing", {"timestep_spacing": "trailing"}),
}
_SIGMA_FLAGS = ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas")


@dataclass(frozen=True)
class Sampler:
    base: str
    schedule: str | None  # None = the model's own ("Automatic" in web UI)
    scheduler_class: str
    kwargs: dict[str, Any]
    approximate: bool
    brownian: bool

    @property
    def name(self) -> str:
        """The web UI spelling, as written into the infotext."""
        return f"{self.base} {self.schedule}" if self.schedule else self.base


def _scheduler_cls(name: str) -> type:
    return getattr(importlib.import_module("diffusers"), name)


def _init_params(class_name: str) -> set[str]:
    return set(inspect.signature(_scheduler_cls(class_name).__init__).parameters)


def _supports(base: _Base, schedule: str) -> bool:
    return SCHEDULES[schedule][0] in _init_params(base.scheduler)


def valid_names() -> list[str]:
    """Every accepted sampler name, base names first."""
    names = list(BASES)
    for schedule in SCHEDULES:
        names += [f"{b} {schedule}" for b, base in BASES.items() if _supports(base, schedule)]
    return names


def _valid_names_text() -> str:
    """Compact form of valid_names(): bases, then which suffixes each base takes."""
    parts = []
    for schedule in SCHEDULES:
        missing = [b for b, base in BASES.items() if not _supports(base, schedule)]
        parts.append(schedule + (f" (not with {', '.join(missing)})" if missing else ""))
    return f"{', '.join(BASES)}; optionally followed by a schedule type: {'; '.join(parts)}"


def _unknown(name: str, why: str = "") -> UnknownSamplerError:
    return UnknownSamplerError(
        f"unknown sampler '{name}'{why}. Valid names: {_valid_names_text()}. "
        'Example: --sampler "DPM++ 2M Karras".'
    )


def parse_sampler(name: str, schedule: str | None = None) -> Sampler:
    """Resolve 'DPM++ 2M Karras' (or 'DPM++ 2M' + schedule 'Karras', as newer web UI writes)."""
    text = " ".join(name.split())
    lowered = text.lower()
    base_name = next(
        (
            b
            for b in sorted(BASES, key=len, reverse=True)
            if lowered == b.lower() or lowered.startswith(b.lower() + " ")
        ),
        None,
    )
    if base_name is None:
        raise _unknown(name)
    rest = text[len(base_name) :].strip()
    if rest and schedule and schedule.lower() not in ("automatic", rest.lower()):
        raise _unknown(name, f" with schedule type '{schedule}'")
    wanted = rest or (schedule or "")
    if wanted.lower() in ("", "automatic"):
        sched = None
    else:
        sched = next((s for s in SCHEDULES if s.lower() == wanted.lower()), None)
        if sched is None:
            raise _unknown(name, f" (schedule types: {', '.join(SCHEDULES)})")
    base = BASES[base_name]
    if sched and not _supports(base, sched):
        why = f": diffusers' {base.scheduler} has no {sched} schedule"
        raise _unknown(f"{base_name} {sched}", why)
    kwargs = dict(base.kwargs)
    params = _init_params(base.scheduler)
    for flag in _SIGMA_FLAGS:  # start from the model's schedule, not a previous choice
        if flag in params:
            kwargs[flag] = False
    if sched:
        kwargs.update(SCHEDULES[sched][1])
    return Sampler(base_name, sched, base.scheduler, kwargs, base.approximate, base.brownian)


def make_scheduler(sampler: Sampler | str, model_config: Any) -> Any:
    """Build the scheduler from the model's own scheduler config (betas, prediction type)."""
    s = parse_sampler(sampler) if isinstance(sampler, str) else sampler
    return _scheduler_cls(s.scheduler_class).from_config(dict(model_config), **s.kwargs)
