"""The work behind the extension's "guard" tab: Verify and Protect.

Verify shows the card `guard serve` shows: guard.verdict.verify_bytes (the `guard verify`
call), then guard.server.cards.card builds the card from the verdict, and `card_html` writes it
as HTML for a gradio HTML component (the web page draws the same card with its own script).
Protect runs guard.protection's protect_file (the `guard protect` call) on the dropped artwork
and returns the before and after pictures for the comparison.

The tab's gradio layout lives in the extension (scripts/guard.py, `build_tab`), which needs
web UI's gradio; everything here runs without it.
"""

from __future__ import annotations

import html
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from guard.integrations.webui.settings import Settings

if TYPE_CHECKING:
    from collections.abc import Callable

    from PIL import Image

    from guard.ledger import Ledger
    from guard.protection.models import ProtectionModel
    from guard.protection.workflow import ProtectedFile

STRENGTHS = ("low", "medium", "high")  # guard.protection.PRESETS, lightest first


# ---- Verify --------------------------------------------------------------------------------
def upload_path(value: Any) -> str | None:
    """The path of a gradio File upload: a str (gradio 4, type="filepath"), a tempfile-like
    object with `.name` (gradio 3's type="file"), or a dict with "path"/"name" (file data).
    The tab takes files, not gr.Image: gr.Image decodes an upload and saves it again as a new
    PNG, which drops the file's Content Credentials before anyone could verify them."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return upload_path(value[0]) if value else None
    if isinstance(value, (str, os.PathLike)):
        return os.fspath(value)
    if isinstance(value, dict):
        found = value.get("path") or value.get("name")
        return str(found) if found else None
    name = getattr(value, "name", None)
    return str(name) if name else None


def verify_card(
    path: str | os.PathLike[str], settings: Settings, *, ledger: Ledger | None = None
) -> dict[str, Any]:
    """The verify card of one file: `guard verify --json`'s object plus its `card`, exactly as
    `guard serve` answers it (guard.server.cards.card)."""
    from guard.ledger import Ledger
    from guard.media import imageio
    from guard.server.cards import card
    from guard.verdict import verify_bytes

    file = Path(path)
    data = imageio.read_file(file)
    key = settings.watermark_key()
    own = ledger is None
    db = ledger if ledger is not None else Ledger()
    try:
        verdict = verify_bytes(
            data,
            name=file.name,
            trust_files=settings.trust_files(),
            watermark=True,
            watermark_key=key,
            ledger=db,
        )
        return card(verdict, data, db)
    finally:
        if own:
            db.close()


def verify_html(path: str | os.PathLike[str] | None, settings: Settings) -> str:
    """The tab's Verify output: the card as HTML, or the reason there is none."""
    if not path:
        return _box("Drop an image to verify it.")
    try:
        return card_html(verify_card(path, settings))
    except Exception as exc:
        from guard.errors import GuardError

        words = str(exc) if isinstance(exc, GuardError) else f"{type(exc).__name__}: {exc}"
        return _box(f"Could not verify {Path(path).name}: {words}", "guard-error")


def card_html(answer: dict[str, Any]) -> str:
    """A verify card (guard.server.cards) as HTML: the headline and why, who signed, whether it
    is AI-generated, the training permission, the watermark, the ledger record, the history."""
    c = answer["card"]
    e = html.escape
    rows: list[tuple[str, str]] = []
    signer = c.get("signer")
    if signer:
        rows.append(("Signed by", f"{signer['name']} ({signer['from']})"))
    rows.append(("AI-generated", f"{c['ai']['answer']}: {c['ai']['words']}"))
    rows.append(("Training", c["training"]["words"]))
    if c.get("watermark"):
        rows.append(("Watermark", c["watermark"]["words"]))
    if c.get("ledger"):
        rows.append(("Ledger", c["ledger"]["words"]))
    for mark in c.get("marks") or []:
        rows.append(("Other mark", mark))
    for problem in c.get("disagreements") or []:
        rows.append(("Disagreement", problem))
    table = "".join(f"<tr><th>{e(k)}</th><td>{e(str(v))}</td></tr>" for k, v in rows)
    steps = []
    for step in c.get("timeline") or []:
        thumb = (
            f'<img src="{e(step["thumbnail"])}" alt="">'
            if step.get("thumbnail")
            else "<span></span>"
        )
        actions = ", ".join(step.get("actions") or [])
        who = step.get("signer") or "unsigned"
        steps.append(
            f'<li class="{"guard-current" if step.get("current") else ""}">{thumb}'
            f"<b>{e(str(step.get('title') or ''))}</b> {e(actions)} <i>{e(str(who))}</i></li>"
        )
    lines = c.get("summary") or []
    summary = "\n".join(lines) if isinstance(lines, list) else str(lines)
    timeline = f'<ol class="guard-timeline">{"".join(steps)}</ol>' if steps else ""
    return (
        f'<div class="guard-card guard-{e(c["state"])}">'
        f"<h3>{e(c['headline'])}</h3><p>{e(c['reason'])}</p>"
        f'<table class="guard-facts">{table}</table>{timeline}'
        f'<details class="guard-summary"><summary>guard verify</summary><pre>{e(summary)}</pre>'
        "</details></div>"
    )


def _box(text: str, cls: str = "guard-note") -> str:
    return f'<div class="guard-card {cls}"><p>{html.escape(text)}</p></div>'


# ---- Protect -------------------------------------------------------------------------------
@dataclass
class ProtectResult:
    file: ProtectedFile
    before: Image.Image
    after: Image.Image
    message: str


_models: dict[tuple[str, str], ProtectionModel] = {}  # one at a time, beside web UI's own


def protect_image(
    src: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    settings: Settings,
    *,
    strength: str = "medium",
    mode: str = "textural",
    model: str | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    ledger: Ledger | None = None,
) -> ProtectResult:
    """Protect one artwork into `out_dir` (`<name>.protected.png`, a new name if taken),
    watermarked and signed "do not train" with the extension's identity and key."""
    from guard.media import imageio
    from guard.media.atomic_write import make_folder
    from guard.protection import MODES
    from guard.protection.workflow import output_for, protect_file

    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    if strength not in STRENGTHS:
        raise ValueError(f"strength must be one of {', '.join(STRENGTHS)}, not {strength!r}")
    folder = make_folder(out_dir)
    dst = _free_name(output_for(src, folder))
    result = protect_file(
        src,
        dst,
        strength=strength,
        mode=mode,
        model=_model(model or None, mode),
        identity=settings.identity,  # called only once the protection succeeded
        watermark_key=settings.watermark_key(),
        ledger=ledger,
        on_progress=on_progress,
    )
    before = imageio.load(src).image
    after = imageio.load(result.path).image
    message = f"Protected ({strength}, {mode}): {result.path}" + "".join(
        f"\n{n}" for n in result.notes
    )
    return ProtectResult(result, before, after, message)


def _free_name(path: Path) -> Path:
    n, candidate = 1, path
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
    return candidate


def _model(model: str | None, mode: str) -> ProtectionModel:
    from guard.protection import load_model

    key = (model or "", mode)
    if key not in _models:
        _models.clear()
        _models[key] = load_model(model, mode=mode)  # type: ignore[arg-type]
    return _models[key]
