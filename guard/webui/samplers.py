"""Stable Diffusion web UI 1.10's sampler and schedule-type names, and the diffusers scheduler each
sampler means. Pure data and name logic: nothing here imports diffusers.

It lives in guard core because two sides need the same vocabulary: `guard generate` turns a name
into a scheduler (generator/samplers.py), and the pipeline hook turns a platform's scheduler back
into the name web UI would write (guard/pipeline/record.py), which must not import the generator.

Reading follows web UI's `get_sampler_and_scheduler` (modules/sd_samplers.py): a schedule suffix on
the sampler name ("DPM++ 2M Karras", the pre-1.9 spelling) wins over the `Schedule type` field, and
"Automatic" means the sampler's own default schedule: Karras for DPM++ 2M, Exponential for the SDE
samplers, the model's uniform spacing for Euler. So a bare "DPM++ 2M" is Karras, as web UI 1.10
reads it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from guard.errors import GuardError


class UnknownSamplerError(GuardError):
    """The sampler or schedule name is not one guard can run."""


@dataclass(frozen=True)
class SamplerDef:
    name: str  # web UI's label, exactly as its infotext writes it
    scheduler: str  # diffusers class name
    kwargs: dict[str, Any] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    # web UI's options['scheduler']: what "Automatic" means for this sampler (None: its model's own
    # spacing, i.e. "Uniform" for k-diffusion samplers)
    default_schedule: str | None = None
    # k-diffusion samplers in web UI take every schedule type; web UI's DDIM/PLMS/UniPC/LCM ignore it
    kdiffusion: bool = True
    # web UI adds one step and drops the next-to-last sigma (DPM2, DPM2 a, DPM++ 3M SDE)
    discard_penultimate: bool = False
    approximate: bool = False  # diffusers has no exact port; the closest scheduler is used
    brownian: bool = False  # per-step noise from a Brownian tree seeded like the latents
    origin: str = "web UI"


SAMPLERS: tuple[SamplerDef, ...] = (
    SamplerDef(
        "DPM++ 2M",
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "dpmsolver++", "solver_order": 2},
        ("k_dpmpp_2m", "dpmpp_2m"),
        "Karras",
    ),
    SamplerDef(
        "DPM++ SDE",
        "DPMSolverSDEScheduler",
        {},
        ("k_dpmpp_sde", "dpmpp_sde"),
        "Karras",
        brownian=True,
    ),
    SamplerDef(
        "DPM++ 2M SDE",
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "sde-dpmsolver++", "solver_order": 2, "solver_type": "midpoint"},
        ("k_dpmpp_2m_sde", "dpmpp_2m_sde"),
        "Exponential",
    ),
    SamplerDef(
        "DPM++ 2M SDE Heun",
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "sde-dpmsolver++", "solver_order": 2, "solver_type": "heun"},
        ("k_dpmpp_2m_sde_heun", "dpmpp_2m_sde_heun"),
        "Exponential",
    ),
    # diffusers has no ancestral single-step DPM++; the stochastic 2nd-order single-step solver is
    # the closest
    SamplerDef(
        "DPM++ 2S a",
        "DPMSolverSinglestepScheduler",
        {"algorithm_type": "sde-dpmsolver++", "solver_order": 2, "lower_order_final": True},
        ("k_dpmpp_2s_a", "dpmpp_2s_ancestral"),
        "Karras",
        approximate=True,
    ),
    SamplerDef(
        "DPM++ 3M SDE",
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "sde-dpmsolver++", "solver_order": 3},
        ("k_dpmpp_3m_sde", "dpmpp_3m_sde"),
        "Exponential",
        discard_penultimate=True,
    ),
    SamplerDef(
        "Euler a",
        "EulerAncestralDiscreteScheduler",
        aliases=("k_euler_a", "k_euler_ancestral", "euler_ancestral"),
    ),
    SamplerDef("Euler", "EulerDiscreteScheduler", aliases=("k_euler", "euler")),
    SamplerDef("LMS", "LMSDiscreteScheduler", aliases=("k_lms", "lms")),
    SamplerDef("Heun", "HeunDiscreteScheduler", aliases=("k_heun", "heun")),
    SamplerDef(
        "DPM2",
        "KDPM2DiscreteScheduler",
        aliases=("k_dpm_2", "dpm_2"),
        default_schedule="Karras",
        discard_penultimate=True,
    ),
    SamplerDef(
        "DPM2 a",
        "KDPM2AncestralDiscreteScheduler",
        aliases=("k_dpm_2_a", "dpm_2_ancestral"),
        default_schedule="Karras",
        discard_penultimate=True,
    ),
    SamplerDef("DDIM", "DDIMScheduler", aliases=("ddim",), kdiffusion=False),
    SamplerDef(
        "PLMS", "PNDMScheduler", {"skip_prk_steps": True}, aliases=("plms",), kdiffusion=False
    ),
    SamplerDef("UniPC", "UniPCMultistepScheduler", aliases=("unipc", "uni_pc"), kdiffusion=False),
    SamplerDef("LCM", "LCMScheduler", aliases=("k_lcm", "lcm"), kdiffusion=False),
    # not in web UI; ComfyUI and diffusers have them
    SamplerDef("DDPM", "DDPMScheduler", aliases=("ddpm",), kdiffusion=False, origin="ComfyUI"),
    SamplerDef(
        "DEIS", "DEISMultistepScheduler", aliases=("deis",), kdiffusion=False, origin="ComfyUI"
    ),
)
BY_NAME = {s.name: s for s in SAMPLERS}

# what web UI 1.10 reads a sampler name it does not know as: its first sampler, schedule Automatic
WEBUI_FALLBACK = ("DPM++ 2M", "Automatic")

# web UI samplers that diffusers cannot run: named in the error instead of "unknown"
UNAVAILABLE = ("DPM fast", "DPM adaptive", "Restart", "DDIM CFG++")

# web UI 1.10's schedule types: label -> (name, aliases), in its order (modules/sd_schedulers.py)
SCHEDULES: dict[str, tuple[str, ...]] = {
    "Automatic": ("automatic",),
    "Uniform": ("uniform",),
    "Karras": ("karras",),
    "Exponential": ("exponential",),
    "Polyexponential": ("polyexponential",),
    "SGM Uniform": ("sgm_uniform", "SGMUniform"),
    "KL Optimal": ("kl_optimal",),
    "Align Your Steps": ("align_your_steps",),
    "Simple": ("simple",),
    "Normal": ("normal",),
    "DDIM": ("ddim", "ddim_uniform"),
    "Beta": ("beta",),
}
# web UI's settings for the Beta schedule (beta_dist_alpha/beta), written into its infotext
BETA_ALPHA = BETA_BETA = 0.6

# Pre-1.9 names that carried the schedule ("k_dpmpp_2m_ka" = DPM++ 2M Karras)
_KARRAS_ALIASES = {
    "k_lms_ka": "LMS",
    "k_dpm_2_ka": "DPM2",
    "k_dpm_2_a_ka": "DPM2 a",
    "k_dpmpp_2s_a_ka": "DPM++ 2S a",
    "k_dpmpp_2m_ka": "DPM++ 2M",
    "k_dpmpp_sde_ka": "DPM++ SDE",
    "k_dpmpp_2m_sde_ka": "DPM++ 2M SDE",
}


@dataclass(frozen=True)
class Choice:
    """A resolved sampler + schedule type, spelled as web UI writes them."""

    sampler: SamplerDef
    schedule: str  # a SCHEDULES label; "Automatic" only where the sampler has no schedule choice

    @property
    def name(self) -> str:
        return self.sampler.name

    @property
    def legacy_name(self) -> str:
        """The pre-1.9 combined spelling ("DPM++ 2M Karras")."""
        if self.schedule == "Automatic":
            return self.sampler.name
        return f"{self.sampler.name} {self.schedule}"

    def infotext_fields(self) -> dict[str, str]:
        """`Sampler` and `Schedule type` as web UI 1.10 writes them (plus Beta's parameters)."""
        fields = {"Sampler": self.sampler.name, "Schedule type": self.schedule}
        if self.schedule == "Beta":
            fields["Beta schedule alpha"] = str(BETA_ALPHA)
            fields["Beta schedule beta"] = str(BETA_BETA)
        return fields

    def webui_warning(self) -> str | None:
        """Why the infotext will mislead web UI, for a sampler web UI does not have (DDPM, DEIS):
        its paste (get_sampler_and_scheduler) silently reads an unknown name as its first
        sampler, so the image would be remade with another one."""
        if self.sampler.origin == "web UI":
            return None
        name = self.sampler.name
        return (
            f"--sampler {name} is not a web UI sampler ({self.sampler.origin} has it): web UI "
            f"will not recognise 'Sampler: {name}' in the infotext and will read it as "
            f"{WEBUI_FALLBACK[0]} ({WEBUI_FALLBACK[1]})"
        )


def _norm(text: str) -> str:
    return " ".join(str(text).split()).lower()


def _schedule_label(text: str) -> str | None:
    wanted = _norm(text)
    for label, names in SCHEDULES.items():
        if wanted == label.lower() or wanted in (n.lower() for n in names):
            return label
    return None


def _sampler_def(text: str) -> SamplerDef | None:
    wanted = _norm(text)
    for s in SAMPLERS:
        if wanted == s.name.lower() or wanted in (a.lower() for a in s.aliases):
            return s
    return None


def supported_text() -> str:
    """Every accepted name, for error messages."""
    samplers = ", ".join(s.name for s in SAMPLERS)
    schedules = ", ".join(SCHEDULES)
    return (
        f"samplers: {samplers} (or web UI's aliases such as k_euler_a, k_dpmpp_2m, dpmpp_2m); "
        f"schedule types: {schedules} (for DDIM, PLMS, LCM and DDPM only Automatic)"
    )


def unknown(what: str, why: str = "") -> UnknownSamplerError:
    return UnknownSamplerError(
        f"unknown sampler '{what}'{why}. Supported {supported_text()}. "
        'Example: --sampler "DPM++ 2M" --schedule-type Karras.'
    )


def resolve(name: str | None, schedule: str | None = None) -> Choice:
    """web UI's reading of `Sampler` (+ `Schedule type`): legacy suffixes, aliases, Automatic.

    Raises UnknownSamplerError, listing what is supported, for anything guard cannot run.
    """
    text = " ".join(str(name or "").split())
    if not text:
        raise unknown(str(name or ""))
    suffix = None
    base = _sampler_def(text)
    if base is None and _norm(text) in _KARRAS_ALIASES:
        base, suffix = BY_NAME[_KARRAS_ALIASES[_norm(text)]], "Karras"
    if base is None:  # "DPM++ 2M Karras": the schedule as a suffix, as web UI strips it
        for label, names in SCHEDULES.items():
            for option in (label, *names):
                if _norm(text).endswith(" " + option.lower()):
                    head = text[: -(len(option) + 1)]
                    if _sampler_def(head) is not None:
                        base, suffix = _sampler_def(head), label
                        break
            if base is not None:
                break
    if base is None:
        unavailable = next((u for u in UNAVAILABLE if _norm(text).startswith(u.lower())), None)
        if unavailable:
            raise unknown(text, f": web UI's {unavailable} has no diffusers equivalent")
        raise unknown(text)
    given = None
    if schedule is not None and _norm(schedule) not in ("", "automatic"):
        given = _schedule_label(schedule)
        if given is None:
            raise unknown(f"{text}' with schedule type '{schedule}")
    if suffix and given and given != suffix:
        raise unknown(
            f"{text}' with schedule type '{schedule}",
            f": the name already says {suffix}; drop one of the two",
        )
    label = suffix or given or "Automatic"
    if label == "Automatic" and base.kdiffusion:
        label = base.default_schedule or "Automatic"
    if not base.kdiffusion and label != "Automatic" and base.scheduler in _NO_SCHEDULES:
        raise unknown(
            f"{base.name}' with schedule type '{label}",
            f": diffusers' {base.scheduler} has a fixed timestep schedule (use Automatic)",
        )
    return Choice(base, label)


# diffusers schedulers whose sigmas guard cannot set (no sigma-based schedule to replace)
_NO_SCHEDULES = ("DDIMScheduler", "PNDMScheduler", "LCMScheduler", "DDPMScheduler")


def all_choices() -> list[Choice]:
    """Every sampler/schedule pair guard accepts."""
    out: list[Choice] = []
    for s in SAMPLERS:
        labels = ["Automatic"] if s.scheduler in _NO_SCHEDULES else list(SCHEDULES)
        for label in labels:
            choice = resolve(s.name, label)
            if choice not in out:  # "Automatic" is often another label (DPM++ 2M: Karras)
                out.append(choice)
    return out


def describe(class_name: str, config: dict[str, Any]) -> tuple[str, str | None]:
    """The web UI sampler and schedule type a diffusers scheduler (class + config) corresponds to.

    For a scheduler guard did not build: the sampler whose settings match, and the schedule its
    sigma flags or timestep spacing give (leading spacing = web UI's DDIM schedule, linspace =
    Uniform, trailing = SGM Uniform). A scheduler web UI has no name for keeps its class name.
    """
    match = None
    for s in SAMPLERS:
        if s.scheduler != class_name:
            continue
        if all(config.get(k, v) == v for k, v in s.kwargs.items()):
            match = s
            break
    if match is None:
        return class_name, None
    if match.scheduler in _NO_SCHEDULES:
        return match.name, "Automatic"
    if config.get("use_karras_sigmas"):
        return match.name, "Karras"
    if config.get("use_exponential_sigmas"):
        return match.name, "Exponential"
    if config.get("use_beta_sigmas"):
        return match.name, "Beta"
    if not match.kdiffusion:  # UniPC, DEIS: the model's own spacing, as web UI runs them
        return match.name, "Automatic"
    spacing = config.get("timestep_spacing", "linspace")
    return match.name, {"leading": "DDIM", "trailing": "SGM Uniform"}.get(spacing, "Uniform")
