"""Other tools' metadata survives signing, byte for byte, in the form those tools read.

The input files are laid out exactly as the tools write them:
- Stable Diffusion web UI (modules/images.py, save_image_with_geninfo): PNG gets a `parameters`
  text chunk through Pillow's PngInfo.add_text; JPEG and WebP are saved, then piexif inserts an
  EXIF block whose UserComment is piexif.helper.UserComment.dump(text, encoding="unicode").
- ComfyUI (nodes.py, SaveImage): PngInfo.add_text("prompt", json) and add_text("workflow", json),
  saved with compress_level=4.
web UI's own reading logic (read_info_from_image) is mirrored in `webui_geninfo`.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import piexif
import piexif.helper
import pytest
from PIL import Image, ImageCms, PngImagePlugin

from guard.provenance.spec import ManifestSpec
from guard.publishing import publish, sign
from tests.helpers import art

INFOTEXT = (
    "a lighthouse at dusk, <lora:film:0.6>, ünïcödé ✓\n"
    "Negative prompt: blurry, lowres\n"
    'Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1234, Size: 320x256, Model hash: 6ce0161689, Model: v1-5, Lora hashes: "film: 0123456789ab", Version: v1.10.1'
)
COMFY_PROMPT = {"3": {"class_type": "KSampler", "inputs": {"seed": 5, "steps": 20, "cfg": 8.0}}}
COMFY_WORKFLOW = {"last_node_id": 9, "nodes": [{"id": 3, "type": "KSampler"}], "version": 0.4}
XMP_IN = (
    '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
    'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    '<rdf:Description rdf:about="" xmlns:xmp="http://ns.adobe.com/xap/1.0/" '
    'xmp:Rating="4" xmp:Label="keeper"/></rdf:RDF></x:xmpmeta>'
)
ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


# ---- files as the tools write them --------------------------------------------------------------
def webui_png(path: Path, info: str = INFOTEXT) -> Path:
    meta = PngImagePlugin.PngInfo()
    meta.add_text("parameters", info)
    art().save(path, format="PNG", pnginfo=meta)
    return path


def webui_exif(info: str = INFOTEXT) -> bytes:
    return piexif.dump(
        {"Exif": {piexif.ExifIFD.UserComment: piexif.helper.UserComment.dump(info, "unicode")}}
    )


def webui_lossy(path: Path, fmt: str, info: str = INFOTEXT) -> Path:
    art().save(path, format=fmt, quality=80, **({"lossless": False} if fmt == "WEBP" else {}))
    piexif.insert(webui_exif(info), str(path))
    return path


def comfy_png(path: Path) -> Path:
    meta = PngImagePlugin.PngInfo()
    meta.add_text("prompt", json.dumps(COMFY_PROMPT))
    meta.add_text("workflow", json.dumps(COMFY_WORKFLOW))
    art().save(path, pnginfo=meta, compress_level=4)
    return path


def rich_png(path: Path) -> Path:
    """Every kind of text chunk, with tags, plus ICC, EXIF and XMP."""
    meta = PngImagePlugin.PngInfo()
    meta.add_text("Title", "plain tEXt")
    meta.add_text("Comment", "compressed zTXt " * 20, zip=True)
    meta.add_itxt("Description", "iTXt with tags ✓", lang="en-GB", tkey="Beschreibung")
    meta.add_itxt("Author", "compressed iTXt ✓ " * 10, lang="fr", tkey="Auteur", zip=True)
    meta.add_itxt("XML:com.adobe.xmp", XMP_IN)
    exif = Image.Exif()
    exif[0x010E] = "EXIF ImageDescription"
    art().save(path, pnginfo=meta, icc_profile=ICC, exif=exif.tobytes())
    return path


# ---- how the tools read them --------------------------------------------------------------------
def webui_geninfo(path: Path) -> str | None:
    """web UI's read_info_from_image: PNG `parameters`, overridden by the EXIF UserComment."""
    with Image.open(path) as im:
        items = dict(im.info)
    geninfo = items.pop("parameters", None)
    if "exif" in items:
        exif = piexif.load(items["exif"])
        comment = (exif or {}).get("Exif", {}).get(piexif.ExifIFD.UserComment, b"")
        try:
            comment = piexif.helper.UserComment.load(comment)
        except ValueError:
            comment = comment.decode("utf8", errors="ignore")
        if comment:
            geninfo = comment
    return geninfo


