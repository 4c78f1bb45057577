"""A watermark match applies its record's claims only to the record's own picture.

Genuine stripped copies (re-encoded, resized, cropped, turned, mirrored) match the record's
picture; a mark transplanted onto another picture, or re-embedded there with the public key, is
reported as belonging to another image, and none of the record's claims reach the verdict.
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

import guard
from guard import watermark as wm
from guard.ledger import fingerprint


def _photo(which: str, size: tuple[int, int] = (640, 512)) -> Image.Image:
    return Image.fromarray(getattr(skdata, which)()).convert("RGB").resize(size)


def _bare(im: Image.Image, path: Path, fmt: str = "JPEG", **params: object) -> Path:
    """A copy with no metadata at all: what a social site or a screenshot leaves."""
    im.convert("RGB").save(path, fmt, **params)
    return path


@pytest.fixture(scope="module")
def signed_once(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Image.Image]:
    """An AI-generated picture, signed as such (a stand-in for `guard generate` output), once
    for the module, in a guard home of its own (identity and ledger): that home, the signed
    file, the original."""
    home, folder = tmp_path_factory.mktemp("signer_home"), tmp_path_factory.mktemp("signed")
    src = folder / "gen.png"
    original = _photo("astronaut")
    original.save(src)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GUARD_HOME", str(home))
        out = guard.sign(src, folder / "gen.signed.png", source="ai", training="notAllowed")
    assert out.watermark_id is not None
    return home, out.path, original


@pytest.fixture
def published(signed_once, guard_home: Path) -> tuple[Path, Image.Image, Image.Image]:
    """That picture, with this test's own guard home a copy of the signer's (identity and
    ledger): what a test does there reaches no other test."""
    home, path, original = signed_once
    shutil.copytree(home, guard_home, dirs_exist_ok=True)
    with Image.open(path) as im:
        marked = im.convert("RGB")
    return path, original.copy(), marked


def _turn(im: Image.Image) -> Image.Image:
    w, h = im.size
    turned = im.rotate(5, Image.Resampling.BICUBIC)
    return turned.crop((w // 10, h // 10, w - w // 10, h - h // 10))


@pytest.mark.parametrize(
    "copy",
    [
        pytest.param(lambda im: im, id="jpeg60"),
        pytest.param(lambda im: im.resize((480, 384), Image.Resampling.BICUBIC), id="resize0.75"),
        pytest.param(lambda im: im.crop((30, 120, 30 + 448, 120 + 358)), id="crop70"),
        pytest.param(_turn, id="rotate5+crop"),
        pytest.param(lambda im: im.transpose(Image.Transpose.FLIP_LEFT_RIGHT), id="mirror"),
    ],
)
def test_a_stripped_copy_matches_its_record(published, tmp_path: Path, copy) -> None:
    _, _, marked = published
    bare = _bare(copy(marked), tmp_path / "copy.jpg", quality=60)
    v = guard.verify(bare)
    assert v.state == "absent" and v.watermark is not None and v.watermark.found
    assert v.ledger is not None and v.ledger.verified
    assert v.ledger.content_match is True and v.ledger.content.score >= fingerprint.MATCH
    # the record's claims reach the verdict: this is the record's picture
    assert v.digital_source_type.endswith("trainedAlgorithmicMedia")
    assert v.training == "notAllowed"
    text = "\n".join(v.summary())
    assert "this picture matches the record's picture" in text and "AI-generated" in text


def _transplant(marked: Image.Image, original: Image.Image, host: Image.Image) -> Image.Image:
    """The copy attack at its strongest: the exact mark (marked minus original), added to
    another picture. A real attacker only has an estimate; this is the upper bound."""
    mark = np.asarray(marked, np.float32) - np.asarray(original, np.float32)
    out = np.asarray(host, np.float32) + mark
    return Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8))


@pytest.mark.parametrize("forge", ["transplant", "re-embed with the public key"])
def test_a_mark_on_another_picture_carries_none_of_its_claims(
    published, tmp_path: Path, forge: str
) -> None:
    _, original, marked = published
    photo = _photo("coffee")  # a real photo that never met guard
    if forge == "transplant":
        forged = _transplant(marked, original, photo)
    else:  # the public key lets anyone detect the ID and write it into any picture
        found = wm.detect(marked)
        assert found.payload is not None
        forged = wm.embed(photo, found.payload)
    bare = _bare(forged, tmp_path / "photo.jpg", quality=90)
    v = guard.verify(bare)
    assert v.watermark is not None and v.watermark.found  # the mark itself is there...
    assert v.ledger is not None and v.ledger.verified  # ...and points at a genuine record
    assert v.ledger.content_match is False  # but this is not the record's picture
    assert v.digital_source_type is None and v.training is None
    assert v.ledger.signer is None and v.ledger.training is None
    report = v.to_dict()
    assert report["ledger"]["content_match"] is False
    assert report["digital_source_type"] is None and report["training"] is None
    text = "\n".join(v.summary())
    assert "BELONGS TO ANOTHER IMAGE" in text
    assert "AI-generated" not in text and "record says" not in text


def test_the_fingerprint_is_signed_into_the_manifest_and_kept_in_the_ledger(published) -> None:
    path, _, marked = published
    v = guard.verify(path)
    assert v.state == "trusted"
    assert v.c2pa.soft_binding and v.c2pa.soft_binding["alg"] == wm.ALGORITHM
    assert v.c2pa.fingerprint is not None
    bindings = [v.c2pa.assertions[k]["alg"] for k in v.c2pa.assertions if "soft-binding" in k]
    assert bindings == [wm.ALGORITHM, fingerprint.ALGORITHM]  # both kept in the report
    with guard.Ledger() as ledger:
        record = ledger.get(v.c2pa.soft_binding["id"])
    assert record is not None and record.fingerprint == v.c2pa.fingerprint
    assert fingerprint.compare(record.fingerprint, marked, wm.detect(marked).alignment).match


def test_a_record_without_a_fingerprint_is_compared_through_its_thumbnail(
    tmp_path: Path,
) -> None:
    """Records made before fingerprints (mark v1) still get a content check from the thumbnail
    they have always kept."""
    from guard.ledger import Ledger, Record
    from guard.provenance import c2pa_io

    original = _photo("chelsea", (600, 400))
    marked = wm.embed(original, bytes.fromhex("0123456789abcdef"), version=1)
    thumb = c2pa_io.thumbnail_jpeg(marked)
    reference = fingerprint.from_thumbnail(thumb)
    genuine = Image.open(_bare(marked.resize((450, 300)), tmp_path / "g.jpg", quality=70))
    hit = wm.detect(genuine)
    assert hit.found and hit.scheme == wm.ALGORITHM_V1
    assert fingerprint.compare(reference, genuine, hit.alignment).match is True
    other = wm.embed(_photo("coffee", (600, 400)), bytes.fromhex("0123456789abcdef"), version=1)
    hit = wm.detect(other)
    assert hit.found and fingerprint.compare(reference, other, hit.alignment).match is False
    # and through verify, with the thumbnail as the record's only picture
    with Ledger(tmp_path / "old.sqlite3") as ledger:
        ledger.add(Record("0123456789abcdef", thumbnail=thumb))
        v = guard.verify(_bare(marked, tmp_path / "v1.jpg", quality=80), ledger=ledger)
    assert v.ledger is not None and v.ledger.content_match is True
    assert not v.ledger.verified and v.training is None  # no manifest: still no claims


def test_near_duplicates_of_the_scene_do_not_match(published) -> None:
    """Another shot of the same scene, a few pixels away, with the mark where the original had
    it: the mark pins the content down to a pixel or two, so this is not the record's picture."""
    _, original, marked = published
    reference = fingerprint.compute(marked)
    payload = wm.detect(marked).payload
    assert payload is not None
    w, h = original.size
    for dx in (6, 12):  # working pixels are 0.8 px here: a 5 and 10 px shift of the scene
        moved = original.transform((w, h), Image.Transform.AFFINE, (1, 0, dx, 0, 1, dx / 2))
        forged = wm.embed(moved, payload)
        hit = wm.detect(forged)
        assert hit.found
        result = fingerprint.compare(reference, forged, hit.alignment)
        assert result.match is False, (dx, result)


