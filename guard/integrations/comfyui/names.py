"""The `filename_prefix` replacements ComfyUI's page makes for its own save nodes only.

Before queueing, ComfyUI's frontend rewrites the `filename_prefix` of SaveImage and its other
save nodes (extensions/core/saveImageExtraOutput, applyTextReplacements): `%date:FORMAT%` becomes
the date, and `%NAME.WIDGET%` the value of that widget on the node whose "Node name for S&R"
property (by default its type), else whose title, is NAME. It does this by node type, so a custom
save node receives the text as typed; `replace` does the same on the server, from the prompt
graph (widget values by input name; `_meta.title`) and the UI workflow (properties, titles).
`%width%`, `%height%` and the rest are folder_paths.get_save_image_path's, and left to it.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Any

_PATTERN = re.compile(r"%([^%]+)%")
# the frontend's formatDate: dd?|MM?|hh?|mm?|ss? padded to their length, yy and yyyy the year
_DATE = re.compile(r"dd?|MM?|hh?|mm?|ss?|yyy?y?")
_PARTS = {
    "d": lambda d: d.day,
    "M": lambda d: d.month,
    "h": lambda d: d.hour,
    "m": lambda d: d.minute,
    "s": lambda d: d.second,
}
SR_PROPERTY = "Node name for S&R"


def replace(
    text: str,
    prompt: Mapping[str, Any] | None,
    workflow: Mapping[str, Any] | None,
    now: dt.datetime | None = None,
) -> str:
    """`text` with `%date:FORMAT%` and `%NAME.WIDGET%` replaced as ComfyUI's page replaces them;
    a reference that names nothing is left as it is."""
    if "%" not in text:
        return text
    when = now or dt.datetime.now()

    def one(match: re.Match[str]) -> str:
        inner = match.group(1)
        split = inner.split(".")
        if len(split) != 2:
            if split[0].startswith("date:"):
                return _format_date(split[0][5:], when)
            return match.group(0)
        value = _widget_value(split[0], split[1], prompt, workflow)
        return match.group(0) if value is None else re.sub(r"[/\\]", "_", value)

    return _PATTERN.sub(one, text)


def _format_date(text: str, when: dt.datetime) -> str:
    def one(match: re.Match[str]) -> str:
        part = match.group(0)
        if part == "yy":
            return str(when.year)[2:]
        if part == "yyyy":
            return str(when.year)
        if part[0] in _PARTS:
            return str(_PARTS[part[0]](when)).rjust(len(part), "0")
        return part

    return _DATE.sub(one, text)


def _widget_value(
    name: str,
    widget: str,
    prompt: Mapping[str, Any] | None,
    workflow: Mapping[str, Any] | None,
) -> str | None:
    """The widget's queued value on the first node named `name` (by S&R name, else by title)."""
    graph = {str(k): v for k, v in (prompt or {}).items() if isinstance(v, Mapping)}
    ui_nodes = {}
    for node in (workflow or {}).get("nodes") or []:
        if isinstance(node, Mapping) and "id" in node:
            ui_nodes[str(node["id"])] = node

    def sr_name(node_id: str) -> Any:
        properties = ui_nodes.get(node_id, {}).get("properties")
        if isinstance(properties, Mapping) and SR_PROPERTY in properties:
            return properties[SR_PROPERTY]
        return graph[node_id].get("class_type")  # the frontend's default: the node's type

    def title(node_id: str) -> Any:
        if "title" in ui_nodes.get(node_id, {}):
            return ui_nodes[node_id]["title"]
        meta = graph[node_id].get("_meta")
        return meta.get("title") if isinstance(meta, Mapping) else None

    ids = sorted(graph, key=lambda k: (0, int(k), k) if k.isdigit() else (1, 0, k))
    found = [k for k in ids if sr_name(k) == name] or [k for k in ids if title(k) == name]
    if not found:
        return None
    inputs = graph[found[0]].get("inputs")
    value = inputs.get(widget) if isinstance(inputs, Mapping) else None
    if value is None or isinstance(value, list | dict):  # absent, or a link: no widget value
        return None
    if isinstance(value, bool):
        return "true" if value else "false"  # as JavaScript's String() writes them
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
