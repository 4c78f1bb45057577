"""Which signals exclude an image: `strict` (default), `permissive`, or a TOML/YAML file.

A policy maps each signal code to an action:

* `exclude`: the image is left out; the decision is the signal's category;
* `tag`: kept, and the reason is still written into the report;
* `ignore`: kept, and the reason is left out of `reasons` (the code stays in `signals`).

When several excluding signals fire, the decision follows the owner's word first:
`opted_out`, then `ai_generated`, then `unverifiable`. Signals that mean "this file could not
be checked at all" (`unreadable`, `too_large`, `scan_error`) always exclude: no policy can
turn an unread file into an allowed one (fail closed).

A policy file names a base policy and overrides signals:

    base = "strict"            # or "permissive"
    [signals]
    c2pa_ai_source = "tag"     # keep AI images, but tag them
    generator_metadata = "tag"
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from guard.errors import GuardError
from guard.scan.row import Decision

Category = Literal["opted_out", "ai_generated", "unverifiable"]
Action = Literal["exclude", "tag", "ignore"]
ACTIONS: tuple[Action, ...] = ("exclude", "tag", "ignore")
PRECEDENCE: tuple[Category, ...] = ("opted_out", "ai_generated", "unverifiable")


@dataclass(frozen=True)
class Signal:
    code: str
    category: Category
    meaning: str  # what it is, for docs and `--summary`
    explicit_not_allowed: bool = False  # an explicit "not allowed": permissive excludes it too
    fixed: bool = False  # the file could not be checked: always excludes


SIGNALS: dict[str, Signal] = {
    s.code: s
    for s in (
        # the owner's word
        Signal(
            "c2pa_training_not_allowed",
            "opted_out",
            "C2PA cawg.training-mining says notAllowed",
            True,
        ),
        Signal("c2pa_training_constrained", "opted_out", "C2PA cawg.training-mining: constrained"),
        Signal(
            "c2pa_legacy_training_not_allowed",
            "opted_out",
            "legacy C2PA c2pa.training-mining says notAllowed",
            True,
        ),
        Signal(
            "c2pa_legacy_training_constrained",
            "opted_out",
            "legacy C2PA c2pa.training-mining: constrained",
        ),
        Signal(
            "xmp_training_not_allowed",
            "opted_out",
            "IPTC PLUS DataMining in XMP prohibits AI/ML training",
            True,
        ),
        Signal("xmp_training_constrained", "opted_out", "IPTC PLUS DataMining: constrained"),
        Signal(
            "xmp_training_unreadable",
            "unverifiable",
            "IPTC PLUS DataMining in XMP holds a value that is no IPTC term or label",
            fixed=True,
        ),
        Signal(
            "ledger_training_not_allowed",
            "opted_out",
            "the ledger record of guard's watermark says notAllowed",
            True,
        ),
        Signal(
            "ledger_training_constrained",
            "opted_out",
            "the ledger record of guard's watermark: constrained",
        ),
        Signal("robots_noai", "opted_out", "X-Robots-Tag noai/noimageai when downloaded", True),
        Signal("tdm_reserved", "opted_out", "TDMRep tdm-reservation: 1 when downloaded", True),
        Signal(
            "aipref_train_ai_n", "opted_out", "IETF AI preferences Content-Usage train-ai=n", True
        ),
        Signal("content_signal_ai_train_no", "opted_out", "Content-Signal: ai-train=no", True),
        Signal(
            "usage_header_unreadable",
            "unverifiable",
            "a recorded TDMRep, Content-Usage or Content-Signal header that cannot be read",
            fixed=True,
        ),
        # evidence of generation
        Signal("c2pa_ai_source", "ai_generated", "C2PA digital source type is AI"),
        Signal("xmp_ai_source", "ai_generated", "IPTC DigitalSourceType in XMP is AI"),
        Signal("ledger_ai_source", "ai_generated", "the ledger record of guard's watermark: AI"),
        Signal("third_party_ai_mark", "ai_generated", "a generator's invisible watermark (SDXL…)"),
        Signal("generator_metadata", "ai_generated", "generator metadata (web UI, ComfyUI, …)"),
        # claims that cannot be checked
        Signal("c2pa_invalid", "unverifiable", "Content Credentials do not match the file"),
        Signal(
            "c2pa_remote_unread",
            "unverifiable",
            "the only Content Credentials are a remote manifest store that was not read",
            fixed=True,
        ),
        Signal(
            "watermark_partial_match",
            "unverifiable",
            "a guard record's picture is only part of the image (a collage, an edit)",
        ),
        Signal(
            "watermark_unresolved",
            "unverifiable",
            "guard's watermark with no record to say what it claims",
        ),
        Signal(
            "watermark_content_mismatch",
            "unverifiable",
            "guard's watermark belongs to a different picture (copied mark)",
        ),
        Signal("undecodable", "unverifiable", "the pixels could not be decoded", fixed=True),
        Signal("unreadable", "unverifiable", "not a readable image file", fixed=True),
        Signal("too_large", "unverifiable", "file larger than the scan's limit", fixed=True),
        Signal("scan_error", "unverifiable", "an unexpected error while scanning", fixed=True),
    )
}


@dataclass(frozen=True)
class Found:
    """A signal found in one image, with its reason in words."""

    code: str
    words: str


@dataclass(frozen=True)
class Policy:
    name: str
    actions: Mapping[str, Action] = field(default_factory=dict)

    def action(self, code: str) -> Action:
        if SIGNALS[code].fixed:
            return "exclude"
        return self.actions.get(code, "exclude")

    def decide(self, found: Iterable[Found]) -> tuple[Decision, list[str], list[str]]:
        """(decision, reasons in words, signal codes). Deciding signals come first."""
        found = list(dict.fromkeys(found))
        excluding = [f for f in found if self.action(f.code) == "exclude"]
        decision: Decision = "allowed"
        for category in PRECEDENCE:
            if any(SIGNALS[f.code].category == category for f in excluding):
                decision = category
                break
        ordered = sorted(
            found,
            key=lambda f: (
                0 if f in excluding and SIGNALS[f.code].category == decision else 1,
                0 if f in excluding else 1,
            ),
        )
        reasons = [f.words for f in ordered if self.action(f.code) != "ignore"]
        return decision, reasons, [f.code for f in ordered]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "signals": {c: self.action(c) for c in SIGNALS}}


STRICT = Policy("strict")
PERMISSIVE = Policy(
    "permissive",
    {code: "tag" for code, s in SIGNALS.items() if not (s.explicit_not_allowed or s.fixed)},
)
BUILT_IN = {"strict": STRICT, "permissive": PERMISSIVE}


class PolicyError(GuardError):
    """A policy file could not be read or names an unknown signal or action."""


def load(spec: str | os.PathLike[str] | None) -> Policy:
    """'strict', 'permissive', or the path of a .toml/.yaml/.yml policy file."""
    if spec is None:
        return STRICT
    if str(spec) in BUILT_IN:
        return BUILT_IN[str(spec)]
    path = Path(spec)
    if not path.is_file():
        raise PolicyError(
            f"{spec}: not a policy; use strict, permissive or a .toml/.yaml policy file"
        )
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"{path}: cannot be read ({exc})") from exc
    return from_mapping(_parse(path, text), name=path.name)


def _parse(path: Path, text: str) -> Any:
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            if sys.version_info >= (3, 11):
                import tomllib  # novm
            else:  # Python 3.10 (web UI's): the same parser, as a package
                import tomli as tomllib

            return tomllib.loads(text)
        if suffix in (".yaml", ".yml"):
            import yaml

            return yaml.safe_load(text)
    except Exception as exc:  # tomllib and yaml raise their own error families
        raise PolicyError(f"{path}: not valid {suffix[1:].upper()} ({exc})") from exc
    raise PolicyError(f"{path}: a policy file ends in .toml, .yaml or .yml")


def from_mapping(data: Any, name: str = "custom") -> Policy:
    if not isinstance(data, Mapping):
        raise PolicyError(f"{name}: a policy is a table with 'base' and 'signals'")
    unknown_keys = set(data) - {"base", "signals"}
    if unknown_keys:
        raise PolicyError(f"{name}: unknown keys {sorted(unknown_keys)}; use base and signals")
    base_name = data.get("base", "strict")
    if base_name not in BUILT_IN:
        raise PolicyError(f"{name}: base must be strict or permissive, not {base_name!r}")
    actions: dict[str, Action] = dict(BUILT_IN[base_name].actions)
    signals = data.get("signals") or {}
    if not isinstance(signals, Mapping):
        raise PolicyError(f"{name}: 'signals' must be a table of code = action")
    for code, action in signals.items():
        if code not in SIGNALS:
            raise PolicyError(
                f"{name}: unknown signal {code!r}; known signals: {', '.join(SIGNALS)}"
            )
        if action not in ACTIONS:
            raise PolicyError(f"{name}: {code} = {action!r}; use exclude, tag or ignore")
        if SIGNALS[code].fixed and action != "exclude":
            raise PolicyError(
                f"{name}: {code} always excludes: a file that could not be checked is never allowed"
            )
        actions[code] = action
    return Policy(name, actions)
