"""Safe image I/O: content sniffing, mode policy, hostile inputs, atomic no-overwrite saves."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms

from guard.errors import ImageInputError, OutputExistsError, OutputWriteError
from guard.media import imageio
from guard.media.atomic_write import save_atomic
from guard.media.encoding import encode
from tests.helpers import art, png_bomb, write


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "TIFF", "AVIF"])
def test_loads_by_content_not_extension(tmp_path: Path, fmt: str) -> None:
    path = write(art(64, 48), tmp_path / "misnamed.bin", fmt)
    loaded = imageio.load(path)
    assert loaded.format == fmt
    assert loaded.image.size == (64, 48)
    assert loaded.data == path.read_bytes()


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    path = write(art(60, 40), tmp_path / "o.jpg", "JPEG", exif=exif.tobytes())
    loaded = imageio.load(path)
    assert loaded.image.size == (40, 60)
    kept = Image.Exif()
    kept.load(loaded.exif or b"")
    assert 0x0112 not in kept  # reset, so viewers do not rotate twice


@pytest.mark.parametrize(
    ("mode", "expected"),
    [("RGB", "RGB"), ("RGBA", "RGBA"), ("L", "L"), ("LA", "LA"), ("1", "L"), ("CMYK", "RGB")],
)
def test_mode_policy(tmp_path: Path, mode: str, expected: str) -> None:
    im = art(32, 32, "RGBA" if mode in ("RGBA", "LA") else "RGB").convert(mode)
    fmt = "TIFF" if mode == "CMYK" else "PNG"
    loaded = imageio.load(write(im, tmp_path / f"m.{fmt.lower()}", fmt))
    assert loaded.image.mode == expected


def test_palette_with_transparency_becomes_rgba(tmp_path: Path) -> None:
    im = art(32, 32).quantize(16)
    im.info["transparency"] = 0
    loaded = imageio.load(write(im, tmp_path / "p.png", "PNG", transparency=0))
    assert loaded.image.mode == "RGBA"
    alpha = np.asarray(loaded.image)[..., 3]
    assert (alpha == 0).any() and (alpha == 255).any()


def test_palette_without_transparency_becomes_rgb(tmp_path: Path) -> None:
    loaded = imageio.load(write(art(32, 32).quantize(16), tmp_path / "p.png", "PNG"))
    assert loaded.image.mode == "RGB"


def test_sixteen_bit_grey_is_reduced_with_a_note(tmp_path: Path) -> None:
    ramp = (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16).astype(np.uint16)
    path = tmp_path / "g16.png"
    Image.fromarray(ramp).save(path)
    loaded = imageio.load(path)
    assert loaded.image.mode == "L"
    assert np.asarray(loaded.image).max() == round(ramp.max() / 257)
    assert any("16-bit" in n for n in loaded.notes)


def test_cmyk_with_profile_is_converted_through_it(tmp_path: Path) -> None:
    # an sRGB-profiled CMYK file is not realistic, but any embedded profile must be used, not ignored
    path = write(art(32, 32).convert("CMYK"), tmp_path / "c.jpg", "JPEG")
    loaded = imageio.load(path)
    assert loaded.image.mode == "RGB"
    assert any("CMYK" in n for n in loaded.notes)


def test_icc_profile_is_kept(tmp_path: Path) -> None:
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    loaded = imageio.load(write(art(32, 32), tmp_path / "i.png", "PNG", icc_profile=icc))
    assert loaded.icc_profile == icc


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        (b"", "empty file"),
        (b"this is not an image at all" * 10, "not an image"),
        (png_bomb(), "decompression bomb"),
    ],
)
def test_hostile_inputs_are_refused_by_name(tmp_path: Path, payload: bytes, problem: str) -> None:
    path = tmp_path / "bad.png"
    path.write_bytes(payload)
    with pytest.raises(ImageInputError) as err:
        imageio.load(path)
    assert str(path) in str(err.value)
    assert problem in str(err.value)


def test_truncated_file_is_refused(tmp_path: Path) -> None:
    data = io.BytesIO()
    art(200, 200).save(data, "PNG")
    path = tmp_path / "cut.png"
    path.write_bytes(data.getvalue()[: len(data.getvalue()) // 2])
    with pytest.raises(ImageInputError, match=r"truncated|corrupt"):
        imageio.load(path)


def test_animated_file_is_refused(tmp_path: Path) -> None:
    frames = [art(32, 32, seed=i) for i in range(3)]
    path = tmp_path / "anim.webp"
    frames[0].save(path, "WEBP", save_all=True, append_images=frames[1:])
    with pytest.raises(ImageInputError, match="animated image with 3 frames"):
        imageio.load(path)


def test_unsupported_format_says_what_to_do(tmp_path: Path) -> None:
    path = write(art(16, 16), tmp_path / "x.bmp", "BMP")
    with pytest.raises(ImageInputError, match="convert it to PNG"):
        imageio.load(path)


def test_save_atomic_refuses_to_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "out.png"
    target.write_bytes(b"precious")
    with pytest.raises(OutputExistsError, match="--force"):
        save_atomic(target, b"new")
    assert target.read_bytes() == b"precious"
    save_atomic(target, b"new", force=True)
    assert target.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]  # no temp file left behind


def test_save_atomic_leaves_nothing_when_the_write_fails(tmp_path: Path, monkeypatch) -> None:
    def broken_fsync(fd: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OutputWriteError, match="disk full"):
        save_atomic(tmp_path / "out.png", b"data")
    assert list(tmp_path.iterdir()) == []


def test_save_atomic_respects_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        path = save_atomic(tmp_path / "f.png", b"x")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


def test_encode_writes_parameters_where_web_ui_reads_them() -> None:
    text = "a cat\nSteps: 20, Sampler: Euler a"
    for fmt in ("PNG", "JPEG", "WEBP"):
        data = encode(art(32, 32), fmt, text={"parameters": text})
        assert imageio.decode(data).text["parameters"] == text


# ---- web UI's Pillow (9.5): what it lacks, simulated on the locked Pillow --------------------
def test_a_jpegs_xmp_is_read_where_pillow_does_not_hand_it_over(monkeypatch) -> None:
    """Pillow before 10 keeps a JPEG's XMP segment in `applist` only, not in `info`: other
    tools' XMP was then lost from every signed or re-encoded JPEG (the suite on Pillow 9.5)."""
    from PIL import JpegImagePlugin

    packet = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF/></x:xmpmeta>'
    body = b"http://ns.adobe.com/xap/1.0/\x00" + packet
    plain = io.BytesIO()
    art(32, 32).save(plain, "JPEG")
    segment = b"\xff\xe1" + (len(body) + 2).to_bytes(2, "big") + body  # as an XMP writer puts it
    buf = io.BytesIO(plain.getvalue()[:2] + segment + plain.getvalue()[2:])
    opened = JpegImagePlugin.JpegImageFile._open

    def like_pillow_9(self) -> None:
        opened(self)
        self.info.pop("xmp", None)

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "_open", like_pillow_9)
    with Image.open(io.BytesIO(buf.getvalue())) as im:
        assert "xmp" not in im.info  # the simulation holds
    assert imageio.decode(buf.getvalue(), name="x.jpg").xmp == packet


