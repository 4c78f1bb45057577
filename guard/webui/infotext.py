"""Stable Diffusion web UI's `parameters` text ("infotext"): write it and read it back exactly.

Civitai, web UI's PNG Info tab and many other tools read this text, so guard writes the same format
and reads both its own and web UI's. The format:

    prompt (may span lines)
    Negative prompt: negative (may span lines)
    Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x512, Model hash: 6ce0161689, ...

A value containing ',', ':' or a newline is written as a JSON string; everything else as is.
The last line counts as the parameter line only when it holds at least three `key: value` pairs,
exactly as web UI decides it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from guard.media.imageio import LoadedImage

# Key: a word character then word characters, spaces, '-' or '/'; value: a JSON string or up to ','.
_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
_SIZE = re.compile(r"^(\d+)x(\d+)$")
_LORA_TAG = re.compile(r"<lora:([^:>]+)(?::([^:>]*))?(?::[^>]*)?>")
NEGATIVE_PREFIX = "Negative prompt:"

# web UI key -> (structured key, type) for the fields guard knows; others stay under 'extra'.
_FIELDS: dict[str, tuple[str, type]] = {
    "Steps": ("steps", int),
    "Sampler": ("sampler", str),
    "Schedule type": ("schedule_type", str),
    "CFG scale": ("cfg_scale", float),
    "Seed": ("seed", int),
    "Size": ("size", str),
    "Model hash": ("model_hash", str),
    "Model": ("model", str),
    "VAE hash": ("vae_hash", str),
    "VAE": ("vae", str),
    "Denoising strength": ("denoising_strength", float),
    "Mask blur": ("mask_blur", int),
    "Clip skip": ("clip_skip", int),
    "RNG": ("rng", str),
    "Refiner": ("refiner", str),
    "Refiner switch at": ("refiner_switch_at", float),
    "Hires upscale": ("hires_upscale", float),
    "Hires resize": ("hires_resize", str),  # "WxH"; web UI's reader splits it into -1 and -2
    "Hires steps": ("hires_steps", int),
    "Hires upscaler": ("hires_upscaler", str),
    "Lora hashes": ("lora_hashes", dict),
    "TI hashes": ("ti_hashes", dict),
    "Version": ("version", str),
}


def quote(value: str) -> str:
    """web UI's rule: JSON-quote a value only when it would otherwise break the line."""
    if any(c in value for c in ",:\n"):
        return json.dumps(value, ensure_ascii=False)
    return value


def unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def format_number(x: float | int) -> str:
    """7.0 -> '7', 0.60 -> '0.6': the way web UI's sliders show numbers."""
    return f"{x:g}" if isinstance(x, float) else str(x)


def parse_hash_list(value: str) -> dict[str, str]:
    """'EasyNegative: c74b4e810b03, b: 0123' -> {'EasyNegative': 'c74b4e810b03', 'b': '0123'}."""
    out: dict[str, str] = {}
    for item in value.split(","):
        name, sep, digest = item.rpartition(":")
        if sep and name.strip():
            out[name.strip()] = digest.strip()
    return out


def format_hash_list(hashes: dict[str, str]) -> str:
    return ", ".join(f"{name}: {digest}" for name, digest in hashes.items())


def lora_tags(prompt: str) -> list[tuple[str, float]]:
    """`<lora:name:0.8>` tags in a prompt (web UI's way to apply a LoRA); weight 1 if omitted."""
    out = []
    for name, weight in _LORA_TAG.findall(prompt):
        try:
            out.append((name, float(weight) if weight else 1.0))
        except ValueError:
            out.append((name, 1.0))
    return out


def strip_lora_tags(prompt: str) -> str:
    """The prompt as the text encoder should see it: web UI removes the tags before encoding."""
    text = re.sub(r"[ \t]*" + _LORA_TAG.pattern, "", prompt)
    return re.sub(r"[ \t]{2,}", " ", text).strip(" ,")


