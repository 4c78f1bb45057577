"""The conditioning a pipeline sees at each sampling step, as web UI schedules it.

Prompt editing (`[a:b:0.5]`) and alternation (`[a|b]`) switch the embeddings during sampling at
web UI's steps: web UI counts every model call as a step and doubles the step count of its
second-order samplers when it computes the switching points.

Between prompt and negative prompt web UI runs the UNet separately when their lengths differ.
diffusers batches them, so the shorter one is padded with empty-prompt chunks and the padding is
masked out of cross-attention (`masked_padding`), which gives the same result.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator
from typing import Any

from generator.conditioning import Encoded, PromptEncoder
from generator.prompt_syntax import entry_at

# web UI's samplers flagged second_order: their step count doubles when prompt-editing steps are
# computed, and web UI counts every model call as a step.
SECOND_ORDER = frozenset({"DPM++ SDE", "DPM++ 2S a", "Heun", "DPM2", "DPM2 a", "Restart"})


def webui_steps(sampler_base: str, steps: int) -> int:
    """The step count web UI schedules prompt edits over (doubled for second-order samplers)."""
    return steps * 2 if sampler_base in SECOND_ORDER else steps


def step_counter(sampler_base: str, scheduler: Any, offset: int = 0) -> Callable[[int], int]:
    """diffusers loop index -> web UI's step counter, which counts model calls.

    diffusers' second-order schedulers (Heun, DPM2, DPM++ SDE) already take one loop iteration per
    model call; a single-call stand-in for a web UI second-order sampler counts double.
    """
    double = sampler_base in SECOND_ORDER and getattr(scheduler, "order", 1) == 1
    return (lambda i: offset + 2 * i) if double else (lambda i: offset + i)


class StepConditioning:
    """The conditioning a pipeline sees at each step: prompt editing and alternation switch it.

    `pipe_args()` gives the embeddings for the first step; pass the object itself as
    `callback_on_step_end` (with `tensor_inputs`) when `switches` is true.
    """

    def __init__(
        self,
        encoder: PromptEncoder,
        cond: Encoded,
        uncond: Encoded,
        batch: int,
        counter: Callable[[int], int],
    ) -> None:
        import torch

        self.cond, self.uncond, self.batch, self.counter = cond, uncond, batch, counter
        self.sdxl = encoder.sdxl
        self.length = max(cond.length, uncond.length)
        self.cond_embeds, self.uncond_embeds = cond.embeds, uncond.embeds
        if cond.length != uncond.length:
            empty = encoder.empty().to(cond.embeds.dtype)
            self.cond_embeds = _pad(cond.embeds, self.length, empty)
            self.uncond_embeds = _pad(uncond.embeds, self.length, empty)
        ones = torch.ones(batch, self.length, device=cond.embeds.device)
        self.cond_mask, self.uncond_mask = ones.clone(), ones.clone()
        self.cond_mask[:, cond.length :] = 0
        self.uncond_mask[:, uncond.length :] = 0
        self._current = self._indices(counter(0))

    @property
    def switches(self) -> bool:
        return len(self.cond.ends) > 1 or len(self.uncond.ends) > 1

    @property
    def tensor_inputs(self) -> list[str]:
        return ["prompt_embeds", "add_text_embeds"] if self.sdxl else ["prompt_embeds"]

    def _indices(self, step: int) -> tuple[int, int]:
        return entry_at(self.cond.ends, step), entry_at(self.uncond.ends, step)

    def _rows(self, embeds: Any, index: int) -> Any:
        return embeds[index : index + 1].expand(self.batch, -1, -1)

    def pipe_args(self) -> dict[str, Any]:
        c, u = self._current
        args = {
            "prompt_embeds": self._rows(self.cond_embeds, c),
            "negative_prompt_embeds": self._rows(self.uncond_embeds, u),
        }
        if self.sdxl:
            args["pooled_prompt_embeds"] = self.cond.pooled[c : c + 1].expand(self.batch, -1)
            args["negative_pooled_prompt_embeds"] = self.uncond.pooled[u : u + 1].expand(
                self.batch, -1
            )
        return args

    def __call__(self, pipe: Any, i: int, t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        """callback_on_step_end: set the embeddings of the next step (i + 1)."""
        import torch

        wanted = self._indices(self.counter(i + 1))
        if wanted == self._current:
            return {}
        self._current = wanted
        args = self.pipe_args()
        guided = getattr(pipe, "do_classifier_free_guidance", True)
        embeds = args["prompt_embeds"]
        if guided:
            embeds = torch.cat([args["negative_prompt_embeds"], embeds])
        out = {"prompt_embeds": embeds.to(kwargs["prompt_embeds"].dtype)}
        if self.sdxl:
            pooled = args["pooled_prompt_embeds"]
            if guided:
                pooled = torch.cat([args["negative_pooled_prompt_embeds"], pooled])
            out["add_text_embeds"] = pooled.to(kwargs["add_text_embeds"].dtype)
        return out

    @contextlib.contextmanager
    def masked_padding(self, pipe: Any) -> Iterator[None]:
        """Mask the padding chunks out of the UNet's cross-attention while the pipeline runs."""
        if self.cond.length == self.uncond.length:
            yield
            return
        unet = pipe.unet
        if "encoder_attention_mask" not in inspect.signature(unet.forward).parameters:
            yield
            return

        def hook(module: Any, args: Any, kwargs: dict[str, Any]) -> Any:
            import torch

            states = kwargs.get("encoder_hidden_states")
            if states is None or kwargs.get("encoder_attention_mask") is not None:
                return None
            if states.shape[1] != self.length:
                return None
            if states.shape[0] == 2 * self.batch:
                mask = torch.cat([self.uncond_mask, self.cond_mask])
            elif states.shape[0] == self.batch:
                mask = self.cond_mask
            else:
                return None
            kwargs["encoder_attention_mask"] = mask.to(states.device)
            return args, kwargs

        handle = unet.register_forward_pre_hook(hook, with_kwargs=True)
        try:
            yield
        finally:
            handle.remove()


def _pad(embeds: Any, length: int, empty: Any) -> Any:
    import torch

    missing = (length - embeds.shape[1]) // empty.shape[1]
    if missing <= 0:
        return embeds
    filler = empty.to(embeds.device).expand(embeds.shape[0], -1, -1).repeat(1, missing, 1)
    return torch.cat([embeds, filler], dim=1)
