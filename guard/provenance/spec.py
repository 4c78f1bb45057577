"""What a caller wants said about an image; the one input every publishing path takes.

sign, generate, protect and the pipeline hook differ only in the ManifestSpec they build.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

Action = Literal["created", "edited", "opened"]
Training = Literal["allowed", "notAllowed", "constrained"]
Relationship = Literal["parentOf", "componentOf", "inputTo"]


@dataclass
class Ingredient:
    """A file this image was made from. Its own manifest (if any) is kept, so history chains."""

    path: Path
    relationship: Relationship = "parentOf"
    title: str | None = None


@dataclass
class Assertion:
    """Extension point: any extra C2PA assertion (generation parameters, protection record, ...)."""

    label: str
    data: dict[str, Any]


@dataclass
class ManifestSpec:
    action: Action = "created"
    # a key of guard.provenance.vocab.SOURCE_TYPES ('ai', 'digital-art', 'photo', ...) or a full IPTC URI
    source: str = "digital-art"
    author: str | None = None
    title: str | None = None
    training: Training = "notAllowed"
    # softwareAgent of the action, e.g. {"name": "stable-diffusion-v1-5", "version": "hash 6ce0161689"}
    software_agent: dict[str, str] | None = None
    # free-form parameters of the action (c2pa.actions.v2 `parameters`)
    action_parameters: dict[str, Any] = field(default_factory=dict)
    ingredients: list[Ingredient] = field(default_factory=list)
    assertions: list[Assertion] = field(default_factory=list)
    # Text written into the file before signing: PNG tEXt/iTXt chunks; for JPEG/WebP the
    # 'parameters' entry goes to EXIF UserComment (web UI's convention).
    text: dict[str, str] = field(default_factory=dict)