@dataclass
class Infotext:
    prompt: str = ""
    negative_prompt: str = ""
    # web UI keys -> unquoted values, in the order they appear (order is part of the exact format)
    params: dict[str, str] = field(default_factory=dict)

    # ---- writing -------------------------------------------------------------------------------
    def to_text(self) -> str:
        line = ", ".join(f"{k}: {quote(str(v))}" for k, v in self.params.items() if v is not None)
        negative = f"\n{NEGATIVE_PREFIX} {self.negative_prompt}" if self.negative_prompt else ""
        return f"{self.prompt}{negative}\n{line}".strip()

    __str__ = to_text

    # ---- reading -------------------------------------------------------------------------------
    @classmethod
    def parse(cls, text: str) -> Infotext:
        *lines, last = text.strip().split("\n")
        if len(_PARAM.findall(last)) < 3:
            lines.append(last)
            last = ""
        prompt: list[str] = []
        negative: list[str] = []
        in_negative = False
        for raw in lines:
            line = raw.strip()
            if line.startswith(NEGATIVE_PREFIX):
                in_negative = True
                line = line[len(NEGATIVE_PREFIX) :].strip()
            (negative if in_negative else prompt).append(line)
        params = {k: unquote(v.strip()) for k, v in _PARAM.findall(last)}
        return cls("\n".join(prompt), "\n".join(negative), params)

    # ---- typed access ----------------------------------------------------------------------------
    def get(self, key: str) -> Any:
        """A web UI field converted to its type (int, float, dict of hashes), None when absent."""
        raw = self.params.get(key)
        if raw is None:
            return None
        kind = _FIELDS.get(key, ("", str))[1]
        try:
            if kind is dict:
                return parse_hash_list(raw)
            return kind(raw)
        except ValueError:
            return raw

    @property
    def size(self) -> tuple[int, int] | None:
        m = _SIZE.match(self.params.get("Size", ""))
        return (int(m.group(1)), int(m.group(2))) if m else None

    @property
    def loras(self) -> list[tuple[str, float]]:
        return lora_tags(self.prompt)

    def to_dict(self) -> dict[str, Any]:
        """Structured form (generation assertion, `guard info --json`): typed, snake_case."""
        out: dict[str, Any] = {"prompt": self.prompt, "negative_prompt": self.negative_prompt}
        extra: dict[str, str] = {}
        for key in self.params:
            if key in _FIELDS:
                name = _FIELDS[key][0]
                if name == "size" and self.size:
                    out["width"], out["height"] = self.size
                else:
                    out[name] = self.get(key)
            else:
                extra[key] = self.params[key]
        if self.loras:
            out["loras"] = [{"name": n, "weight": w} for n, w in self.loras]
        if extra:
            out["extra"] = extra
        out["infotext"] = self.to_text()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Infotext:
        """Inverse of to_dict; the kept infotext wins: it keeps web UI's exact spelling."""
        if isinstance(data.get("infotext"), str):
            return cls.parse(data["infotext"])
        params: dict[str, str] = {}
        for key, (name, _) in _FIELDS.items():
            if name == "size":
                if "width" in data and "height" in data:
                    params[key] = f"{data['width']}x{data['height']}"
                continue
            value = data.get(name)
            if value is None:
                continue
            if isinstance(value, dict):
                params[key] = format_hash_list(value)
            else:
                params[key] = format_number(value)
        params.update(data.get("extra", {}))
        return cls(data.get("prompt", ""), data.get("negative_prompt", ""), params)


# ---- reading from image files -------------------------------------------------------------------
GENERATION_ASSERTION = "org.guard.generation"


def read_file(path: str | Path | LoadedImage) -> tuple[Infotext | None, str | None]:
    """The generation parameters stored in an image file, and where they were found. A file
    already loaded is not read again (guard info then looks for other tools' text in it).

    Order: the PNG 'parameters' chunk or EXIF UserComment (web UI and guard both write these), then
    guard's C2PA generation assertion (which survives tools that drop text chunks but keep C2PA).
    """
    from guard.media import imageio

    loaded = path if isinstance(path, imageio.LoadedImage) else imageio.load(path)
    text = loaded.text.get("parameters")
    if text and text.strip():
        where = "PNG text chunk" if loaded.format == "PNG" else "EXIF UserComment"
        return Infotext.parse(text), where
    from guard.provenance import c2pa_io

    report = c2pa_io.read(loaded.data, loaded.mime, trust_pem=None)
    data = report.assertions.get(GENERATION_ASSERTION)
    if isinstance(data, dict):
        return Infotext.from_dict(data), "C2PA assertion " + GENERATION_ASSERTION
    return None, None
