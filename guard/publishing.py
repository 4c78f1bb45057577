"""The one publishing path. Every image guard writes leaves through `publish`:

1. embed the watermark (when asked) — pixels change here and nowhere later;
2. encode, with the text and XMP metadata (infotext, IPTC DigitalSourceType, PLUS DataMining);
3. sign the C2PA manifest last: no byte may change after it;
4. record the watermark ID in the ledger, then save atomically (never overwriting, never
   touching an input).

Callers (sign, generate, protect, the pipeline hook) differ only in the ManifestSpec they pass.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from guard import __version__
from guard.errors import ImageInputError, TooSmallError
from guard.media import carried, imageio, reencoding
from guard.media.atomic_write import make_folder, save_atomic
from guard.media.formats import EXTENSIONS, MIME, SUFFIX, format_for
from guard.provenance import c2pa_io, vocab, xmp
from guard.provenance import manifest as manifest_mod
from guard.provenance.spec import Ingredient, ManifestSpec, Training

if TYPE_CHECKING:
    from PIL import Image

    from guard.identity import Identity
    from guard.ledger import Ledger, Record


@dataclass
class Published:
    path: Path
    sha256: str
    manifest_label: str | None
    watermark_id: str | None
    sidecar_path: Path | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {
            "path": str(self.path),
            "sha256": self.sha256,
            "manifest": self.manifest_label,
            "watermark_id": self.watermark_id,
            "sidecar": str(self.sidecar_path) if self.sidecar_path else None,
            "notes": self.notes,
        }


def publish(
    image: Image.Image | imageio.LoadedImage,
    out: str | os.PathLike[str],
    spec: ManifestSpec,
    *,
    identity: Identity | None = None,
    watermark: bool = True,
    watermark_key: bytes | None = None,
    watermark_id: str | None = None,
    ledger: Ledger | None = None,
    force: bool = False,
    sidecar: bool = False,
    in_place: bool = False,
) -> Published:
    """Write `image` to `out` watermarked and signed.

    `watermark_id` is for pixels that already carry guard's mark (the pipeline hook embeds it
    inside the pipeline; a host marks them before it writes its file): the ID is recorded and
    bound, and the pixels are not marked twice.

    `in_place`: `image` is a file loaded from `out`, a host's own output just written (web UI's
    save_image), and it is replaced by its signed self, atomically. The one case where guard
    writes over its input, so it is never re-encoded: its pixels and metadata stay byte for
    byte as the host wrote them, and only guard's XMP (where exiv2 writes it) and the manifest
    are added. Pass `watermark_id` (marked before the host wrote it) or `watermark=False`.
    """
    from guard.identity import Identity

    out = Path(out)
    fmt = format_for(out)
    loaded = image if isinstance(image, imageio.LoadedImage) else None
    pixels = image.image if isinstance(image, imageio.LoadedImage) else image
    if in_place:
        _check_in_place(out, fmt, loaded, spec, watermark, watermark_id, sidecar)
    else:
        _check_output(out, force, sidecar, [i.path for i in spec.ingredients], loaded)
    identity = identity or Identity.default()
    notes: list[str] = []

    # 1. watermark
    if watermark and watermark_id is None:
        from guard import watermark as wm

        try:
            payload = wm.new_payload()
            pixels = wm.embed(pixels, payload, key=watermark_key)
            watermark_id = payload.hex()
        except TooSmallError as exc:
            notes.append(f"not watermarked: {exc}")
    # a caller's watermark_id marks pixels it handed over as they are: only a mark made here
    # means the loaded file's pixels are not the ones to write
    pixels_changed = loaded is not None and pixels is not loaded.image
    # the marked picture's fingerprint: a mark found later is checked against it (verify)
    fingerprint = _fingerprint(pixels) if watermark_id else None

    # 2. encode with text + XMP
    source_uri = vocab.source_uri(spec.source)
    packet = xmp.merged_packet(
        carried.xmp_packet(loaded),
        xmp.fields(source_uri, spec.training, spec.author, f"guard {__version__}"),
    )
    passthrough = (
        loaded is not None
        and not pixels_changed
        and loaded.format == fmt
        and fmt in xmp.EXIV2_WRITES
        and not spec.text
    )
    if passthrough:
        assert loaded is not None
        before = reencoding.placed(loaded.data, fmt)
        data = xmp.embed(loaded.data, packet)  # original pixels bit for bit, 16-bit kept
        data = reencoding.restore(data, fmt, before)
    elif in_place:
        assert loaded is not None
        data = loaded.data  # AVIF (exiv2 cannot write it): the host's bytes, signed as they are
        notes.append(
            f"no XMP written: guard cannot add it to a {fmt} file without re-encoding it; the "
            "C2PA manifest states the same source type and training permission"
        )
    else:
        notes.extend(loaded.notes if loaded else [])  # conversions only matter when re-encoding
        if fmt == "JPEG" and pixels.mode in ("RGBA", "LA"):
            raise ImageInputError(
                f"{out}: JPEG cannot keep this image's transparency; write .png, .webp, .tif "
                "or .avif instead"
            )
        # other tools' text chunks, EXIF (web UI's UserComment included), ICC, XMP, as written
        data, kept_notes = reencoding.reencode(
            pixels,
            fmt,
            loaded,
            text=spec.text,
            packet=packet,
            lossless=loaded.lossless if loaded else True,
        )
        notes.extend(kept_notes)

    # 3. sign last
    thumbnail = c2pa_io.thumbnail_jpeg(pixels)
    definition = manifest_mod.build(
        spec,
        title=out.name,
        mime=MIME[fmt],
        watermark_id=watermark_id,
        watermark_alg=_watermark_algorithm() if watermark_id else None,
        fingerprint=fingerprint,
    )
    signed, store = c2pa_io.sign(
        definition,
        data,
        MIME[fmt],
        identity,
        thumbnail=thumbnail,
        ingredients=[_ingredient_bytes(i, loaded) for i in spec.ingredients],
        sidecar=sidecar,
    )
    digest = hashlib.sha256(signed).hexdigest()
    label = definition["label"]

    # 4. ledger record as pending, the atomic save, then commit the record. A failed save
    # withdraws it; a process killed in between leaves a pending record that the next open
    # of the ledger settles (committed if the file is in place, removed if not).
    record = _record(
        ledger, watermark_id, identity, spec, out, digest, label, store, thumbnail, fingerprint
    )
    sidecar_path = out.with_suffix(".c2pa") if sidecar else None
    try:
        save_atomic(out, signed, force=force or in_place)
        if sidecar_path is not None:
            save_atomic(sidecar_path, store, force=force)
    except BaseException:
        if record is not None:
            _withdraw(ledger, record.watermark_id)
        raise
    if record is not None:
        _commit(ledger, record)
    return Published(out, digest, label, watermark_id, sidecar_path, notes)


def sign(
    src: str | os.PathLike[str] | imageio.LoadedImage,
    out: str | os.PathLike[str] | None = None,
    *,
    source: str = "digital-art",
    author: str | None = None,
    title: str | None = None,
    training: Training = "notAllowed",
    identity: Identity | None = None,
    watermark: bool = True,
    watermark_key: bytes | None = None,
    ledger: Ledger | None = None,
    force: bool = False,
    sidecar: bool = False,
) -> Published:
    """Sign an existing image file. A manifest already in it becomes the parent ingredient,
    so the history chain is extended, never overwritten. The output's folder is created, as
    protect_file and generate create theirs."""
    loaded = src if isinstance(src, imageio.LoadedImage) else imageio.load(src)
    if loaded.path is None:
        raise ImageInputError("sign needs an image loaded from a file; use publish() for pixels")
    src = loaded.path
    out = Path(out) if out else default_output(src, loaded.format, ".signed")
    make_folder(out.parent)  # once the input has loaded: a bad input creates nothing
    spec = ManifestSpec(
        action="created", source=source, author=author, title=title, training=training
    )
    if c2pa_io.has_manifest(loaded.data, loaded.mime):
        spec.ingredients = [Ingredient(src, "parentOf", src.name)]
        spec.action = "edited" if watermark else "opened"
    return publish(
        loaded,
        out,
        spec,
        identity=identity,
        watermark=watermark,
        watermark_key=watermark_key,
        ledger=ledger,
        force=force,
        sidecar=sidecar,
    )


def default_output(src: Path, fmt: str, tag: str, folder: Path | None = None) -> Path:
    """`art.png` → `art.signed.png`; keeps the user's extension when it matches the content."""
    suffix = src.suffix if EXTENSIONS.get(src.suffix.lower()) == fmt else SUFFIX[fmt]
    return (folder or src.parent) / f"{src.stem}{tag}{suffix}"


