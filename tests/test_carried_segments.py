"""Other tools' JPEG segments and a TIFF's EXIF sub-directories survive guard's re-encode.

The inputs are laid out as their writers lay them out:
- a JPEG as Photoshop/Lightroom and cameras save it: JFIF, EXIF (camera tags), ICC, the XMP
  packet with `xmpNote:HasExtendedXMP` and its APP1 extension segment (Adobe XMP spec part 3,
  1.1.3.1), a FlashPix APP2 segment, and APP13 "Photoshop 3.0" holding 8BIM image resources:
  resolution (0x03ED), IPTC-IIM (0x0404; IIM 4.2 datasets 1:90, 2:00, 2:05, 2:25, 2:80, 2:116,
  2:120) and the IPTC digest (0x0425, MD5 of the IIM block);
- an MPO (two pictures, MPF APP2 index) as Pillow writes it;
- a baseline little-endian TIFF as cameras write it: IFD0, then the EXIF and GPS sub-IFDs it
  points to, values outside the entries, one uncompressed strip.
"""

from __future__ import annotations

import hashlib
import io
import struct
from pathlib import Path

import numpy as np
import piexif
import piexif.helper
import pytest
from PIL import Image, ImageCms

from guard.media import jpeg_segments
from guard.publishing import publish, sign
from tests.helpers import art

ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


# ---- a JPEG with other tools' segments ----------------------------------------------------------
def iim(record: int, dataset: int, value: bytes) -> bytes:
    return bytes([0x1C, record, dataset]) + struct.pack(">H", len(value)) + value


def resource(rid: int, data: bytes) -> bytes:
    """A Photoshop image resource: 8BIM, ID, empty Pascal name (padded), size, data (padded)."""
    pad = b"\x00" if len(data) & 1 else b""
    return (
        b"8BIM" + struct.pack(">H", rid) + b"\x00\x00" + struct.pack(">I", len(data)) + data + pad
    )


IPTC = b"".join(
    [
        iim(1, 90, b"\x1b%G"),  # coded character set: UTF-8
        iim(2, 0, b"\x00\x04"),  # record version 4
        iim(2, 5, b"Leuchtturm"),
        iim(2, 25, b"lighthouse"),
        iim(2, 25, b"dusk"),
        iim(2, 80, "Jürgen Fotograf".encode()),
        iim(2, 116, b"(c) 2024 J. F."),
        iim(2, 120, "Ein Leuchtturm in der Dämmerung".encode()),
    ]
)
PHOTOSHOP = (
    b"Photoshop 3.0\x00"
    + resource(0x03ED, struct.pack(">IHHIHH", 300 << 16, 1, 1, 300 << 16, 1, 1))
    + resource(0x0404, IPTC)
    + resource(0x0425, hashlib.md5(IPTC).digest())
)
EXTENDED_XMP = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
    b'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about="" '
    b'xmlns:photoshop="http://ns.adobe.com/photoshop/1.0/" photoshop:History="'
    + b"edited " * 60
    + b'"/></rdf:RDF></x:xmpmeta>'
)
GUID = hashlib.md5(EXTENDED_XMP).hexdigest().upper()
XMP_EXTENSION = (
    b"http://ns.adobe.com/xmp/extension/\x00"
    + GUID.encode()
    + struct.pack(">II", len(EXTENDED_XMP), 0)
    + EXTENDED_XMP
)
MAIN_XMP = (
    '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">'
    '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
    'rdf:about="" xmlns:xmpNote="http://ns.adobe.com/xmp/note/" '
    f'xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmpNote:HasExtendedXMP="{GUID}" xmp:Rating="3"/>'
    '</rdf:RDF></x:xmpmeta><?xpacket end="w"?>'
).encode()
FLASHPIX = b"FPXR\x00\x00\x01\x00\x01" + b"\x00" * 16  # version 0, contents list, one entry
CAMERA_EXIF = piexif.dump(
    {
        "0th": {piexif.ImageIFD.Make: b"Canon", piexif.ImageIFD.Model: b"EOS R5"},
        "Exif": {
            piexif.ExifIFD.ExposureTime: (1, 250),
            piexif.ExifIFD.FNumber: (28, 10),
            piexif.ExifIFD.ISOSpeedRatings: 200,
        },
    }
)
OTHER_TOOLS = [
    jpeg_segments.build(0xE1, XMP_EXTENSION),
    jpeg_segments.build(0xE2, FLASHPIX),
    jpeg_segments.build(0xED, PHOTOSHOP),
]


