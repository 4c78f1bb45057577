"""web UI sampler + schedule type -> a diffusers scheduler that samples the same sigmas.

The names and their meaning live in guard.webui.samplers (shared with the pipeline hook). Here
the diffusers side: the scheduler class with the sampler's settings, built from the model's own
scheduler config (betas, prediction type), and, for k-diffusion samplers, web UI's sigma schedule
(generator/schedules.py) handed to it.

How the sigmas get in: every diffusers scheduler with a Karras option builds its steps from
`_convert_to_karras(in_sigmas, num_inference_steps)` and derives the timesteps from what that
returns. guard turns the option on and gives the instance its own `_convert_to_karras` that
returns web UI's sigmas for the chosen schedule. Euler a has no such option; its `set_timesteps`
is wrapped to replace the sigmas and timesteps it computed. Both are per instance: the class and
any other pipeline are untouched.
"""

from __future__ import annotations

import importlib
import inspect
import types
from dataclasses import dataclass
from typing import Any

import numpy as np

from guard.webui.samplers import (
    BY_NAME,
    SAMPLERS,
    SCHEDULES,
    Choice,
    UnknownSamplerError,
    all_choices,
    resolve,
)

__all__ = [
    "BASES",
    "SCHEDULES",
    "Sampler",
    "UnknownSamplerError",
    "make_scheduler",
    "parse_sampler",
    "valid_names",
]

BASES = BY_NAME  # sampler name -> definition, web UI's spelling
_SIGMA_FLAGS = ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas")


@dataclass(frozen=True)
class Sampler:
    """A resolved choice plus what generation needs to know about it."""

    choice: Choice

    @property
    def base(self) -> str:
        return self.choice.sampler.name

    @property
    def schedule(self) -> str:
        return self.choice.schedule

    @property
    def name(self) -> str:
        """The pre-1.9 combined spelling, e.g. "DPM++ 2M Karras"."""
        return self.choice.legacy_name

    @property
    def scheduler_class(self) -> str:
        return self.choice.sampler.scheduler

    @property
    def approximate(self) -> bool:
        return self.choice.sampler.approximate

    @property
    def brownian(self) -> bool:
        return self.choice.sampler.brownian

    @property
    def custom_sigmas(self) -> bool:
        """Whether guard sets web UI's sigmas (k-diffusion samplers, or an explicit schedule)."""
        return self.choice.sampler.kdiffusion or self.schedule != "Automatic"

    def infotext_fields(self) -> dict[str, str]:
        return self.choice.infotext_fields()


def parse_sampler(name: str, schedule: str | None = None) -> Sampler:
    """Resolve "DPM++ 2M Karras", "DPM++ 2M" + schedule "Karras", or an alias ("k_dpmpp_2m")."""
    return Sampler(resolve(name, schedule))


def valid_names() -> list[str]:
    """Every accepted sampler/schedule pair, in the combined spelling, base names first."""
    names = [s.name for s in SAMPLERS]
    for c in all_choices():
        combined = f"{c.name} {c.schedule}"
        if c.schedule != "Automatic" and combined not in names:
            names.append(combined)
    return names


def _scheduler_cls(name: str) -> type[Any]:
    return getattr(importlib.import_module("diffusers"), name)


def make_scheduler(sampler: Sampler | str, model_config: Any, *, sdxl: bool = False) -> Any:
    """The scheduler for `sampler`, built from the model's own scheduler config.

    `sdxl` picks the Align Your Steps table. The instance carries `guard_webui` = (sampler,
    schedule type), so the pipeline hook records the web UI names rather than the class.
    """
    from generator.schedules import ModelSigmas, sampling_sigmas

    s = parse_sampler(sampler) if isinstance(sampler, str) else sampler
    cls = _scheduler_cls(s.scheduler_class)
    params = set(inspect.signature(cls.__init__).parameters)
    kwargs = dict(s.choice.sampler.kwargs)
    for flag in _SIGMA_FLAGS:  # start from the model's schedule, not a previous choice
        if flag in params:
            kwargs[flag] = False
    config = {
        k: v
        for k, v in dict(model_config).items()
        if k != "_class_name" and (k not in _SIGMA_FLAGS or k in params)
    }
    if s.custom_sigmas and "use_karras_sigmas" in params:
        kwargs["use_karras_sigmas"] = True
    scheduler = cls.from_config(config, **kwargs)
    if s.custom_sigmas:
        model = ModelSigmas(scheduler.alphas_cumprod.numpy())
        discard = s.choice.sampler.discard_penultimate

        def web_ui_sigmas(steps: int) -> np.ndarray:
            out = sampling_sigmas(s.schedule, steps, model, sdxl=sdxl, discard_penultimate=discard)
            # diffusers appends the final sigma (0) itself; KL Optimal's last step then ends at 0
            # rather than at sigma_min
            return out[:-1]

        if "use_karras_sigmas" in params:
            _replace_karras(scheduler, web_ui_sigmas)
        else:
            _wrap_set_timesteps(scheduler, web_ui_sigmas)
    scheduler.guard_webui = (s.base, s.schedule)
    return scheduler


def _replace_karras(scheduler: Any, sigmas_for_steps: Any) -> None:
    def convert(self: Any, in_sigmas: Any, num_inference_steps: int | None = None) -> np.ndarray:
        steps = num_inference_steps or self.num_inference_steps
        return sigmas_for_steps(int(steps))

    scheduler._convert_to_karras = types.MethodType(convert, scheduler)
    if hasattr(scheduler, "get_order_list"):  # single-step DPM++ plans its orders per step
        original = scheduler.set_timesteps

        def set_timesteps(self: Any, *args: Any, **kw: Any) -> None:
            original(*args, **kw)
            # web UI's DDIM schedule can have one step more than asked (its spacing is 1000 // n)
            if len(self.order_list) != len(self.timesteps):
                self.order_list = self.get_order_list(len(self.timesteps))
                self.num_inference_steps = len(self.timesteps)

        scheduler.set_timesteps = types.MethodType(set_timesteps, scheduler)


def _wrap_set_timesteps(scheduler: Any, sigmas_for_steps: Any) -> None:
    """For schedulers without a sigma hook (Euler a): set the sigmas after diffusers did."""
    import torch

    original = scheduler.set_timesteps
    model = None

    def set_timesteps(self: Any, num_inference_steps: int, device: Any = None, **kw: Any) -> None:
        nonlocal model
        from generator.schedules import ModelSigmas

        original(num_inference_steps, device=device, **kw)
        if model is None:
            model = ModelSigmas(self.alphas_cumprod.numpy())
        sigmas = sigmas_for_steps(int(num_inference_steps))
        timesteps = np.array([model.sigma_to_t(x) for x in sigmas])
        self.sigmas = torch.from_numpy(np.append(sigmas, 0.0).astype(np.float32)).to("cpu")
        self.timesteps = torch.from_numpy(timesteps.astype(np.float32)).to(device=device)
        self.num_inference_steps = len(timesteps)

    scheduler.set_timesteps = types.MethodType(set_timesteps, scheduler)


def schedule_labels() -> list[str]:
    return list(SCHEDULES)