def user_comment(path: Path) -> bytes:
    with Image.open(path) as im:
        raw = im.info.get("exif") or im.getexif().tobytes()
    value = piexif.load(raw)["Exif"][piexif.ExifIFD.UserComment]
    assert isinstance(value, bytes), f"UserComment is not UNDEFINED-typed: {value!r:.60}"
    return value


def png_text_chunks(data: bytes) -> list[bytes]:
    out, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        if kind in (b"tEXt", b"zTXt", b"iTXt") and not data[pos + 8 :].startswith(b"XML:com"):
            out.append(data[pos : pos + 12 + length])
        pos += 12 + length
    return out


def xmp_values(path: Path) -> dict:
    import pyexiv2

    with pyexiv2.Image(str(path)) as img:
        return img.read_xmp()


# ---- tests --------------------------------------------------------------------------------------
@pytest.mark.parametrize("watermark", [True, False])
def test_web_ui_png_keeps_its_parameters(tmp_path: Path, watermark: bool) -> None:
    src = webui_png(tmp_path / "00001-1234.png")
    out = sign(src, watermark=watermark).path
    assert png_text_chunks(out.read_bytes()) == png_text_chunks(src.read_bytes())
    assert webui_geninfo(out) == INFOTEXT


@pytest.mark.parametrize("watermark", [True, False])
def test_comfyui_png_keeps_prompt_and_workflow(tmp_path: Path, watermark: bool) -> None:
    src = comfy_png(tmp_path / "ComfyUI_00001_.png")
    out = sign(src, watermark=watermark).path
    assert png_text_chunks(out.read_bytes()) == png_text_chunks(src.read_bytes())
    with Image.open(out) as im:
        assert json.loads(im.text["prompt"]) == COMFY_PROMPT
        assert json.loads(im.text["workflow"]) == COMFY_WORKFLOW


def test_every_png_text_chunk_icc_exif_and_xmp_survive(tmp_path: Path) -> None:
    src = rich_png(tmp_path / "rich.png")
    out = sign(src).path
    before, after = png_text_chunks(src.read_bytes()), png_text_chunks(out.read_bytes())
    assert len(before) == 4 and after == before  # tEXt, zTXt, iTXt with lang/tkey, zipped iTXt
    with Image.open(src) as a, Image.open(out) as b:
        assert b.info["icc_profile"] == a.info["icc_profile"] == ICC
        assert b.info["exif"] == a.info["exif"]
        assert b.text["Description"].lang == "en-GB"
        assert b.text["Description"].tkey == "Beschreibung"
    xmp = xmp_values(out)
    assert xmp["Xmp.xmp.Rating"] == "4" and xmp["Xmp.xmp.Label"] == "keeper"
    assert "Xmp.iptcExt.DigitalSourceType" in xmp


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
@pytest.mark.parametrize("watermark", [True, False])
def test_web_ui_user_comment_stays_byte_identical(tmp_path: Path, fmt: str, watermark) -> None:
    src = webui_lossy(tmp_path / f"00001-1234.{fmt.lower()}", fmt)
    out = sign(src, watermark=watermark).path
    assert user_comment(out) == user_comment(src)
    assert webui_geninfo(out) == INFOTEXT


def test_jpeg_icc_xmp_and_comment_survive(tmp_path: Path) -> None:
    src = tmp_path / "photo.jpg"
    art().save(src, quality=90, icc_profile=ICC, comment=b"a JPEG COM segment")
    piexif.insert(webui_exif(), str(src))
    import pyexiv2

    with pyexiv2.Image(str(src)) as img:
        img.modify_raw_xmp(XMP_IN)
    with Image.open(src) as im:
        comment = im.info["comment"]  # as exiv2 left it: with a trailing NUL
    assert comment.startswith(b"a JPEG COM segment")
    out = sign(src).path
    with Image.open(out) as im:
        assert im.info["icc_profile"] == ICC
        assert im.info["comment"] == comment
    assert user_comment(out) == user_comment(src)
    assert xmp_values(out)["Xmp.xmp.Rating"] == "4"


def _exif_with_description() -> bytes:
    exif = piexif.load(webui_exif())
    exif["0th"][piexif.ImageIFD.ImageDescription] = b"described"
    return piexif.dump(exif)


def test_avif_keeps_exif_icc_and_xmp(tmp_path: Path) -> None:
    src = tmp_path / "pic.avif"
    art().save(src, exif=_exif_with_description(), icc_profile=ICC, xmp=XMP_IN.encode())
    out = sign(src).path
    assert user_comment(out) == user_comment(src)
    assert webui_geninfo(out) == INFOTEXT
    with Image.open(out) as im:
        assert im.info["icc_profile"] == ICC
        assert im.getexif()[0x010E] == "described"
        assert b'xmp:Rating="4"' in im.info["xmp"] or b"<xmp:Rating>4" in im.info["xmp"]


