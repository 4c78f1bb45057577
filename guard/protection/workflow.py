"""An artist's whole job, from an artwork file to a signed "do not train" PNG: `protect_file`,
the sibling of `guard.sign`, and `protect_files` for batches that resume.

Protect first, then publish: publish's watermark goes on top of the perturbation (both survive;
measured in docs/protect.md) and the signature covers the final pixels. No torch at import.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from guard.errors import GuardError, ImageInputError, OutputExistsError
from guard.media import imageio
from guard.media.atomic_write import make_folder
from guard.media.formats import EXTENSIONS
from guard.protection.params import ASSERTION_LABEL, DEFAULT_STRENGTH, Mode, Protection, preset
from guard.publishing import Published

if TYPE_CHECKING:
    import torch

    from guard.identity import Identity
    from guard.ledger import Ledger
    from guard.protection.models import ProtectionModel

SUFFIX = ".protected.png"
LOSSY = frozenset({".jpg", ".jpeg", ".webp", ".avif"})


@dataclass
class ProtectedFile(Published):
    """A published protected artwork: what `Published` says, plus the protection record."""

    source: Path | None = None
    protection: Protection | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "input": str(self.source) if self.source else None,
            "output": str(self.path),
            "skipped": None,
            "seconds": round(self.seconds, 2),
            "protection": self.protection.to_assertion() if self.protection else None,
            "watermark_id": self.watermark_id,
            "manifest": self.manifest_label,
            "sha256": self.sha256,
            "notes": self.notes,
        }


@dataclass
class Skipped:
    """A batch output that already existed (an interrupted batch resumes past it)."""

    source: Path
    path: Path
    reason: str = "exists"
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"input": str(self.source), "output": str(self.path), "skipped": self.reason}


def output_for(src: str | os.PathLike[str], out_dir: str | os.PathLike[str] | None = None) -> Path:
    """`art.jpg` → `art.protected.png`, beside the input or in `out_dir`."""
    src = Path(src)
    return Path(out_dir or src.parent) / (src.stem + SUFFIX)


def artworks(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Files as given; folders listed (not recursively) for images not yet protected."""
    files: list[Path] = []
    for art in map(Path, paths):
        if art.is_dir():
            files += sorted(
                p
                for p in art.iterdir()
                if p.is_file() and p.suffix.lower() in EXTENSIONS and not p.name.endswith(SUFFIX)
            )
        elif art.exists():
            files.append(art)
        else:
            raise ImageInputError(f"{art}: no such file or folder")
    return files


def lossy_warning(dst: str | os.PathLike[str]) -> str | None:
    suffix = Path(dst).suffix.lower()
    if suffix in LOSSY:
        return f"{Path(dst).name}: lossy {suffix} weakens the protection; PNG keeps it intact."
    return None


def protect_file(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str] | None = None,
    *,
    strength: str = DEFAULT_STRENGTH,
    mode: Mode = "textural",
    eps: float | None = None,
    steps: int | None = None,
    robust: bool = True,
    model: str | Path | ProtectionModel | None = None,
    device: str | torch.device | None = None,
    identity: Identity | Callable[[], Identity] | None = None,
    watermark_key: bytes | None = None,
    ledger: Ledger | None = None,
    force: bool = False,
    progress: bool | str = False,
    on_progress: Callable[[int, int], None] | None = None,
) -> ProtectedFile:
    """Protect one artwork and publish it watermarked and signed, training "notAllowed".

    dst: default `<name>.protected.png` beside the input. strength: the preset for eps and
    steps; `eps` (0-1 scale) and `steps` override it. model: a reference or a `load_model()`
    result (load it once for many files). identity: an Identity, or a function that returns one,
    called only once the protection succeeded (so a bad input never creates an identity).
    A manifest already in the input becomes the parent ingredient, so its history is kept.
    """
    from guard.protection import load_model, protect
    from guard.provenance.spec import Assertion, Ingredient, ManifestSpec
    from guard.publishing import publish

    src = Path(src)
    dst = Path(dst) if dst is not None else output_for(src)
    if dst.exists() and not force:  # before any expensive work
        raise OutputExistsError(f"{dst}: already exists; pass --force to overwrite it")
    preset_eps, preset_steps = preset(strength)
    run_eps = preset_eps if eps is None else eps
    run_steps = steps or (preset_steps if eps is None else None)
    loaded = imageio.load(src)
    if model is None or isinstance(model, str | Path):
        model = load_model(model, mode=mode, device=device)
    t0 = time.perf_counter()
    result = protect(
        loaded.image,
        model=model,
        mode=mode,
        eps=run_eps,
        steps=run_steps,
        robust=robust,
        progress=progress,
        on_progress=on_progress,
    )
    seconds = time.perf_counter() - t0
    spec = ManifestSpec(
        action="edited",
        source=_source(loaded),
        training="notAllowed",
        ingredients=[Ingredient(src, "parentOf")],
        assertions=[Assertion(ASSERTION_LABEL, result.record.to_assertion())],
        action_parameters={"protection": result.record.mode},
    )
    make_folder(dst.parent)
    signer = identity() if callable(identity) else identity
    pub = publish(
        result.image,
        dst,
        spec,
        identity=signer,
        watermark=True,
        watermark_key=watermark_key,
        ledger=ledger,
        force=force,
    )
    notes = list(pub.notes)
    warning = lossy_warning(dst)
    if warning:
        notes.insert(0, warning)
    return ProtectedFile(
        pub.path,
        pub.sha256,
        pub.manifest_label,
        pub.watermark_id,
        pub.sidecar_path,
        notes,
        source=src,
        protection=result.record,
        seconds=seconds,
    )