def _check_output(
    out: Path,
    force: bool,
    sidecar: bool,
    inputs: list[Path],
    loaded: imageio.LoadedImage | None,
) -> None:
    """Fail before any expensive work, and never let --force aim at an input file."""
    from guard.errors import OutputExistsError

    candidates = [out, out.with_suffix(".c2pa")] if sidecar else [out]
    sources = [p for p in [*inputs, loaded.path if loaded else None] if p is not None]
    for target in candidates:
        for src in sources:
            if target.exists() and Path(src).exists() and os.path.samefile(target, src):
                raise OutputExistsError(
                    f"{target}: is an input file; guard never modifies its inputs, choose another "
                    "output name"
                )
        if target.exists() and not force:
            raise OutputExistsError(f"{target}: already exists; pass --force to overwrite it")


def _check_in_place(
    out: Path,
    fmt: str,
    loaded: imageio.LoadedImage | None,
    spec: ManifestSpec,
    watermark: bool,
    watermark_id: str | None,
    sidecar: bool,
) -> None:
    if loaded is None or loaded.path is None or not out.exists():
        raise ValueError("in_place signs a file where it lies: pass the file loaded from `out`")
    if not loaded.path.exists() or not os.path.samefile(loaded.path, out):
        raise ValueError(f"in_place: {out} is not the file that was loaded ({loaded.path})")
    if watermark and watermark_id is None:
        raise ValueError(
            "in_place never changes the file's pixels: pass the watermark_id they already "
            "carry, or watermark=False"
        )
    if sidecar:
        raise ValueError("in_place embeds the manifest; a sidecar is for files left unchanged")
    if loaded.format != fmt:
        raise ValueError(f"in_place: {out} holds a {loaded.format} image, not {fmt}")
    if spec.text:
        raise ValueError("in_place writes no text: the host's own text is kept as it wrote it")


