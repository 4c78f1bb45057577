"""What the extension does around every image web UI saves: mark it, then sign the file.

web UI's `images.save_image` (modules/images.py) builds one `ImageSaveParams(image, p, filename,
pnginfo)`, runs the `before_image_saved` callbacks with it, writes `params.image` to
`params.filename` with the infotext (`params.pnginfo["parameters"]`: a PNG text chunk; for JPEG,
WebP and AVIF an EXIF UserComment written by piexif), then runs the `image_saved` callbacks with
the same object. So:

1. `watermark_before_save(params, settings)` (before_image_saved): guard's mark goes into the
   pixels, in the image object itself when it can (the gallery then shows, and serves, the
   marked picture), and what it did is kept on `params` for step 3;
2. web UI writes the file with its own infotext; guard does not touch that;
3. `sign_saved_image(params, settings)` (image_saved): the file web UI wrote is signed where it
   lies (guard.publishing.publish with in_place=True): never re-encoded, never marked again, its
   infotext and other metadata byte for byte as web UI wrote them, replaced atomically, the
   watermark ID recorded in the ledger.

Neither ever raises: web UI runs callbacks inside its save (an exception there is only logged by
web UI, modules/script_callbacks.py `report_exception`), and a failed sign must leave web UI's
file as web UI wrote it. Both return an `Outcome` whose `message` the extension prints and shows.

Which images: every sample (txt2img, img2img, inpaint, hires fix, batch), Extras outputs and
images saved with the gallery's Save button. Grids (and X/Y/Z plots) and the intermediate copies
(before hires fix, face restoration, color correction; masks) only with the setting
"Also watermark and sign grids"; img2img's saved init images, which are the user's own inputs,
never.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from guard.integrations.webui.manifest import HOST, Kind, input_pictures, manifest_spec
from guard.integrations.webui.settings import Settings
from guard.provenance.spec import Ingredient

if TYPE_CHECKING:
    from PIL import Image

    from guard.ledger import Ledger

STATE_ATTR = "guard_webui"  # what before-save did, kept on the ImageSaveParams for after-save
State = Literal["signed", "skipped", "failed", "marked", "unmarked"]

# processing.py's `suffix=` of the copies it saves on the way (modules/processing.py)
INTERMEDIATE_SUFFIXES = (
    "-before-highres-fix",
    "-before-face-restoration",
    "-before-color-correction",
    "-mask-composite",
    "-mask",
)
# basenames of grids: processing.py "grid", scripts/xyz_grid.py "xyz_grid",
# scripts/prompt_matrix.py "prompt_matrix" (then "-NNNN" from save_image's numbering)
_GRID_NAME = re.compile(r"^(grid|xyz_grid|prompt_matrix)-\d{4}")
# a file whose mtime is older than the start of its own save by more than this is not the file
# this save wrote (A1111 1.10's "Add number suffix" writes `name-1.png` but reports `name.png`)
MTIME_SLACK_S = 2.0


@dataclass
class Marked:
    """What before-save did to one image; kept on `params` for after-save."""

    kind: Kind
    watermark_id: str | None = None
    skipped: str | None = None  # why guard leaves this image alone
    failed: bool = False  # marking failed (already reported: after-save says nothing more)
    notes: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.time)


@dataclass
class Outcome:
    """One line for the console and the UI, and the facts behind it."""

    state: State
    message: str
    path: Path | None = None
    watermark_id: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.state == "failed"


RECENT: deque[Outcome] = deque(maxlen=50)  # the guard tab lists what happened to recent saves


# ---- which image is this ------------------------------------------------------------------
def kind_of(params: Any) -> Kind:
    """Sample, grid, intermediate copy, Extras output or init image, from what save_image was
    given (ImageSaveParams has no grid flag: the name, folder and `p` tell)."""
    p = params.p
    path = Path(str(params.filename))
    stem = path.stem
    pnginfo = params.pnginfo or {}
    if p is not None and getattr(p, "init_img_hash", None) and stem == p.init_img_hash:
        # processing.py saves img2img's input to outdir_init_images as forced_filename=hash
        return "input"
    if p is None:
        # postprocessing.py (Extras) saves with p=None and pnginfo_section_name="postprocessing"
        return "extras" if "postprocessing" in pnginfo else "sample"
    grids = getattr(p, "outpath_grids", None)
    samples = getattr(p, "outpath_samples", None)
    if grids and grids != samples and _inside(path, Path(str(grids))):
        return "grid"
    if _GRID_NAME.match(stem):
        return "grid"
    # ui_common.save_files (the gallery's Save button) passes the job's JSON as p, with
    # p.batch_index = image_index - 1; the gallery's images before index_of_first_image are grids
    first, index = getattr(p, "index_of_first_image", None), getattr(p, "batch_index", None)
    if isinstance(first, int) and isinstance(index, int) and index + 1 < first:
        return "grid"
    if any(stem.endswith(s) for s in INTERMEDIATE_SUFFIXES):
        return "intermediate"
    return "sample"


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except (ValueError, OSError):
        return False
    return True


def _why_not(kind: Kind, settings: Settings) -> str | None:
    if not settings.enabled:
        return "guard is off (Settings > guard)"
    if kind == "input":
        return "an init image is the user's own input, not a generated image"
    if kind in ("grid", "intermediate") and not settings.sign_grids:
        return (
            f"a {kind} (Settings > guard: 'Also watermark and sign grids and intermediate images')"
        )
    return None


# ---- 1. before web UI writes the file -----------------------------------------------------
def watermark_before_save(
    params: Any,
    settings: Settings,
    *,
    restamp: Callable[[Any], None] | None = None,
) -> Outcome:
    """Put guard's mark into `params.image` before web UI writes it.

    The image object is changed in place when the marked picture has its mode and size (always,
    but for palette images), so the image web UI shows and returns is the one it saved;
    otherwise `params.image` is replaced (save_image writes `params.image`). A picture that
    already carries guard's mark under this key (the gallery's Save button re-saving an output)
    is not marked twice. `restamp(params)` runs after marking: Forge's stealth infotext, which
    Forge writes into the pixels just before these callbacks, is written again over the mark.
    """
    marked = Marked(kind="sample")
    setattr(params, STATE_ATTR, marked)
    try:
        marked.kind = kind_of(params)
        marked.skipped = _why_not(marked.kind, settings)
        if marked.skipped:
            return Outcome("skipped", f"not marked: {marked.skipped}")
        settings.check()
        key = settings.watermark_key()
        image = params.image
        found = _existing_mark(image, key)
        if found is not None:
            marked.notes.append(
                f"already carried guard's watermark {found}: not marked twice, and signed "
                "without claiming it (its ledger record stays the original's)"
            )
            return Outcome("unmarked", marked.notes[-1])
        marked.watermark_id = _mark(params, key, marked.notes)
        if marked.watermark_id is not None and restamp is not None:
            restamp(params)
    except Exception as exc:
        marked.skipped = f"could not be marked ({_words(exc)})"
        marked.failed = True
        _log_traceback(exc)
        name = Path(str(params.filename)).name
        return _remember(Outcome("failed", f"guard: {name} {marked.skipped}; it is saved unsigned"))
    if marked.watermark_id is None:
        return Outcome("unmarked", "; ".join(marked.notes) or "not marked")
    return Outcome("marked", f"watermark {marked.watermark_id}", watermark_id=marked.watermark_id)


def _existing_mark(image: Image.Image, key: bytes | None) -> str | None:
    from guard import watermark as wm

    hit = wm.detect(image, key=key)
    return hit.payload.hex() if hit.found and hit.payload else None


def _mark(params: Any, key: bytes | None, notes: list[str]) -> str | None:
    from guard import watermark as wm
    from guard.errors import TooSmallError

    image = params.image
    payload = wm.new_payload()
    try:
        result = wm.embed(image, payload, key=key)
    except TooSmallError as exc:
        notes.append(f"not watermarked: {exc}")
        return None
    if result.mode == image.mode and result.size == image.size:
        image.paste(result)  # the same object web UI keeps, shows and returns
    else:
        params.image = result
    return payload.hex()


# ---- 3. after web UI wrote the file -------------------------------------------------------
def saved_path(params: Any) -> Path:
    """The file save_image wrote. `image.already_saved_as` is set right after the write; Forge
    sets it to the name actually used (with "-1" when 'Add number suffix' avoided a clash),
    while `params.filename` keeps the name asked for (modules/images.py, save_image)."""
    saved = getattr(params.image, "already_saved_as", None)
    return Path(str(saved or params.filename))


def sign_saved_image(
    params: Any,
    settings: Settings,
    *,
    host: str = HOST,
    ledger: Ledger | None = None,
) -> Outcome:
    """Sign the file web UI just wrote, in place. Never raises; a failure leaves the file as
    web UI wrote it and says why."""
    marked = getattr(params, STATE_ATTR, None)
    path = saved_path(params)
    if not isinstance(marked, Marked):
        return _remember(
            Outcome("skipped", f"guard: {path.name}: not seen before it was saved", path)
        )
    if marked.skipped:
        outcome = Outcome("skipped", f"guard: {path.name}: {marked.skipped}", path)
        return outcome if marked.failed else _remember(outcome)
    try:
        return _remember(_sign(params, path, marked, settings, host, ledger))
    except Exception as exc:
        _log_traceback(exc)
        return _remember(
            Outcome(
                "failed",
                f"guard: {path.name} was saved but not signed: {_words(exc)}",
                path,
                marked.watermark_id,
                list(marked.notes),
            )
        )


def _sign(
    params: Any,
    path: Path,
    marked: Marked,
    settings: Settings,
    host: str,
    ledger: Ledger | None,
) -> Outcome:
    from guard.errors import ImageInputError
    from guard.media import imageio
    from guard.provenance import c2pa_io
    from guard.publishing import publish

    settings.check()
    if not path.is_file():
        raise ImageInputError(f"{path}: web UI reports it saved this file, but it is not there")
    if path.stat().st_mtime < marked.started - MTIME_SLACK_S:
        raise ImageInputError(
            f"{path}: this file is older than this save, so web UI wrote the image under "
            "another name; guard signs only the file it can be sure of"
        )
    key = settings.watermark_key()
    loaded = imageio.load(path)
    notes = list(marked.notes)
    watermark_id = marked.watermark_id
    if watermark_id is not None and _existing_mark(loaded.image, key) != watermark_id:
        notes.append(
            f"the watermark {watermark_id} is not in the file web UI wrote (another "
            "extension changed the image after guard, or the encoder's quality is too low): "
            "signed without claiming it"
        )
        watermark_id = None
    spec = manifest_spec(params, marked.kind, settings, host)
    with contextlib.ExitStack() as stack:
        inputs = input_pictures(params.p) if marked.kind != "extras" else []
        if inputs:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="guard-")))
            for n, (image, relationship, title) in enumerate(inputs):
                file = folder / f"{n}-{title.replace(' ', '-')}.png"
                image.save(file)
                spec.ingredients.append(Ingredient(file, relationship, title))  # type: ignore[arg-type]
        if c2pa_io.has_manifest(loaded.data, loaded.mime):  # another tool signed it first
            spec.ingredients.insert(0, Ingredient(path, "parentOf", path.name))
        result = publish(
            loaded,
            path,
            spec,
            identity=settings.identity(),
            watermark=watermark_id is not None,
            watermark_id=watermark_id,
            watermark_key=key,
            ledger=ledger,
            in_place=True,
        )
    notes += result.notes
    what = f"watermark {watermark_id}" if watermark_id else "no watermark"
    return Outcome(
        "signed",
        f"guard: signed {path.name} ({what})" + (f"; {'; '.join(notes)}" if notes else ""),
        path,
        watermark_id,
        notes,
    )


# ---- reporting -----------------------------------------------------------------------------
def recent_text(limit: int = 20) -> str:
    """The last saves, newest first, one line each (the guard tab shows them)."""
    lines = [o.message for o in list(RECENT)[:limit]]
    return "\n".join(lines) or "No image saved since web UI started."


def _remember(outcome: Outcome) -> Outcome:
    RECENT.appendleft(outcome)
    return outcome


def _words(exc: BaseException) -> str:
    from guard.errors import GuardError

    if isinstance(exc, GuardError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _log_traceback(exc: BaseException) -> None:
    """An error guard did not foresee goes to the console whole, as web UI reports its own."""
    from guard.errors import GuardError

    if not isinstance(exc, GuardError) and os.environ.get("GUARD_WEBUI_QUIET") != "1":
        traceback.print_exception(exc)
