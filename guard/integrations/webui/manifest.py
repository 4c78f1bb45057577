"""What the manifest of an image web UI saved says: the model, sampler, schedule and seed from
web UI's processing object `p` (modules/processing.py), the task, its input pictures, and for
Extras the infotext web UI carried over. Pure description: nothing here writes a file."""

from __future__ import annotations

from typing import Any, Literal

from guard.integrations.webui.settings import Settings
from guard.provenance.spec import Assertion, ManifestSpec

HOST = "Stable Diffusion web UI"
Kind = Literal["sample", "grid", "intermediate", "extras", "input"]


def manifest_spec(params: Any, kind: Kind, settings: Settings, host: str = HOST) -> ManifestSpec:
    """The manifest of one saved image, from `p` (model, sampler, schedule type, seed, steps,
    CFG, size, prompts: modules/processing.py's fields) and web UI's exact infotext; no text is
    written (web UI wrote its own)."""
    from guard.webui import generation_record
    from guard.webui.infotext import GENERATION_ASSERTION, Infotext

    pnginfo = params.pnginfo or {}
    text = pnginfo.get("parameters")
    info = Infotext.parse(str(text)) if text else None
    if kind == "extras":
        return _extras_spec(pnginfo, info, settings, host)
    p = params.p
    fields = generation_fields(p, params.image, kind) if p is not None else {}
    if info is None:
        info = Infotext(str(fields.get("prompt") or ""), str(fields.get("negative_prompt") or ""))
    task = _task(p)
    extra: dict[str, Any] = {**fields, "generator": host}
    if kind != "sample":
        extra["saved_as"] = kind
    spec = generation_record.spec(
        info,
        task=task,
        model=str(fields.get("model") or host),
        model_hash=fields.get("model_hash"),
        training=settings.training,
        extra=extra,
    )
    spec.text = {}
    spec.author = settings.author
    spec.action_parameters = {"description": f"{generation_record.TASK_WORDS[task]} in {host}"}
    if settings.source != "auto":
        spec.source = settings.source
    for assertion in spec.assertions:
        if assertion.label == GENERATION_ASSERTION:
            assertion.data = _private(assertion.data, settings)
    return spec


PROMPT_KEYS = ("prompt", "negative_prompt", "infotext", "loras", "extra")


def _private(data: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """The assertion without empty values, and without the prompts when web UI is told not to
    write infotext into its files (opts.enable_pnginfo off)."""
    hidden = () if settings.infotext else PROMPT_KEYS
    return {k: v for k, v in data.items() if v is not None and k not in hidden}


def generation_fields(p: Any, image: Any = None, kind: Kind = "sample") -> dict[str, Any]:
    """What `p` says about this image, keyed as guard's generation assertion keys them
    (guard.webui.infotext.Infotext.to_dict).

    A batch's prompt and seed are its image's: processing.py sets `p.batch_index` before it
    saves each image and keeps the batch's `p.prompts` and `p.seeds`; a grid's are the first
    (`p.all_prompts[0]`, `p.all_seeds[0]`, as its infotext). The gallery's Save button passes
    the generation's JSON instead (ui_common.save_files), whose `batch_index` does not count
    images when there is no grid: there the per-image values are left to the infotext web UI
    writes for that image.
    """
    json_p = hasattr(p, "index_of_first_image")  # Processed.js(), from the Save button
    index = getattr(p, "batch_index", None)
    index = index if isinstance(index, int) and index >= 0 else None

    def pick(batch: str, whole: str) -> Any:
        if json_p:
            return None
        if kind == "grid":
            values = getattr(p, whole, None)
            return values[0] if isinstance(values, list) and values else None
        values = getattr(p, batch, None)
        if isinstance(values, list) and index is not None and index < len(values):
            return values[index]
        return None

    width = getattr(image, "width", None) or getattr(p, "width", None)
    height = getattr(image, "height", None) or getattr(p, "height", None)
    task = _task(p)
    fields = {
        "prompt": pick("prompts", "all_prompts"),
        "negative_prompt": pick("negative_prompts", "all_negative_prompts"),
        "model": getattr(p, "sd_model_name", None),
        "model_hash": getattr(p, "sd_model_hash", None),
        "sampler": getattr(p, "sampler_name", None),
        "schedule_type": getattr(p, "scheduler", None),
        "seed": pick("seeds", "all_seeds"),
        "steps": getattr(p, "steps", None),
        "cfg_scale": getattr(p, "cfg_scale", None),
        "width": width,
        "height": height,
        "denoising_strength": getattr(p, "denoising_strength", None) if task != "txt2img" else None,
        "batch_index": index if kind == "sample" and not json_p else None,
    }
    return {k: v for k, v in fields.items() if v is not None}


def _task(p: Any) -> Literal["txt2img", "img2img", "inpaint"]:
    if p is None or not getattr(p, "init_images", None):
        return "txt2img"
    return "inpaint" if getattr(p, "image_mask", None) is not None else "img2img"


def input_pictures(p: Any) -> list[tuple[Any, str, str]]:
    """img2img's init image (the parent) and inpainting's mask, as manifest ingredients."""
    from PIL import Image

    if p is None:
        return []
    found: list[tuple[Any, str, str]] = []
    init = getattr(p, "init_images", None) or []
    if init and isinstance(init[0], Image.Image):
        found.append((init[0], "parentOf", "init image"))
    mask = getattr(p, "image_mask", None)
    if isinstance(mask, Image.Image):
        found.append((mask, "inputTo", "mask"))
    return found


def _extras_spec(pnginfo: dict[str, Any], info: Any, settings: Settings, host: str) -> ManifestSpec:
    """Extras (postprocessing.py): an upscale / face restoration of an image. Its own
    generation, when the source carried infotext, is kept in the generation assertion."""
    from guard.webui.infotext import GENERATION_ASSERTION

    steps = str(pnginfo.get("postprocessing") or "")
    source = settings.source if settings.source != "auto" else ("ai" if info else "ai-edited")
    assertions = []
    if info is not None:
        data = info.to_dict()
        data.update(task="postprocessing", postprocessing=steps, generator=host)
        assertions.append(Assertion(GENERATION_ASSERTION, _private(data, settings)))
    return ManifestSpec(
        action="edited",
        source=source,
        author=settings.author,
        training=settings.training,
        software_agent={"name": f"{host} Extras", "version": "unknown"},
        action_parameters={"description": f"post-processed in {host}'s Extras tab: {steps}"},
        assertions=assertions,
    )