def photoshop_jpeg(path: Path) -> Path:
    buf = io.BytesIO()
    art().save(buf, "JPEG", quality=90, icc_profile=ICC, exif=CAMERA_EXIF)
    main_xmp = jpeg_segments.build(0xE1, b"http://ns.adobe.com/xap/1.0/\x00" + MAIN_XMP)
    path.write_bytes(jpeg_segments.insert(buf.getvalue(), [main_xmp, *OTHER_TOOLS]))
    return path


def segment_names(path: Path) -> list[str]:
    return [s.name for s in jpeg_segments.segments(path.read_bytes()) if s.is_app]


@pytest.mark.parametrize("watermark", [True, False], ids=["re-encoded", "pixels-kept"])
def test_other_tools_jpeg_segments_survive_byte_for_byte(tmp_path: Path, watermark: bool) -> None:
    import pyexiv2

    import guard

    src = photoshop_jpeg(tmp_path / "photo.jpg")
    published = sign(src, watermark=watermark)
    assert (published.watermark_id is not None) is watermark
    raws = [s.raw for s in jpeg_segments.segments(published.path.read_bytes())]
    for raw in OTHER_TOOLS:
        assert raws.count(raw) == 1, jpeg_segments.name(raw)
    names = segment_names(published.path)
    for own in ("APP1 Exif", "APP2 ICC_PROFILE", "APP1 http://ns.adobe.com/xap/1.0/"):
        assert names.count(own) == 1, (own, names)  # never duplicated
    with pyexiv2.Image(str(published.path)) as img:
        iptc, xmp = img.read_iptc(), img.read_raw_xmp()
    assert iptc["Iptc.Application2.ObjectName"] == "Leuchtturm"
    assert iptc["Iptc.Application2.Byline"] == ["Jürgen Fotograf"]
    assert iptc["Iptc.Application2.Keywords"] == ["lighthouse", "dusk"]
    assert GUID in xmp  # the main packet still names its extension
    with Image.open(published.path) as im:
        assert im.info["icc_profile"] == ICC
        assert piexif.load(im.info["exif"])["Exif"][piexif.ExifIFD.FNumber] == (28, 10)
    assert guard.verify(published.path, watermark=False).ok  # inside the signed bytes


def test_an_mpo_keeps_its_first_picture_and_says_what_it_drops(tmp_path: Path) -> None:
    src = tmp_path / "stereo.jpg"
    art(seed=1).save(src, "MPO", save_all=True, append_images=[art(seed=2)])
    assert "APP2 MPF" in segment_names(src)
    published = sign(src)
    assert "APP2 MPF" not in segment_names(published.path)
    assert any("APP2 MPF" in n and "after this one" in n for n in published.notes), published.notes
    with Image.open(published.path) as im:
        assert im.format == "JPEG" and getattr(im, "n_frames", 1) == 1


def test_segments_a_png_cannot_hold_are_named_in_a_note(tmp_path: Path) -> None:
    published = sign(photoshop_jpeg(tmp_path / "photo.jpg"), tmp_path / "photo.png")
    [note] = [n for n in published.notes if n.startswith("JPEG segments")]
    assert "APP13 Photoshop 3.0" in note and "APP2 FPXR" in note and "PNG" in note


# ---- a camera TIFF -------------------------------------------------------------------------------
TYPES = {"BYTE": 1, "ASCII": 2, "SHORT": 3, "LONG": 4, "RATIONAL": 5, "UNDEFINED": 7}


def _entry_value(kind: str, value) -> tuple[int, bytes]:
    if kind in ("ASCII", "UNDEFINED"):
        raw = value + (b"\x00" if kind == "ASCII" else b"")
        return len(raw), raw
    if kind == "RATIONAL":
        return len(value), b"".join(struct.pack("<II", *v) for v in value)
    values = value if isinstance(value, list) else [value]
    fmt = {"BYTE": "B", "SHORT": "H", "LONG": "I"}[kind]
    return len(values), b"".join(struct.pack("<" + fmt, v) for v in values)


def _ifd(entries: dict, at: int) -> bytes:
    """One IFD at file offset `at`, values that do not fit an entry placed right after it."""
    size = 2 + 12 * len(entries) + 4
    head, extra = bytearray(struct.pack("<H", len(entries))), bytearray()
    for tag in sorted(entries):
        kind, value = entries[tag]
        count, raw = _entry_value(kind, value)
        if len(raw) <= 4:
            head += struct.pack("<HHI", tag, TYPES[kind], count) + raw.ljust(4, b"\x00")
        else:
            head += struct.pack("<HHII", tag, TYPES[kind], count, at + size + len(extra))
            extra += raw + b"\x00" * (len(raw) & 1)
    return bytes(head + struct.pack("<I", 0) + extra)


