"""The sampling passes of one generation, conditioned the way web UI conditions them.

`Conditioner` encodes a run's prompt and negative prompt once per text encoder (web UI's prompt
syntax, long prompts, prompt editing) and calls a diffusers pipeline with those embeddings,
switching them during sampling when the prompt edits or alternates. `hires_pass` is web UI's
hires fix: upscale the first pass and refine it with an img2img pass.
"""

from __future__ import annotations

from typing import Any

from generator import hires as hr
from generator.conditioning import Encoded, PromptEncoder
from generator.prompt_syntax import split_prompt_weight
from generator.step_conditioning import StepConditioning, step_counter, webui_steps
from guard.progress import disable as bar_disable


class Conditioner:
    """One run's prompts, encoded per text encoder and per pass, and the pipeline calls."""

    def __init__(
        self, sampler_base: str, prompt: str, negative: str, steps: int, clip_skip: int = 1
    ) -> None:
        self.text, self.weight = split_prompt_weight(prompt)
        self.negative = negative
        self.sampler_base = sampler_base
        self.steps = webui_steps(sampler_base, steps)
        self.clip_skip = clip_skip
        self._cache: dict[tuple[int, int, int | None], tuple[PromptEncoder, Encoded, Encoded]] = {}

    def guidance(self, cfg_scale: float) -> float:
        """web UI scales the guidance by the prompt's `:weight` (1 when it has none)."""
        return cfg_scale * self.weight

    def encoded(
        self, pipe: Any, hires_steps: int | None = None
    ) -> tuple[PromptEncoder, Encoded, Encoded]:
        """(encoder, prompt, negative prompt) for the pipeline's text encoders; pipelines that
        share encoders (from_pipe) share the result."""
        key = (
            id(getattr(pipe, "text_encoder", None)),
            id(getattr(pipe, "text_encoder_2", None)),
            hires_steps,
        )
        if key not in self._cache:
            encoder = PromptEncoder(pipe, self.clip_skip)
            hires_total = (
                None if hires_steps is None else webui_steps(self.sampler_base, hires_steps)
            )
            cond = encoder.schedule(self.text, self.steps, hires_total)
            uncond = encoder.schedule(self.negative, self.steps, hires_total, negative=True)
            self._cache[key] = (encoder, cond, uncond)
        return self._cache[key]

    def run(
        self,
        pipe: Any,
        args: dict[str, Any],
        batch: int,
        *,
        hires_steps: int | None = None,
        offset: int = 0,
    ) -> Any:
        """Call the pipeline with `args` plus the embeddings of each step.

        `offset`: web UI's step count before this call (the refiner continues the base's steps).
        """
        encoder, cond, uncond = self.encoded(pipe, hires_steps)
        counter = step_counter(self.sampler_base, pipe.scheduler, offset)
        steps = StepConditioning(encoder, cond, uncond, batch, counter)
        call = {k: v for k, v in args.items() if k not in ("prompt", "negative_prompt")}
        call.update(steps.pipe_args())
        if steps.switches:
            call.update(
                callback_on_step_end=steps,
                callback_on_step_end_tensor_inputs=steps.tensor_inputs,
            )
        with steps.masked_padding(pipe):
            return pipe(**call)


def hires_pass(
    first: Any,
    second: Any,
    conditioner: Conditioner,
    latents: Any,
    settings: Any,
    make_generators: Any,
    progress: bool,
) -> list[Any]:
    """web UI's hires fix on the first pass's latents; returns the final pictures.

    `first` decoded/encoded the latents (its VAE); `second` is an img2img pipeline over the same
    weights; `make_generators()` gives fresh per-image generators (web UI re-seeds for the pass).
    """
    h: hr.Hires = settings.hires
    target = hr.target(settings.width, settings.height, h)
    if h.latent:
        start = hr.upscale_latents(latents, target, h.upscaler)
    else:
        pictures = [
            hr.upscale_image(p, target.upscale_to, h.upscaler) for p in hr.decode(first, latents)
        ]
        start = hr.crop(hr.encode(first, pictures, make_generators()), target)
    steps = h.steps or settings.steps
    total, strength = hr.img2img_schedule(steps, h.denoise)
    second.set_progress_bar_config(desc="hires fix", disable=bar_disable(progress), leave=False)
    args = {
        "image": start.to(second.unet.dtype),
        "num_inference_steps": total,
        "strength": strength,
        "guidance_scale": conditioner.guidance(settings.cfg_scale),
        "generator": make_generators(),
        "output_type": "pil",
    }
    return conditioner.run(second, args, len(latents), hires_steps=steps).images