def test_a_multi_strip_tiff_keeps_its_exif_where_pillow_cannot_rebuild_it(monkeypatch) -> None:
    """Pillow before 10 raises NotImplementedError rebuilding a TIFF directory with several
    strips; loading such a TIFF failed with a traceback. Its EXIF is then read as written."""
    from guard.media import exif_block

    exif = Image.Exif()
    exif[0x0131] = "some editor 1.0"  # Software
    buf = io.BytesIO()
    art(64, 256).save(buf, "TIFF", exif=exif, rowsperstrip=16)  # 16 strips
    data = buf.getvalue()

    def like_pillow_9(self, offset: int = 8) -> bytes:
        raise NotImplementedError("multistrip support not yet implemented")

    monkeypatch.setattr(Image.Exif, "tobytes", like_pillow_9)
    loaded = imageio.decode(data, name="x.tif")
    assert loaded.exif == exif_block.from_tiff(data) and loaded.exif is not None
    assert b"some editor 1.0" in loaded.exif


def test_a_format_this_pillow_cannot_write_is_an_input_error(monkeypatch) -> None:
    """AVIF needs Pillow 11.2 or pillow-avif-plugin; without either, encoding raised KeyError."""
    Image.init()
    monkeypatch.delitem(Image.SAVE, "AVIF", raising=False)  # web UI's Pillow 9.5 has none
    with pytest.raises(ImageInputError, match=r"cannot write AVIF: install pillow>=11\.2"):
        encode(art(32, 32), "AVIF")
