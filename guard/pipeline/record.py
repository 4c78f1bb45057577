"""What a pipeline call records for each image it returns: its pending provenance.

Each PIL image an attached pipeline returns carries a `Pending` in `image.info` (which survives
`copy()` and `convert()`): the manifest spec built from the call's parameters and the watermark
ID already in its pixels. guard.pipeline.save publishes it.

What is recorded is what web UI would write: the sampler and schedule type by their web UI names
(not the scheduler's class), and a seed for every image (guard.pipeline.hooks passes one seeded generator
per image when the caller passes none).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from guard.provenance.spec import ManifestSpec, Training
from guard.webui import generation_record
from guard.webui.samplers import describe

INFO_KEY = "guard.pending"


@dataclass
class Pending:
    """What `save` needs to publish one image the pipeline made."""

    spec: ManifestSpec
    watermark: bool
    watermark_id: str | None
    watermark_key: bytes | None
    identity: Any
    ledger: Any
    # in-memory inputs of img2img/inpainting, written to temporary files as ingredients on save
    inputs: list[tuple[Any, str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def pending(image: Any) -> Pending | None:
    """The pending provenance an attached pipeline gave this image, if any."""
    info = getattr(image, "info", None)
    value = info.get(INFO_KEY) if isinstance(info, dict) else None
    return value if isinstance(value, Pending) else None


def _per_image(value: Any, index: int, total: int) -> Any:
    """The prompt (or seed) of image `index` when a call passes one per prompt or per image."""
    if isinstance(value, (list, tuple)):
        if not value:
            return None
        per = max(total // len(value), 1)
        return value[min(index // per, len(value) - 1)]
    return value


def _seed(generator: Any, index: int, total: int) -> int | None:
    g = _per_image(generator, index, total) if isinstance(generator, list) else generator
    if g is None or not hasattr(g, "initial_seed"):
        return None
    return int(g.initial_seed())


def inputs(params: dict[str, Any]) -> list[tuple[Any, str, str]]:
    """The call's input pictures as (image, relationship, title): the init image is the parent,
    a mask and ControlNet control images are inputs. A ControlNet text-to-image pipeline takes
    its control image as `image`; its img2img and inpaint pipelines as `control_image`."""
    from PIL import Image

    def pictures(value: Any) -> list[Any]:
        items = value if isinstance(value, (list, tuple)) else [value]
        return [v for v in items if isinstance(v, Image.Image)]

    controlnet = "controlnet_conditioning_scale" in params
    init_name = "image" if not controlnet or "control_image" in params else None
    control_name = "control_image" if "control_image" in params else "image" if controlnet else None
    found = []
    if init_name:
        found += [(im, "parentOf", "init image") for im in pictures(params.get(init_name))[:1]]
    found += [(im, "inputTo", "mask") for im in pictures(params.get("mask_image"))[:1]]
    if control_name:
        controls = pictures(params.get(control_name))
        # a list holds one image per ControlNet (MultiControlNet) or per prompt: keep distinct ones
        unique = [im for i, im in enumerate(controls) if all(im is not c for c in controls[:i])]
        found += [(im, "inputTo", f"control image {n}") for n, im in enumerate(unique)]
    return found


def sampler_fields(scheduler: Any) -> dict[str, str]:
    """web UI's `Sampler` and `Schedule type` for a pipeline's scheduler.

    A scheduler guard built carries its web UI names; any other is named by its settings
    (guard.webui.samplers.describe), or by its class when web UI has no name for it.
    """
    if scheduler is None:
        return {}
    named = getattr(scheduler, "guard_webui", None)
    if named is None:
        named = describe(type(scheduler).__name__, dict(getattr(scheduler, "config", {}) or {}))
    sampler, schedule = named
    fields = {"Sampler": sampler}
    if schedule is not None:
        fields["Schedule type"] = schedule
    return fields


def spec(
    pipe: Any,
    params: dict[str, Any],
    index: int,
    total: int,
    image: Any,
    *,
    model: str,
    model_hash: str | None,
    training: Training,
) -> ManifestSpec:
    """The manifest of image `index` of `total` from one call with `params`."""
    from guard import __version__

    prompt = _per_image(params.get("prompt"), index, total) or ""
    negative = _per_image(params.get("negative_prompt"), index, total) or ""
    scheduler = getattr(pipe, "scheduler", None)
    edited = any(rel == "parentOf" for _, rel, _ in inputs(params))
    fields: dict[str, Any] = {
        "Steps": params.get("num_inference_steps"),
        **sampler_fields(scheduler),
        "CFG scale": params.get("guidance_scale"),
        "Seed": _seed(params.get("generator"), index, total),
        "Size": f"{image.width}x{image.height}",
        "Model hash": model_hash,
        "Model": model,
        "Denoising strength": params.get("strength") if edited else None,
    }
    if total > 1 and not isinstance(params.get("generator"), list):
        # one generator for the whole batch: the seed reproduces the batch, not this image alone
        fields["Batch size"], fields["Batch pos"] = total, index
    fields["Version"] = f"guard v{__version__}"
    info = generation_record.infotext(str(prompt), str(negative), fields)
    task = "inpaint" if params.get("mask_image") is not None else "img2img" if edited else "txt2img"
    return generation_record.spec(
        info,
        task=task,  # type: ignore[arg-type]
        model=model,
        model_hash=model_hash,
        training=training,
        extra={
            "pipeline": type(pipe).__name__,
            "scheduler": type(scheduler).__name__ if scheduler is not None else None,
        },
    )
