"""Provenance for a platform's own diffusers pipeline, in two lines:

    guard.attach(pipe)                       # every image the pipeline returns is watermarked
    guard.save(pipe("a red fox").images[0], "fox.png")   # ... and is written signed

`attach` keeps the pipeline object and its output type: `pipe(...)` still returns the usual
output. Each PIL image carries its pending provenance (the call's parameters, the watermark ID
already in its pixels) in `image.info`, which survives `copy()` and `convert()`. `save` hands it to
guard.publish, which signs without marking the pixels a second time.

What is recorded is what web UI would write: the sampler and schedule type by their web UI names
(not the scheduler's class), and a seed for every image: when the caller passes no generator, the
hook passes one seeded generator per image (seeds s, s+1, ... as web UI numbers a batch).
Pipelines derived from an attached one with `from_pipe` are attached with the same settings.

SDXL pipelines watermark inside their own post-process step (`pipe.watermark.apply_watermark`);
`attach` installs `GuardWatermarker` there, so guard's mark goes in at the same point (after
Stability's own mark, which is kept).

Nothing here imports torch or diffusers at module level.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from guard import generation_record
from guard.errors import GuardError, TooSmallError
from guard.provenance.spec import Ingredient, ManifestSpec, Training
from guard.webui_samplers import describe

INFO_KEY = "guard.pending"


class NoPendingProvenanceError(GuardError):
    """`save` was given an image that did not come out of an attached pipeline."""


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


# ---- the in-pipeline watermarker -----------------------------------------------------------------
class GuardWatermarker:
    """Drop-in for diffusers' `StableDiffusionXLWatermarker`: `apply_watermark(images)` takes and
    returns a torch tensor in [-1, 1], NCHW. It embeds a fresh guard payload per image and keeps
    the payloads for the attach wrapper to pair with the returned images."""

    def __init__(self, key: bytes | None = None, inner: Any = None) -> None:
        self.key = key
        self.inner = inner  # the pipeline's previous watermarker, applied first
        self._payloads: list[str | None] = []
        self.notes: list[str] = []

    def apply_watermark(self, images: Any) -> Any:
        import numpy as np
        import torch
        from PIL import Image

        if self.inner is not None:
            images = self.inner.apply_watermark(images)
        device, dtype = images.device, images.dtype
        array = ((images.detach().float().cpu() / 2 + 0.5).clamp(0, 1) * 255).round()
        array = array.permute(0, 2, 3, 1).numpy().astype(np.uint8)
        out = []
        for pixels in array:
            marked, payload = self.mark(Image.fromarray(pixels))
            self._payloads.append(payload)
            out.append(np.asarray(marked.convert("RGB")))
        result = torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float() / 255 * 2 - 1
        return result.to(device=device, dtype=dtype)

    def mark(self, image: Any) -> tuple[Any, str | None]:
        """Embed a new payload; images too small to carry it are returned unmarked."""
        from guard import watermark as wm

        payload = wm.new_payload()
        try:
            return wm.embed(image, payload, key=self.key), payload.hex()
        except TooSmallError as exc:
            self.notes.append(f"not watermarked: {exc}")
            return image, None

    def take(self) -> list[str | None]:
        """The payloads embedded since the last call, oldest first."""
        payloads, self._payloads = self._payloads, []
        return payloads


# ---- attach / detach -----------------------------------------------------------------------------
@dataclass
class _Settings:
    identity: Any
    watermark: bool
    training: Training
    key: bytes | None
    ledger: Any
    model: str
    model_hash: str | None
    watermarker: GuardWatermarker | None
    original_class: type
    previous_watermark: Any = None


def attach(
    pipe: Any,
    identity: Any = None,
    watermark: bool = True,
    training: Training = "notAllowed",
    *,
    watermark_key: bytes | None = None,
    ledger: Any = None,
    model: str | None = None,
    model_hash: str | None = None,
) -> Any:
    """Make every image `pipe(...)` returns watermarked and ready for `save`. Returns `pipe`.

    `model`/`model_hash` name the model in the manifest's softwareAgent (default: the pipeline's
    `name_or_path`). Attaching twice only updates the settings.
    """
    if getattr(pipe, "_guard", None) is not None:
        detach(pipe)
    original = type(pipe)
    name = model or _model_name(pipe)
    watermarker = None
    previous = getattr(pipe, "watermark", None) if hasattr(pipe, "watermark") else None
    if watermark and hasattr(pipe, "watermark"):
        watermarker = GuardWatermarker(watermark_key, inner=previous)
        pipe.watermark = watermarker
    settings = _Settings(
        identity,
        watermark,
        training,
        watermark_key,
        ledger,
        name,
        model_hash,
        watermarker,
        original,
        previous,
    )
    # A subclass with the same name: `pipe` stays the same object, isinstance() and the saved
    # config's _class_name are unchanged, and only this instance is affected.
    guarded = type(original.__name__, (original,), {"__call__": _guarded_call})
    guarded.__qualname__ = original.__qualname__
    guarded.__module__ = original.__module__
    pipe.__class__ = guarded
    pipe._guard = settings
    _follow_from_pipe()
    return pipe


def _follow_from_pipe() -> None:
    """Make `SomePipeline.from_pipe(attached)` return an attached pipeline too.

    `from_pipe` is a classmethod of the *target* class, so no per-instance hook can see it; it is
    wrapped once, on diffusers' base class, and only acts when its source pipeline is attached.
    """
    import sys

    diffusers = sys.modules.get("diffusers")
    base = getattr(diffusers, "DiffusionPipeline", None) if diffusers else None
    if base is None or getattr(base.from_pipe, "_guard_follows", False):
        return
    original = base.from_pipe.__func__

    def from_pipe(cls: type, pipeline: Any, **kwargs: Any) -> Any:
        derived = original(cls, pipeline, **kwargs)
        source: _Settings | None = getattr(pipeline, "_guard", None)
        if source is not None and getattr(derived, "_guard", None) is None:
            attach(
                derived,
                source.identity,
                source.watermark,
                source.training,
                watermark_key=source.key,
                ledger=source.ledger,
                model=source.model,
                model_hash=source.model_hash,
            )
        return derived

    from_pipe._guard_follows = True  # type: ignore[attr-defined]
    base.from_pipe = classmethod(from_pipe)


def detach(pipe: Any) -> Any:
    """Undo `attach`: the pipeline behaves exactly as before."""
    settings: _Settings | None = getattr(pipe, "_guard", None)
    if settings is None:
        return pipe
    pipe.__class__ = settings.original_class
    if settings.watermarker is not None:
        pipe.watermark = settings.previous_watermark
    pipe._guard = None
    return pipe


def _model_name(pipe: Any) -> str:
    raw = str(getattr(pipe, "name_or_path", "") or getattr(pipe.config, "_name_or_path", ""))
    raw = raw.rstrip("/\\")
    return Path(raw).stem if raw else type(pipe).__name__


def _guarded_call(self: Any, *args: Any, **kwargs: Any) -> Any:
    settings: _Settings = self._guard
    original_call = settings.original_class.__call__
    if settings.watermarker is not None:
        settings.watermarker.take()  # drop leftovers of a call that raised
        settings.watermarker.notes.clear()
    kwargs = _with_seeded_generators(original_call, self, args, kwargs)
    output = original_call(self, *args, **kwargs)
    try:
        bound = inspect.signature(original_call).bind(self, *args, **kwargs)
        bound.apply_defaults()
        params = dict(bound.arguments)
    except TypeError:
        params = dict(kwargs)
    params.pop("self", None)
    images = output[0] if isinstance(output, tuple) else getattr(output, "images", None)
    if images is None or params.get("output_type") == "latent":
        return output
    marked = _finish(self, settings, images, params)
    if isinstance(output, tuple):
        return (marked, *output[1:])
    output.images = marked
    return output


def _with_seeded_generators(call: Any, pipe: Any, args: tuple, kwargs: dict) -> dict:
    """A call without `generator` gets one CPU generator per image, seeded s, s+1, ... from a
    random s, so every image has a seed to record (and to reproduce it with)."""
    try:
        bound = inspect.signature(call).bind_partial(pipe, *args, **kwargs)
    except TypeError:
        return kwargs
    given = bound.arguments
    if "generator" not in inspect.signature(call).parameters or given.get("generator") is not None:
        return kwargs
    if given.get("latents") is not None:  # the caller chose the noise; there is no seed to say
        return kwargs
    count = _batch_size(given)
    if count is None:
        return kwargs
    import secrets

    import torch

    first = secrets.randbelow(2**32 - count)
    return {
        **kwargs,
        "generator": [torch.Generator("cpu").manual_seed(first + i) for i in range(count)],
    }


def _batch_size(arguments: dict[str, Any]) -> int | None:
    prompt = arguments.get("prompt")
    if isinstance(prompt, str):
        prompts = 1
    elif isinstance(prompt, (list, tuple)):
        prompts = len(prompt)
    elif arguments.get("prompt_embeds") is not None:
        prompts = int(arguments["prompt_embeds"].shape[0])
    else:
        return None
    per_prompt = arguments.get("num_images_per_prompt") or 1
    return prompts * int(per_prompt)


def _finish(pipe: Any, settings: _Settings, images: Any, params: dict[str, Any]) -> Any:
    """Watermark what the pipeline did not, and attach each PIL image's pending provenance."""
    from PIL import Image

    payloads = settings.watermarker.take() if settings.watermarker else []
    notes = list(settings.watermarker.notes) if settings.watermarker else []
    kind = (
        "pil" if isinstance(images, list) and images and isinstance(images[0], Image.Image) else ""
    )
    if not kind:
        return _finish_arrays(settings, images, payloads)
    marked = []
    for i, image in enumerate(images):
        watermark_id = payloads[i] if i < len(payloads) else None
        image_notes = list(notes)
        if settings.watermark and watermark_id is None and not payloads:
            helper = GuardWatermarker(settings.key)
            image, watermark_id = helper.mark(image)
            image_notes += helper.notes
        image.info[INFO_KEY] = Pending(
            spec=_spec(pipe, settings, params, i, len(images), image),
            watermark=settings.watermark,
            watermark_id=watermark_id,
            watermark_key=settings.key,
            identity=settings.identity,
            ledger=settings.ledger,
            inputs=_inputs(params),
            notes=image_notes,
        )
        marked.append(image)
    return marked