@dataclass
class Failed:
    """A batch artwork that could not be protected (the batch went on without it)."""

    source: Path
    path: Path
    error: GuardError | OSError


def protect_files(
    jobs: Iterable[tuple[Path, Path]],
    *,
    resume: bool = True,
    force: bool = False,
    model: str | Path | ProtectionModel | None = None,
    mode: Mode = "textural",
    device: str | torch.device | None = None,
    progress: bool | str = False,
    keep_going: bool = False,
    **options: Any,
) -> Iterator[ProtectedFile | Skipped | Failed]:
    """Protect (source, output) pairs as one batch: the model is loaded once, on first need,
    and one progress bar runs across the whole batch (its unit is an optimisation step of one
    tile, so images of any size count for what they cost).

    resume: an output that already exists is skipped (without `force`), so a batch that was
    interrupted picks up where it stopped. keep_going: an artwork that cannot be protected
    (a guard error or an OSError) is yielded as `Failed` and the batch goes on; otherwise it is
    raised. A model that cannot be loaded is always raised. Other options are those of
    `protect_file` (`on_progress` gets each file's own (done, total)).
    """
    from tqdm.auto import tqdm

    from guard.progress import disable as bar_disable
    from guard.protection import load_model

    jobs = list(jobs)
    todo = [(src, dst) for src, dst in jobs if not (resume and dst.exists() and not force)]
    loaded = None if model is None or isinstance(model, str | Path) else model
    if todo and loaded is None:
        ref = model if model is None or isinstance(model, str | Path) else None
        loaded = load_model(ref, mode=mode, device=device)
    units = {src: _work(src, loaded, options) for src, _ in todo}
    bar = tqdm(
        total=sum(units.values()),
        desc=progress if isinstance(progress, str) else "protect",
        unit="step",
        disable=bar_disable(bool(progress)),
        dynamic_ncols=True,
    )
    own = options.pop("on_progress", None)
    finished = 0
    try:
        for src, dst in jobs:
            if (src, dst) not in todo:
                yield Skipped(src, dst)
                continue
            bar.set_postfix_str(f"{finished}/{len(todo)} images, {src.name}")
            start = bar.n

            def tick(done: int, total: int, start: float = start, src: Path = src) -> None:
                # a file's own total may differ from the estimate (an odd format's real size)
                bar.update(start + done * units[src] / max(total, 1) - bar.n)
                if own is not None:
                    own(done, total)

            try:
                result: ProtectedFile | Failed = protect_file(
                    src, dst, model=loaded, mode=mode, force=force, on_progress=tick, **options
                )
            except (GuardError, OSError) as exc:
                if not keep_going:
                    raise
                result = Failed(src, dst, exc)
            bar.update(start + units[src] - bar.n)
            finished += 1
            bar.set_postfix_str(f"{finished}/{len(todo)} images")
            with bar.external_write_mode(nolock=True):  # the caller's lines print above the bar
                yield result
    finally:
        bar.close()


def _work(src: Path, model: Any, options: dict[str, Any]) -> int:
    """Optimisation steps x tiles that protecting `src` will take (1 when it cannot be read)."""
    from guard.protection.engine import work_units

    try:
        with Image.open(src) as im:
            size = im.size
    except (OSError, ValueError):
        return 1
    eps = options.get("eps")
    steps = options.get("steps") or preset(options.get("strength", DEFAULT_STRENGTH))[1]
    if eps is not None and not options.get("steps"):
        from guard.protection.params import default_steps

        steps = default_steps(eps)
    return work_units(size, model, steps)


def _source(loaded: imageio.LoadedImage) -> str:
    """Keep the input's IPTC digital source type when its manifest states one."""
    try:
        from guard.provenance import c2pa_io

        if c2pa_io.has_manifest(loaded.data, loaded.mime):
            report = c2pa_io.read(loaded.data, loaded.mime, trust_pem=None)
            if report.digital_source_type:
                return report.digital_source_type
    except Exception:  # an unreadable manifest must not stop protection
        pass
    return "digital-art"
