"""The one builder of what guard says about a generated image: the web UI infotext and the
`org.guard.generation` C2PA assertion, and the ManifestSpec that carries them.

`guard generate` and the pipeline hook both call it, so the assertion has the same keys whoever
made the image: the infotext's fields as `Infotext.to_dict` types them (prompt, negative_prompt,
steps, sampler, schedule_type, cfg_scale, seed, width, height, model, model_hash, ...), the exact
`infotext`, and `task` plus whatever the caller knows beyond web UI's fields (`batch_index`,
`pipeline`, `scheduler`, `controlnets`).
"""

from __future__ import annotations

from typing import Any, Literal

from guard.provenance.spec import Assertion, ManifestSpec, Training
from guard.webui.infotext import GENERATION_ASSERTION, Infotext, format_number

Task = Literal["txt2img", "img2img", "inpaint"]

TASK_WORDS: dict[str, str] = {
    "txt2img": "generated from a text prompt",
    "img2img": "generated from a text prompt and a source image",
    "inpaint": "region of the source image regenerated from a text prompt",
}


def infotext(prompt: str, negative_prompt: str, fields: dict[str, Any]) -> Infotext:
    """web UI's parameters text from fields in web UI's order; None values are left out and
    numbers are written as web UI's sliders show them (7.0 -> 7)."""
    params = {
        key: value if isinstance(value, str) else format_number(value)
        for key, value in fields.items()
        if value is not None
    }
    return Infotext(prompt, negative_prompt, params)


def assertion_data(info: Infotext, task: Task, extra: dict[str, Any] | None = None) -> dict:
    """The `org.guard.generation` assertion: typed infotext fields, then task and extras."""
    data = info.to_dict()
    data["task"] = task
    for key, value in (extra or {}).items():
        if value is not None:
            data[key] = value
    return data


def spec(
    info: Infotext,
    *,
    task: Task,
    model: str,
    model_hash: str | None,
    training: Training,
    extra: dict[str, Any] | None = None,
) -> ManifestSpec:
    """The ManifestSpec of a generated image (callers add their input files as ingredients)."""
    return ManifestSpec(
        action="created" if task == "txt2img" else "edited",
        # inpainting keeps part of the original picture: a composite with AI-generated content
        source="ai-composite" if task == "inpaint" else "ai",
        training=training,
        software_agent={"name": model, "version": model_hash or "unknown"},
        action_parameters={"description": TASK_WORDS[task]},
        text={"parameters": info.to_text()},
        assertions=[Assertion(GENERATION_ASSERTION, assertion_data(info, task, extra))],
    )
