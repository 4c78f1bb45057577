"""Provenance for a platform's own diffusers pipeline, in two lines:

    guard.attach(pipe)                       # every image the pipeline returns is watermarked
    guard.save(pipe("a red fox").images[0], "fox.png")   # ... and is written signed

`attach` keeps the pipeline object and its output type: `pipe(...)` still returns the usual
output. Each PIL image carries its pending provenance (the call's parameters, the watermark ID
already in its pixels) in `image.info`, which survives `copy()` and `convert()`. `save` hands it to
guard.publish, which signs without marking the pixels a second time.

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

from guard.errors import GuardError, TooSmallError
from guard.infotext import GENERATION_ASSERTION, Infotext, format_number
from guard.provenance.spec import Assertion, Ingredient, ManifestSpec, Training

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
    return pipe


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
    from PIL import Image

    found = []
    for name, relationship, title in (
        ("image", "parentOf", "init image"),
        ("mask_image", "inputTo", "mask"),
    ):
        value = params.get(name)
        if isinstance(value, list) and value:
            value = value[0]
        if isinstance(value, Image.Image):
            found.append((value, relationship, title))
    return found


def _spec(
    pipe: Any, settings: _Settings, params: dict[str, Any], index: int, total: int, image: Any
) -> ManifestSpec:
    prompt = _per_image(params.get("prompt"), index, total) or ""
    negative = _per_image(params.get("negative_prompt"), index, total) or ""
    scheduler = type(getattr(pipe, "scheduler", None)).__name__
    fields: dict[str, Any] = {
        "Steps": params.get("num_inference_steps"),
        "Sampler": scheduler,
        "CFG scale": params.get("guidance_scale"),
        "Seed": _seed(params.get("generator"), index, total),
        "Size": f"{image.width}x{image.height}",
        "Model hash": settings.model_hash,
        "Model": settings.model,
    }
    if total > 1 and not isinstance(params.get("generator"), list):
        # one generator for the whole batch: the seed reproduces the batch, not this image alone
        fields["Batch size"], fields["Batch pos"] = total, index
    edited = bool(_inputs(params))
    if edited and params.get("strength") is not None:
        fields["Denoising strength"] = params.get("strength")
    from guard import __version__

    fields["Version"] = f"guard v{__version__}"
    fields = {k: v for k, v in fields.items() if v is not None}
    text = Infotext(
        str(prompt), str(negative), {k: format_number(v) for k, v in fields.items()}
    ).to_text()
    data: dict[str, Any] = {
        "prompt": str(prompt),
        "negative_prompt": str(negative),
        "steps": fields.get("Steps"),
        "sampler": scheduler,
        "cfg_scale": fields.get("CFG scale"),
        "seed": fields.get("Seed"),
        "width": image.width,
        "height": image.height,
        "model": settings.model,
        "model_hash": settings.model_hash,
        "pipeline": type(pipe).__name__,
        "batch_size": fields.get("Batch size"),
        "batch_pos": fields.get("Batch pos"),
        "infotext": text,
    }
    if "Denoising strength" in fields:
        data["denoising_strength"] = fields["Denoising strength"]
    return ManifestSpec(
        action="edited" if edited else "created",
        source="ai-composite" if params.get("mask_image") is not None else "ai",
        training=settings.training,
        software_agent={"name": settings.model, "version": settings.model_hash or "unknown"},
        text={"parameters": text},
        assertions=[
            Assertion(GENERATION_ASSERTION, {k: v for k, v in data.items() if v is not None})
        ],
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