def _finish_arrays(settings: _Settings, images: Any, payloads: list[str | None]) -> Any:
    """np/pt outputs: watermark the pixels (they cannot carry pending provenance for `save`)."""
    if not settings.watermark or payloads:
        return images
    import numpy as np
    from PIL import Image

    helper = GuardWatermarker(settings.key)
    if hasattr(images, "detach"):  # torch tensor, NCHW in [0, 1]
        import torch

        array = (images.detach().float().cpu().clamp(0, 1) * 255).round()
        array = array.permute(0, 2, 3, 1).numpy().astype(np.uint8)
        out = [np.asarray(helper.mark(Image.fromarray(a))[0].convert("RGB")) for a in array]
        result = torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float() / 255
        return result.to(device=images.device, dtype=images.dtype)
    array = (np.clip(np.asarray(images, dtype=np.float32), 0, 1) * 255).round().astype(np.uint8)
    out = [np.asarray(helper.mark(Image.fromarray(a))[0].convert("RGB")) for a in array]
    return (np.stack(out).astype(np.float32) / 255).astype(np.asarray(images).dtype)


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


def _inputs(params: dict[str, Any]) -> list[tuple[Any, str, str]]:
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
    (guard.webui_samplers.describe), or by its class when web UI has no name for it.
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