def _ingredient_bytes(
    ing: Ingredient, source: imageio.LoadedImage | None
) -> c2pa_io.IngredientBytes:
    """The input being published is usually its own parent: reuse it rather than decode twice."""
    same = source is not None and source.path is not None and Path(ing.path) == source.path
    loaded = source if same else imageio.load(ing.path)
    assert loaded is not None
    return c2pa_io.IngredientBytes(
        loaded.data, loaded.mime, ing.title or Path(ing.path).name, ing.relationship
    )


def _watermark_algorithm() -> str:
    from guard import watermark

    return watermark.ALGORITHM


def _fingerprint(pixels: Image.Image) -> bytes:
    from guard.ledger import fingerprint

    return fingerprint.compute(pixels)


def _record(
    ledger: Ledger | None,
    watermark_id: str | None,
    identity: Identity,
    spec: ManifestSpec,
    out: Path,
    digest: str,
    label: str | None,
    store: bytes,
    thumbnail: bytes,
    fingerprint: bytes | None,
) -> Record | None:
    if watermark_id is None:
        return None
    from guard.ledger import Record

    summary = {
        "digital_source_type": vocab.source_uri(spec.source),
        "training": spec.training,
        "author": spec.author,
        "title": spec.title or out.name,
        "action": spec.action,
    }
    record = Record(
        watermark_id=watermark_id,
        signer=identity.subject_name,
        sha256=digest,
        file_name=out.name,
        manifest_label=label,
        manifest=store,
        summary=summary,
        thumbnail=thumbnail,
        fingerprint=fingerprint,
    )
    with _ledger(ledger) as db:
        db.add(record, replace=True, pending=out)
    return record


@contextlib.contextmanager
def _ledger(ledger: Ledger | None) -> Iterator[Ledger]:
    """The caller's ledger as it is, or the default one opened for this step only."""
    if ledger is not None:
        yield ledger
        return
    from guard.ledger import Ledger

    with Ledger() as own:
        yield own


def _commit(ledger: Ledger | None, record: Record) -> None:
    with _ledger(ledger) as db:
        db.commit(record)


def _withdraw(ledger: Ledger | None, watermark_id: str) -> None:
    with _ledger(ledger) as db:
        db.remove(watermark_id)
