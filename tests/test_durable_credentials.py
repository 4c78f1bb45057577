"""Watermark + ledger + C2PA together: provenance that survives the loss of metadata."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from click.testing import CliRunner
from PIL import Image

import guard
from guard import watermark
from guard.cli import main
from guard.ledger import Ledger
from tests.helpers import art, write


def photo(size: int = 384) -> Image.Image:
    """A natural image: scikit-image's astronaut (ships with the package), resized."""
    from skimage import data

    return Image.fromarray(data.astronaut()).resize((size, size), Image.LANCZOS)


def test_watermark_first_then_sign_trusted_and_marked(tmp_path: Path) -> None:
    src = write(photo(), tmp_path / "a.png")
    published = guard.sign(src, author="Ada")
    assert published.watermark_id is not None
    v = guard.verify(published.path)
    assert v.state == "trusted", v.c2pa.failures  # no byte changed after signing
    assert v.watermark.found and v.watermark.id == published.watermark_id
    assert v.watermark.p_value <= 1e-6
    assert v.c2pa.soft_binding == {"alg": watermark.ALGORITHM, "id": published.watermark_id}
    assert v.ledger is not None and v.ledger.file_matches_record


def test_stripped_jpeg_copy_still_finds_the_original_record(tmp_path: Path) -> None:
    src = write(photo(), tmp_path / "a.png")
    published = guard.sign(src, author="Ada", source="ai", training="notAllowed")
    stripped = tmp_path / "stripped.jpg"
    Image.open(published.path).convert("RGB").save(stripped, "JPEG", quality=80)  # no metadata
    v = guard.verify(stripped)
    assert v.state == "absent"
    assert v.xmp.digital_source_type is None  # metadata really is gone
    assert v.watermark.found and v.watermark.id == published.watermark_id
    assert v.ledger is not None
    assert v.ledger.watermark_id == published.watermark_id
    assert not v.ledger.file_matches_record
    assert v.ledger.manifest is not None and v.ledger.manifest.label == published.manifest_label
    assert v.ledger.manifest.author == "Ada"
    assert v.training == "notAllowed"
    assert v.digital_source_type.endswith("trainedAlgorithmicMedia")
    text = "\n".join(v.summary())
    assert "metadata was stripped" in text and "not from a" in text and "AI-generated" in text

    r = CliRunner().invoke(main, ["verify", str(stripped), "--json"])
    assert r.exit_code == 1  # no credentials in the file itself
    [report] = json.loads(r.stdout)
    assert report["watermark"]["found"] is True
    assert report["ledger"]["match"] is True and report["ledger"]["binding"] == "watermark"
    assert report["ledger"]["training"] == "notAllowed"
    assert report["third_party_marks"] == []


def test_an_unknown_watermark_id_is_reported_without_a_match(tmp_path: Path) -> None:
    src = write(photo(), tmp_path / "a.png")
    published = guard.sign(src, ledger=Ledger(tmp_path / "elsewhere.db"))
    v = guard.verify(published.path)  # default ledger: never heard of it
    assert v.watermark.found and v.ledger is None
    assert "no record for this ID" in "\n".join(v.summary())


def test_no_watermark_flag_and_too_small_images(tmp_path: Path) -> None:
    plain = guard.sign(write(photo(), tmp_path / "a.png"), watermark=False)
    assert plain.watermark_id is None
    assert not guard.verify(plain.path).watermark.found
    tiny = guard.sign(write(art(120, 90), tmp_path / "tiny.png"))
    assert tiny.watermark_id is None
    assert any("too small" in n for n in tiny.notes)
    assert guard.verify(tiny.path).state == "trusted"


def test_private_key_marks_are_invisible_to_the_public_key(tmp_path: Path) -> None:
    key = b"platform-secret-key"
    published = guard.sign(write(photo(), tmp_path / "a.png"), watermark_key=key)
    assert not guard.verify(published.path).watermark.found
    assert guard.verify(published.path, watermark_key=key).watermark.found


def test_sdxl_mark_is_named_by_verify(tmp_path: Path) -> None:
    from imwatermark import WatermarkEncoder

    bits = [int(b) for b in bin(0xB3EC907BB19E)[2:].zfill(48)]
    enc = WatermarkEncoder()
    enc.set_watermark("bits", bits)
    bgr = np.ascontiguousarray(np.asarray(photo(512))[:, :, ::-1])
    marked = Image.fromarray(enc.encode(bgr, "dwtDct")[:, :, ::-1])
    path = write(marked, tmp_path / "sdxl.png")
    v = guard.verify(path)
    [mark] = v.third_party_marks
    assert "Stable Diffusion XL" in mark.name and mark.fragile and mark.p_value < 1e-6
    assert "Stable Diffusion XL" in "\n".join(v.summary())


def test_alpha_is_untouched_by_the_watermark(tmp_path: Path) -> None:
    rgba = photo()
    rgba.putalpha(Image.fromarray(np.tile(np.arange(384, dtype=np.uint8)[None] // 2, (384, 1))))
    published = guard.sign(write(rgba, tmp_path / "a.png"))
    out = Image.open(published.path)
    assert published.watermark_id and out.mode == "RGBA"
    np.testing.assert_array_equal(np.asarray(out)[..., 3], np.asarray(rgba)[..., 3])
    buf = io.BytesIO()
    out.save(buf, "PNG")
    assert watermark.detect(Image.open(buf)).found