def _spec(
    pipe: Any, settings: _Settings, params: dict[str, Any], index: int, total: int, image: Any
) -> ManifestSpec:
    from guard import __version__

    prompt = _per_image(params.get("prompt"), index, total) or ""
    negative = _per_image(params.get("negative_prompt"), index, total) or ""
    scheduler = getattr(pipe, "scheduler", None)
    edited = any(rel == "parentOf" for _, rel, _ in _inputs(params))
    fields: dict[str, Any] = {
        "Steps": params.get("num_inference_steps"),
        **sampler_fields(scheduler),
        "CFG scale": params.get("guidance_scale"),
        "Seed": _seed(params.get("generator"), index, total),
        "Size": f"{image.width}x{image.height}",
        "Model hash": settings.model_hash,
        "Model": settings.model,
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
        model=settings.model,
        model_hash=settings.model_hash,
        training=settings.training,
        extra={
            "pipeline": type(pipe).__name__,
            "scheduler": type(scheduler).__name__ if scheduler is not None else None,
        },
    )


# ---- save ------------------------------------------------------------------------------------------
def pending(image: Any) -> Pending | None:
    """The pending provenance an attached pipeline gave this image, if any."""
    info = getattr(image, "info", None)
    value = info.get(INFO_KEY) if isinstance(info, dict) else None
    return value if isinstance(value, Pending) else None


def save(
    image: Any,
    path: str | os.PathLike[str],
    *,
    identity: Any = None,
    force: bool = False,
    sidecar: bool = False,
) -> Any:
    """Write an image from an attached pipeline: signed, its watermark recorded in the ledger.

    Returns guard.publish.Published. The format follows the extension (png, jpg, webp, ...).
    """
    from guard.publish import publish

    p = pending(image)
    if p is None:
        raise NoPendingProvenanceError(
            "this image did not come from a pipeline guard is attached to (or it lost its "
            "provenance in an edit); call guard.attach(pipe) before generating, or sign an "
            "existing file with guard.sign()"
        )
    pixels = image.copy()
    pixels.info.pop(INFO_KEY, None)
    spec = ManifestSpec(**{**p.spec.__dict__, "ingredients": list(p.spec.ingredients)})
    with contextlib.ExitStack() as stack:
        if p.inputs:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="guard-")))
            for n, (im, relationship, title) in enumerate(p.inputs):
                file = folder / f"{n}-{title.replace(' ', '-')}.png"
                im.save(file)
                spec.ingredients.append(Ingredient(file, relationship, title))  # type: ignore[arg-type]
        result = publish(
            pixels,
            path,
            spec,
            identity=identity if identity is not None else p.identity,
            # the mark went in at generation time (or the image was too small for it): never twice
            watermark=p.watermark_id is not None,
            watermark_key=p.watermark_key,
            watermark_id=p.watermark_id,
            ledger=p.ledger,
            force=force,
            sidecar=sidecar,
        )
    result.notes[:0] = p.notes
    return result