WEBUI_COMMENT = piexif.helper.UserComment.dump("a lighthouse at dusk ✓", encoding="unicode")
CAMERA_IFD0 = {
    271: ("ASCII", b"Canon"),
    272: ("ASCII", b"EOS R5"),
    274: ("SHORT", 1),
    305: ("ASCII", b"Firmware 1.8.1"),
}
CAMERA_SUB_IFD = {
    33434: ("RATIONAL", [(1, 250)]),
    33437: ("RATIONAL", [(28, 10)]),
    34855: ("SHORT", 200),
    36867: ("ASCII", b"2024:05:01 18:30:00"),
    37510: ("UNDEFINED", WEBUI_COMMENT),
    42036: ("ASCII", b"RF24-70mm F2.8 L IS USM"),
}
CAMERA_GPS = {
    0: ("BYTE", [2, 3, 0, 0]),
    1: ("ASCII", b"N"),
    2: ("RATIONAL", [(52, 1), (31, 1), (0, 1)]),
}


def camera_tiff(path: Path, image: Image.Image) -> Path:
    pixels = np.asarray(image.convert("RGB")).tobytes()
    w, h = image.size

    def layout(exif_at: int, gps_at: int, strip_at: int) -> tuple[bytes, bytes, bytes]:
        ifd0 = {
            **CAMERA_IFD0,
            256: ("LONG", w),
            257: ("LONG", h),
            258: ("SHORT", [8, 8, 8]),
            259: ("SHORT", 1),
            262: ("SHORT", 2),
            273: ("LONG", strip_at),
            277: ("SHORT", 3),
            278: ("LONG", h),
            279: ("LONG", len(pixels)),
            34665: ("LONG", exif_at),
            34853: ("LONG", gps_at),
        }
        a = _ifd(ifd0, 8)
        b = _ifd(CAMERA_SUB_IFD, 8 + len(a))
        return a, b, _ifd(CAMERA_GPS, 8 + len(a) + len(b))

    a, b, c = layout(0, 0, 0)  # sizes first, then the real offsets
    a, b, c = layout(8 + len(a), 8 + len(a) + len(b), 8 + len(a) + len(b) + len(c))
    path.write_bytes(b"II*\x00" + struct.pack("<I", 8) + a + b + c + pixels)
    return path


def test_a_re_encoded_tiff_keeps_its_exif_and_gps_sub_directories(tmp_path: Path) -> None:
    src = camera_tiff(tmp_path / "camera.tif", art())
    before = piexif.load(str(src))
    assert before["Exif"][piexif.ExifIFD.UserComment] == WEBUI_COMMENT  # laid out as intended
    published = sign(src)
    assert published.watermark_id and not published.notes
    after = piexif.load(str(published.path))
    assert after["Exif"] == before["Exif"]  # every value as written: 28/10, UserComment bytes
    assert after["GPS"] == before["GPS"]
    assert {k: after["0th"][k] for k in (271, 272, 274, 305)} == {
        k: before["0th"][k] for k in (271, 272, 274, 305)
    }
    with Image.open(published.path) as im:
        assert im.size == (320, 256)
        assert np.abs(np.asarray(im, np.int16) - np.asarray(art(), np.int16)).max() <= 8


def test_a_tiffs_exif_goes_into_a_jpeg_as_written(tmp_path: Path) -> None:
    """Pillow's rebuilt copy reduced FNumber to 14/5 and retyped UserComment to int8u."""
    published = sign(camera_tiff(tmp_path / "camera.tif", art()), tmp_path / "camera.jpg")
    exif = piexif.load(str(published.path))["Exif"]
    assert exif[piexif.ExifIFD.FNumber] == (28, 10)
    assert exif[piexif.ExifIFD.UserComment] == WEBUI_COMMENT


def test_guard_writes_its_parameters_into_a_tiff(tmp_path: Path) -> None:
    """A generation saved as TIFF (the pipeline hook, generate): Pillow's TIFF writer refused the
    EXIF pointer (RuntimeError) before; the text is now in EXIF UserComment, readable by guard."""
    from guard.provenance.spec import ManifestSpec
    from guard.webui.infotext import read_file

    text = "a lighthouse at dusk\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 5, Size: 320x256"
    spec = ManifestSpec(action="created", source="ai", text={"parameters": text})
    published = publish(art(), tmp_path / "gen.tif", spec)
    info, where = read_file(published.path)
    assert (
        where == "EXIF UserComment" and info is not None and info.prompt == "a lighthouse at dusk"
    )
