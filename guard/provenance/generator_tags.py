"""Generator metadata: the text that image generators write into their outputs.

These tags are not signed and are easily stripped, so their absence proves nothing; where they
are present, they say plainly that a diffusion tool made (or last saved) the picture. Each entry
below is checked against the tool's own format, not just the key name, so a photo that happens
to carry a `prompt` or `Software` text is not mistaken for generated:

| tool                                   | where                       | checked                          |
|----------------------------------------|-----------------------------|----------------------------------|
| Stable Diffusion web UI (A1111, Forge, | PNG `parameters`; JPEG/WebP | a web UI parameter line with     |
| SD.Next, Civitai, guard generate)      | EXIF UserComment            | `Steps:` (guard.webui.infotext parses) |
| Fooocus                                | PNG `parameters` (JSON) +   | `fooocus_scheme`, or a Fooocus   |
|                                        | `fooocus_scheme`            | `Version`                        |
| SwarmUI                                | PNG `parameters` (JSON)     | a `sui_image_params` object      |
| ComfyUI                                | PNG `prompt` / `workflow`   | API graph with `class_type`      |
|                                        |                             | nodes / UI graph with `nodes`    |
| NovelAI                                | PNG `Software`, `Comment`   | `Software: NovelAI`, or a        |
|                                        |                             | `Comment` JSON with sampler+steps|
| InvokeAI                               | PNG `invokeai_metadata`,    | the key (JSON object)            |
|                                        | `invokeai_graph`,           |                                  |
|                                        | `sd-metadata`, `Dream`      |                                  |
| Easy Diffusion                         | PNG `use_stable_diffusion_model` | the key                     |

This module reads text already extracted by `guard.media.imageio` (PNG text chunks, and web UI's EXIF
UserComment surfaced as `parameters`) plus the EXIF `Software` tag; it opens no file itself.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from guard.webui.infotext import Infotext

MAX_TEXT = 1 << 20  # longer values are not parsed (a hostile chunk must not cost seconds)


@dataclass(frozen=True)
class GeneratorTag:
    """One piece of generator metadata: which tool, and the text key where it was found."""

    generator: str
    key: str

    def to_dict(self) -> dict[str, str]:
        return {"generator": self.generator, "key": self.key}


def _json_object(text: str | None) -> dict[str, Any] | None:
    if not text or len(text) > MAX_TEXT or text.lstrip()[:1] != "{":
        return None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _webui(text: str) -> bool:
    if len(text) > MAX_TEXT:
        return False
    params = Infotext.parse(text).params
    return "Steps" in params and ("Sampler" in params or "Seed" in params)


def _comfy_prompt(text: str) -> bool:
    graph = _json_object(text)
    return bool(graph) and any(
        isinstance(node, dict) and "class_type" in node for node in graph.values()
    )


def _comfy_workflow(text: str) -> bool:
    graph = _json_object(text)
    return bool(graph) and isinstance(graph.get("nodes"), list)


def _novelai_comment(text: str) -> bool:
    data = _json_object(text)
    return bool(data) and "steps" in data and ("sampler" in data or "uc" in data)


def find(text: Mapping[str, str], software: str | None = None) -> list[GeneratorTag]:
    """Every generator tag in `text` (image text entries) and the EXIF `Software` value."""
    found: list[GeneratorTag] = []
    params = text.get("parameters")
    if params:
        as_json = _json_object(params)
        if as_json is not None:
            if "sui_image_params" in as_json:
                found.append(GeneratorTag("SwarmUI", "parameters"))
            elif "fooocus_scheme" in text or str(as_json.get("Version", "")).startswith("Fooocus"):
                found.append(GeneratorTag("Fooocus", "parameters"))
        elif _webui(params):
            found.append(GeneratorTag("Stable Diffusion web UI", "parameters"))
    if "fooocus_scheme" in text and not any(t.generator == "Fooocus" for t in found):
        found.append(GeneratorTag("Fooocus", "fooocus_scheme"))
    if _comfy_prompt(text.get("prompt", "")):
        found.append(GeneratorTag("ComfyUI", "prompt"))
    if _comfy_workflow(text.get("workflow", "")):
        found.append(GeneratorTag("ComfyUI", "workflow"))
    if (text.get("Software") or "").strip() == "NovelAI":
        found.append(GeneratorTag("NovelAI", "Software"))
    elif _novelai_comment(text.get("Comment", "")):
        found.append(GeneratorTag("NovelAI", "Comment"))
    for key in ("invokeai_metadata", "invokeai_graph", "sd-metadata", "Dream"):
        if text.get(key):
            found.append(GeneratorTag("InvokeAI", key))
            break
    if text.get("use_stable_diffusion_model"):
        found.append(GeneratorTag("Easy Diffusion", "use_stable_diffusion_model"))
    if (software or "").strip() == "NovelAI" and not any(t.generator == "NovelAI" for t in found):
        found.append(GeneratorTag("NovelAI", "EXIF Software"))
    return found


def software_of(exif: bytes | None) -> str | None:
    """The EXIF `Software` (0x0131) value of raw EXIF bytes, if any."""
    if not exif:
        return None
    from PIL import Image

    try:
        tags = Image.Exif()
        tags.load(exif)
        value = tags.get(0x0131)
    except (OSError, ValueError, SyntaxError, KeyError, TypeError):
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    return value.strip("\x00 ") if isinstance(value, str) else None
