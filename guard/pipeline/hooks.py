"""Provenance for a platform's own diffusers pipeline, in two lines:

    guard.attach(pipe)                       # every image the pipeline returns is watermarked
    guard.save(pipe("a red fox").images[0], "fox.png")   # ... and is written signed

`attach` keeps the pipeline object and its output type: `pipe(...)` still returns the usual
output. Each PIL image carries its pending provenance (guard.pipeline.record: the call's
parameters, the watermark ID already in its pixels) in `image.info`; `save` (guard.pipeline.save)
hands it to guard.publish, which signs without marking the pixels a second time.

When the caller passes no generator, the hook passes one seeded generator per image (seeds s,
s+1, ... as web UI numbers a batch), so every image has a seed to record. Pipelines derived from
an attached one with `from_pipe` are attached with the same settings. SDXL pipelines get
guard's mark inside their own post-process step (guard.pipeline.watermarker).

Nothing here imports torch or diffusers at module level.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from guard.pipeline import record as pipeline_record
from guard.pipeline.record import INFO_KEY, Pending
from guard.pipeline.watermarker import GuardWatermarker, mark_arrays
from guard.provenance.spec import Training


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
        if not settings.watermark or payloads:
            return images
        return mark_arrays(images, settings.key)
    marked = []
    for i, image in enumerate(images):
        watermark_id = payloads[i] if i < len(payloads) else None
        image_notes = list(notes)
        if settings.watermark and watermark_id is None and not payloads:
            helper = GuardWatermarker(settings.key)
            image, watermark_id = helper.mark(image)
            image_notes += helper.notes
        image.info[INFO_KEY] = Pending(
            spec=pipeline_record.spec(
                pipe,
                params,
                i,
                len(images),
                image,
                model=settings.model,
                model_hash=settings.model_hash,
                training=settings.training,
            ),
            watermark=settings.watermark,
            watermark_id=watermark_id,
            watermark_key=settings.key,
            identity=settings.identity,
            ledger=settings.ledger,
            inputs=pipeline_record.inputs(params),
            notes=image_notes,
        )
        marked.append(image)
    return marked