def test_flat_or_unreadable_fingerprints_compare_nothing() -> None:
    flat = Image.new("RGB", (512, 512), (120, 120, 120))
    marked = wm.embed(flat, bytes(8))
    hit = wm.detect(marked)
    result = fingerprint.compare(fingerprint.compute(marked), marked, hit.alignment)
    assert result.match is None and "flat" in (result.reason or "")
    broken = fingerprint.compare(b"not a fingerprint", marked, hit.alignment)
    assert broken.match is None and "unreadable" in (broken.reason or "")
    with pytest.raises(ValueError):
        fingerprint.decode(fingerprint.compute(marked)[:20])


def test_fingerprint_is_compact() -> None:
    buf = io.BytesIO()
    _photo("astronaut", (1024, 1024)).save(buf, "PNG")
    fp = fingerprint.compute(Image.open(buf))
    assert len(fp) < 20_000 and fingerprint.decode(fp).shape == (128, 128)


# ---- the record's picture in part of the copy only -------------------------------------------
def _collage(marked: Image.Image, cover: float) -> tuple[Image.Image, tuple[int, int]]:
    """The marked picture pasted 1:1 into a real photo, covering `cover` of the result."""
    w, h = marked.size
    size = (round(w / cover**0.5), round(h / cover**0.5))
    canvas = _photo("coffee", size)
    at = ((size[0] - w) // 3, (size[1] - h) // 2)
    canvas.paste(marked, at)
    return canvas, at


@pytest.mark.parametrize("cover", [0.44, 0.64])
def test_a_collage_gets_the_region_not_the_records_claims(published, tmp_path, cover) -> None:
    """A signed AI image pasted into a real photo got "this picture matches the record's
    picture ... AI-generated, AI training not allowed" in 48 of 48 collages."""
    _, _, marked = published
    collage, (x, y) = _collage(marked, cover)
    v = guard.verify(_bare(collage, tmp_path / "collage.jpg", quality=90))
    assert v.ledger is not None and v.ledger.verified
    assert v.ledger.content_match is False
    region = v.ledger.content_region
    assert region is not None and region.other_share > 0.2
    assert abs(region.share - cover) < 0.06
    x0, y0, x1, y1 = region.box  # where the marked picture was pasted, to a few pixels
    w, h = marked.size
    assert max(abs(x0 - x), abs(y0 - y), abs(x1 - (x + w)), abs(y1 - (y + h))) <= 12
    assert v.digital_source_type is None and v.training is None  # no claim for the whole
    text = "\n".join(v.summary())
    assert "only PART of this one" in text and "is not from that record" in text
    assert "this picture matches the record's picture" not in text and "record says" not in text
    assert v.to_dict()["ledger"]["content_region"]["box"] == list(region.box)


def test_a_replaced_part_of_the_records_own_picture_is_shown(published, tmp_path) -> None:
    """With 10% of the area replaced by another photo, the claims still applied in 22/48."""
    _, _, marked = published
    w, h = marked.size
    box = (w // 2, h // 4, w // 2 + w // 3, h // 4 + (h * 3) // 10)  # 10% of the area
    edited = marked.copy()
    edited.paste(_photo("coffee").crop(box), box[:2])
    v = guard.verify(_bare(edited, tmp_path / "edited.jpg", quality=90))
    assert v.ledger is not None and v.ledger.content_match is False
    region = v.ledger.content_region
    assert region is not None and region.changed and region.other_share == 0
    for cx0, cy0, cx1, cy1 in region.changed:  # every changed block overlaps the pasted box
        assert cx0 < box[2] and cx1 > box[0] and cy0 < box[3] and cy1 > box[1]
    assert 0.05 <= region.changed_share <= 0.3
    assert v.training is None
    assert "was changed here" in "\n".join(v.summary())


def test_a_partial_match_is_no_match_for_the_scan_or_the_resolver(published, tmp_path) -> None:
    _, _, marked = published
    collage, _ = _collage(marked, 0.5)
    path = _bare(collage, tmp_path / "c.jpg", quality=90)
    [row] = guard.scan([path], workers=0)
    assert row.decision == "unverifiable" and "watermark_partial_match" in row.signals
    assert row.content_match is False and row.training is None
