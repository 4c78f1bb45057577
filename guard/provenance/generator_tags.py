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

`find` reads text already extracted by `guard.media.imageio` (PNG text chunks, and web UI's EXIF
UserComment surfaced as `parameters`) plus the EXIF `Software` tag; it opens no file itself.
`comfyui_parameters` reads what ComfyUI's `prompt` graph says (checkpoint, seed, sampler, prompts),
and `read_parameters` is `guard info`'s reading of a file: web UI's infotext, else that graph.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from guard.webui.infotext import Infotext, format_number

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
    return _comfy_graph(text) is not None


def _comfy_graph(text: str) -> dict[str, Any] | None:
    """ComfyUI's API graph (node id -> {class_type, inputs}), or None when `text` is not one."""
    graph = _json_object(text)
    if not graph:
        return None
    if any(isinstance(node, dict) and "class_type" in node for node in graph.values()):
        return graph
    return None


def _comfy_workflow(text: str) -> bool:
    graph = _json_object(text)
    if not graph:
        return False
    return isinstance(graph.get("nodes"), list)


def _novelai_comment(text: str) -> bool:
    data = _json_object(text)
    if not data:
        return False
    return "steps" in data and ("sampler" in data or "uc" in data)


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


# ---- ComfyUI: what its `prompt` graph says about the image -------------------------------------
_SAMPLER_NODES = ("KSampler", "KSamplerAdvanced")
_MAX_HOPS = 64  # links followed from one input: a longer chain, like a cycle, reads as unknown


@dataclass(frozen=True)
class ComfyUIParameters:
    """The generation parameters of a ComfyUI graph, in ComfyUI's own names (sampler `euler`,
    scheduler `normal`: not web UI's). None where the graph does not say: the chunk is untrusted
    input, so a partial graph gives a partial answer rather than an error."""

    prompt: str | None = None
    negative_prompt: str | None = None
    checkpoint: str | None = None
    seed: int | None = None
    steps: int | None = None
    sampler: str | None = None
    scheduler: str | None = None
    cfg_scale: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"generator": "ComfyUI", **asdict(self)}

    def to_text(self) -> str:
        """One `Label: value` line per field the graph gives (not web UI's infotext: pasted
        into web UI, ComfyUI's sampler names would not mean the same)."""
        cfg = None if self.cfg_scale is None else format_number(self.cfg_scale)
        fields = [
            ("Prompt", self.prompt),
            ("Negative prompt", self.negative_prompt),
            ("Checkpoint", self.checkpoint),
            ("Seed", self.seed),
            ("Steps", self.steps),
            ("Sampler", self.sampler),
            ("Scheduler", self.scheduler),
            ("CFG", cfg),
        ]
        lines = [f"{label}: {value}" for label, value in fields if value is not None]
        return "\n".join(lines) or "ComfyUI graph: no KSampler or checkpoint that guard can read"


def comfyui_parameters(text: Mapping[str, str]) -> ComfyUIParameters | None:
    """What ComfyUI's `prompt` text chunk says (checkpoint, seed, steps, sampler, scheduler, CFG,
    prompts), None when the image has no such graph.

    The prompts are found as ComfyUI wires them: KSampler's `positive`/`negative` inputs are links
    ([node id, output index]) to CLIPTextEncode nodes, maybe through nodes that pass conditioning
    on; the checkpoint is at the end of the `model` links. With several samplers (a hires pass),
    the first by node id is read.
    """
    graph = _comfy_graph(text.get("prompt", ""))
    if graph is None:
        return None
    nodes = {
        key: node["inputs"]
        for key, node in graph.items()
        if isinstance(node, dict) and isinstance(node.get("inputs"), dict)
    }
    samplers = sorted(
        (k for k, node in graph.items() if k in nodes and node.get("class_type") in _SAMPLER_NODES),
        key=lambda k: (0, len(k), k) if k.isdigit() else (1, 0, k),
    )
    checkpoints = {n["ckpt_name"] for n in nodes.values() if isinstance(n.get("ckpt_name"), str)}
    only_checkpoint = next(iter(checkpoints)) if len(checkpoints) == 1 else None
    if not samplers:
        return ComfyUIParameters(checkpoint=only_checkpoint)
    inputs = nodes[samplers[0]]
    seed = _integer(inputs.get("seed"))
    return ComfyUIParameters(
        prompt=_follow(nodes, inputs.get("positive"), "text", via="conditioning"),
        negative_prompt=_follow(nodes, inputs.get("negative"), "text", via="conditioning"),
        checkpoint=_follow(nodes, inputs.get("model"), "ckpt_name", via="model") or only_checkpoint,
        seed=seed if seed is not None else _integer(inputs.get("noise_seed")),  # KSamplerAdvanced
        steps=_integer(inputs.get("steps")),
        sampler=_string(inputs.get("sampler_name")),
        scheduler=_string(inputs.get("scheduler")),
        cfg_scale=_number(inputs.get("cfg")),
    )


def _follow(nodes: dict[str, dict[str, Any]], link: Any, key: str, *, via: str) -> str | None:
    """The string input `key` of the node `link` points to, or of the first node along the
    `via` links from there; each node visited once, at most _MAX_HOPS, so cycles end."""
    seen: set[str] = set()
    target = _link(link)
    while target is not None and target not in seen and len(seen) < _MAX_HOPS:
        seen.add(target)
        inputs = nodes.get(target)
        if inputs is None:  # a link to a node that is not in the graph
            return None
        if isinstance(inputs.get(key), str):
            return inputs[key]
        target = _link(inputs.get(via))
    return None


def _link(value: Any) -> str | None:
    """The node id a link input ([node id, output index]) points to; None for any other value."""
    if isinstance(value, list) and len(value) == 2 and isinstance(value[1], int):
        node = value[0]
        if isinstance(node, str) or (isinstance(node, int) and not isinstance(node, bool)):
            return str(node)
    return None


def _integer(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer of hundreds of digits
        return None
    return number if math.isfinite(number) else None


def _string(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def read_parameters(
    path: str | os.PathLike[str],
) -> tuple[Infotext | ComfyUIParameters | None, str | None]:
    """`guard info`'s reading of an image: web UI's infotext or guard's C2PA generation assertion
    (guard.webui.infotext.read_file), else ComfyUI's `prompt` graph; and where it was found."""
    from guard.media import imageio
    from guard.webui.infotext import read_file

    loaded = imageio.load(path)
    info, where = read_file(loaded)
    if info is not None:
        return info, where
    comfy = comfyui_parameters(loaded.text)
    return (comfy, "ComfyUI prompt graph") if comfy is not None else (None, None)