def test_tiff_keeps_ifd0_exif_icc_and_xmp(tmp_path: Path) -> None:
    """Pillow cannot write a TIFF's EXIF sub-directory; exiv2 places it (the UserComment too)."""
    import pyexiv2

    src = tmp_path / "pic.tif"
    art().save(src, exif=_exif_with_description(), icc_profile=ICC)
    with pyexiv2.Image(str(src)) as img:  # Pillow does not write XMP into a TIFF
        img.modify_raw_xmp(XMP_IN)
    assert xmp_values(src)["Xmp.xmp.Rating"] == "4"
    published = sign(src)  # crashed before: libtiff refused the EXIF pointer (RuntimeError)
    with Image.open(published.path) as im:
        assert im.info["icc_profile"] == ICC
        assert im.getexif()[0x010E] == "described"
        comment = im.getexif().get_ifd(0x8769)[piexif.ExifIFD.UserComment]
    with Image.open(src) as im:
        assert comment == im.getexif().get_ifd(0x8769)[piexif.ExifIFD.UserComment]
    assert xmp_values(published.path)["Xmp.xmp.Rating"] == "4"
    assert not published.notes, published.notes


@pytest.mark.parametrize("fmt", ["jpg", "webp", "avif"])
def test_guard_writes_parameters_in_web_ui_form(tmp_path: Path, fmt: str) -> None:
    """What guard itself writes (generate, the pipeline hook) is read by web UI's PNG Info."""
    spec = ManifestSpec(action="created", source="ai", text={"parameters": INFOTEXT})
    out = publish(art(), tmp_path / f"gen.{fmt}", spec).path
    assert user_comment(out) == piexif.helper.UserComment.dump(INFOTEXT, encoding="unicode")
    assert webui_geninfo(out) == INFOTEXT


def test_png_parameters_move_to_user_comment_when_the_format_changes(tmp_path: Path) -> None:
    src = webui_png(tmp_path / "a.png")
    out = sign(src, tmp_path / "a.jpg").path
    assert webui_geninfo(out) == INFOTEXT
    assert user_comment(out) == piexif.helper.UserComment.dump(INFOTEXT, encoding="unicode")


def test_chunks_a_jpeg_cannot_hold_are_named_in_a_note(tmp_path: Path) -> None:
    src = comfy_png(tmp_path / "c.png")
    published = sign(src, tmp_path / "c.jpg")
    assert any("prompt" in n and "workflow" in n for n in published.notes), published.notes


def test_exif_orientation_is_reset_and_nothing_else_changes(tmp_path: Path) -> None:
    exif = piexif.load(webui_exif())
    exif["0th"][piexif.ImageIFD.Orientation] = 6
    src = tmp_path / "rot.jpg"
    art().save(src, quality=90)
    piexif.insert(piexif.dump(exif), str(src))
    out = sign(src).path
    got = piexif.load(str(out))
    assert got["0th"][piexif.ImageIFD.Orientation] == 1
    assert user_comment(out) == user_comment(src)
    with Image.open(out) as im:
        assert im.size == (256, 320)


@pytest.mark.parametrize("kind", ["comfy-png", "webui-jpeg", "rich-png"])
def test_watermark_embed_keeps_other_tools_metadata(tmp_path: Path, kind: str) -> None:
    from click.testing import CliRunner

    from guard.cli import main

    src = {
        "comfy-png": lambda: comfy_png(tmp_path / "c.png"),
        "webui-jpeg": lambda: webui_lossy(tmp_path / "w.jpg", "JPEG"),
        "rich-png": lambda: rich_png(tmp_path / "r.png"),
    }[kind]()
    out = tmp_path / f"marked{src.suffix}"
    result = CliRunner().invoke(main, ["watermark", "embed", str(src), "-o", str(out)])
    assert result.exit_code == 0, result.output
    if src.suffix == ".png":
        assert png_text_chunks(out.read_bytes()) == png_text_chunks(src.read_bytes())
    else:
        assert user_comment(out) == user_comment(src)
        assert webui_geninfo(out) == INFOTEXT
    if kind == "rich-png":
        assert xmp_values(out)["Xmp.xmp.Rating"] == "4"
