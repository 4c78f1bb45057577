"""verify under hostile input: every file gets the right verdict for the right reason (issue 9)."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import pytest
from click.testing import CliRunner

import guard
from guard import imageio
from guard.cli import main
from guard.errors import ImageInputError
from guard.verdict import verify_bytes
from tests.helpers import art, write


def run(*args: str | Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def chunks(data: bytes) -> list[tuple[bytes, int, int]]:
    """(type, offset of the length field, body length) of every PNG chunk."""
    out, pos = [], 8
    while pos + 8 <= len(data):
        length = struct.unpack(">I", data[pos : pos + 4])[0]
        out.append((data[pos + 4 : pos + 8], pos, length))
        pos += 12 + length
    return out


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def signed(tmp_path: Path, fmt: str = "PNG", *, watermark: bool = False, **kw) -> Path:
    ext = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp"}[fmt]
    src = write(art(), tmp_path / f"art{ext}", fmt)
    return guard.sign(src, watermark=watermark, **kw).path


def codes(v: guard.Verdict) -> list[str]:
    return [f.code for f in v.c2pa.failures]


# -- the bytes-in API ------------------------------------------------------------------------------


def test_verify_bytes_gives_the_same_verdict_as_verify(tmp_path: Path) -> None:
    path = signed(tmp_path, author="Ada")
    from_path = guard.verify(path, watermark=False)
    from_bytes = verify_bytes(path.read_bytes(), name="upload.png", watermark=False)
    assert from_bytes.state == from_path.state == "trusted"
    assert from_bytes.file == "upload.png"
    assert from_bytes.sha256 == from_path.sha256
    assert from_bytes.c2pa.author == "Ada"
    assert {**from_bytes.to_dict(), "file": None} == {**from_path.to_dict(), "file": None}


def test_verify_bytes_takes_the_sidecar_as_bytes(tmp_path: Path) -> None:
    published = guard.sign(write(art(), tmp_path / "a.png"), watermark=False, sidecar=True)
    data, store = published.path.read_bytes(), published.sidecar_path.read_bytes()
    assert verify_bytes(data, name="a.png", watermark=False).state == "absent"
    v = verify_bytes(data, name="a.png", sidecar=store, watermark=False)
    assert v.state == "trusted" and v.c2pa.sidecar


def test_verify_bytes_refuses_what_is_not_an_image() -> None:
    with pytest.raises(ImageInputError, match=r"upload\.bin"):
        verify_bytes(b"hello, I am text\n" * 10, name="upload.bin")
    with pytest.raises(ImageInputError, match="empty"):
        verify_bytes(b"", name="empty.png")


# -- 1. a tampered file whose pixels no longer decode ----------------------------------------------


def idat_byte_flipped(data: bytes) -> bytes:
    """Flip one byte in the middle of the first IDAT's deflate stream (chunk CRC left stale)."""
    _, pos, length = next(c for c in chunks(data) if c[0] == b"IDAT")
    out = bytearray(data)
    out[pos + 8 + length // 2] ^= 0xFF
    return bytes(out)


def test_tampered_png_that_no_longer_decodes_is_invalid_not_an_input_error(
    tmp_path: Path,
) -> None:
    tampered = tmp_path / "tampered.png"
    tampered.write_bytes(idat_byte_flipped(signed(tmp_path, watermark=True).read_bytes()))
    with pytest.raises(ImageInputError):
        imageio.decode(tampered.read_bytes())  # the premise: its pixels are broken

    v = guard.verify(tampered)
    assert v.state == "invalid"
    assert "assertion.dataHash.mismatch" in codes(v)
    assert v.watermark is not None and not v.watermark.found
    assert v.watermark.status == "not_checked"
    assert "could not be decoded" in (v.watermark.reason or "")
    assert any("could not be decoded" in n for n in v.notes)
    text = "\n".join(v.summary())
    assert "INVALID" in text and "pixels or bytes changed after signing" in text

    code, out, err = run("verify", tampered, "--json")
    assert code == 1, err  # judged by its manifest, not refused as an input error
    [report] = json.loads(out)
    assert report["c2pa"]["state"] == "invalid"
    assert report["watermark"]["status"] == "not_checked"
    assert report["notes"]


# -- 2. a damaged manifest is not an absent one ----------------------------------------------------


def renamed_png_chunk(data: bytes, old: bytes, new: bytes) -> bytes:
    """Rename one chunk (CRC recomputed, so only its type differs): decoders skip it."""
    _, pos, length = next(c for c in chunks(data) if c[0] == old)
    body = data[pos + 8 : pos + 8 + length]
    return data[:pos] + png_chunk(new, body) + data[pos + 12 + length :]


def renamed_riff_chunk(data: bytes, old: bytes, new: bytes) -> bytes:
    pos = data.index(old, 12)
    return data[:pos] + new + data[pos + 4 :]


def renamed_jpeg_segment(data: bytes, old: int, new: int) -> bytes:
    """Turn every APPn segment `old` into `new` (lengths unchanged)."""
    out, pos = bytearray(data), 2
    while pos + 4 <= len(out) and out[pos] == 0xFF and out[pos + 1] != 0xDA:
        if out[pos + 1] == old:
            out[pos + 1] = new
        pos += 2 + int.from_bytes(out[pos + 2 : pos + 4], "big")
    return bytes(out)


@pytest.mark.parametrize(
    ("fmt", "damage"),
    [
        ("PNG", lambda d: renamed_png_chunk(d, b"caBX", b"caBY")),
        ("WEBP", lambda d: renamed_riff_chunk(d, b"C2PA", b"C2PB")),
        ("JPEG", lambda d: renamed_jpeg_segment(d, 0xEB, 0xEC)),  # APP11 -> APP12
    ],
)
def test_credentials_moved_out_of_place_are_invalid_not_absent(
    tmp_path: Path, fmt: str, damage
) -> None:
    path = signed(tmp_path, fmt)
    moved = tmp_path / f"moved{path.suffix}"
    moved.write_bytes(damage(path.read_bytes()))
    v = guard.verify(moved)
    assert v.state == "invalid"
    assert codes(v) == ["guard.manifest.misplaced"]
    assert "ManifestNotFound" in v.c2pa.failures[0].explanation  # the SDK's own words
    assert v.watermark is not None and v.watermark.status != "not_checked"  # pixels still fine
    text = "\n".join(v.summary())
    assert "ABSENT" not in text and "stripped" not in text
    assert "not where its format keeps them" in text


def test_a_store_the_sdk_cannot_parse_is_invalid_with_its_reason(tmp_path: Path) -> None:
    data = bytearray(signed(tmp_path).read_bytes())
    _, pos, _ = next(c for c in chunks(bytes(data)) if c[0] == b"caBX")
    data[pos + 8 + 16] ^= 0xFF  # inside the JUMBF superbox header: the store no longer parses
    v = verify_bytes(bytes(data), name="broken.png", watermark=False)
    assert v.state == "invalid"
    assert codes(v) == ["guard.manifest.damaged"]
    assert v.c2pa.failures[0].explanation.startswith("Verify:")


def test_files_without_credentials_stay_absent_or_input_errors(tmp_path: Path) -> None:
    plain = write(art(), tmp_path / "plain.png")
    assert guard.verify(plain, watermark=False).state == "absent"
    cut = tmp_path / "cut.png"
    cut.write_bytes(plain.read_bytes()[:4000])  # no credentials, and not a whole image
    with pytest.raises(ImageInputError, match="truncated"):
        guard.verify(cut)
    with pytest.raises(ImageInputError, match="truncated"):
        guard.verify(cut, watermark=False)


# -- 3. any manifest shape -------------------------------------------------------------------------


def sign_raw(tmp_path: Path, name: str, mutate) -> Path:
    """Sign a manifest whose assertions guard's own builder would never write. The SDK's own
    check after signing is off, as an attacker's signer would have it."""
    import io

    import c2pa

    from guard.identity import Identity
    from guard.provenance import manifest as manifest_mod
    from guard.provenance.spec import ManifestSpec

    spec = ManifestSpec(source="ai", training="notAllowed", author="Ada")
    definition = manifest_mod.build(
        spec, title=name, mime="image/png", thumbnail=False, watermark_id="0011223344556677"
    )
    for assertion in definition["assertions"]:
        mutate(assertion)
    buf = io.BytesIO()
    art().save(buf, "PNG")
    settings = {"verify": {"verify_after_sign": False, "remote_manifest_fetch": False}}
    signer = Identity.default().c2pa_signer()
    out = io.BytesIO()
    with c2pa.Context.from_dict(settings) as ctx, c2pa.Builder(definition, context=ctx) as b:
        b.sign(signer, "image/png", io.BytesIO(buf.getvalue()), out)
    path = tmp_path / name
    path.write_bytes(out.getvalue())
    return path


def _entries_as_list(a: dict) -> None:
    if a["label"] == "cawg.training-mining":
        a["data"]["entries"] = [{"use": "notAllowed"}]


def _soft_binding_int(a: dict) -> None:
    if a["label"] == "c2pa.soft-binding":
        a["data"] = 7


def _author_nested_list(a: dict) -> None:
    if a["label"] == "stds.schema-org.CreativeWork":
        a["data"]["author"] = [["Ada"]]


@pytest.mark.parametrize(
    ("mutate", "where"),
    [
        (_entries_as_list, "cawg.training-mining entries is a list"),
        (_soft_binding_int, "c2pa.soft-binding is a number"),
        (_author_nested_list, "CreativeWork author is a list"),
    ],
)
def test_unexpected_assertion_shapes_are_a_failure_of_that_file(
    tmp_path: Path, mutate, where: str
) -> None:
    path = sign_raw(tmp_path, "odd.png", mutate)
    v = guard.verify(path, watermark=False)
    assert v.state == "invalid" and not v.ok
    shape = [f for f in v.c2pa.failures if f.code == "guard.assertion.shape"]
    assert shape and where in shape[0].explanation
    assert "guard.assertion.shape" in "\n".join(v.summary())


def test_a_folder_run_reports_every_file_when_one_has_an_odd_manifest(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    sign_raw(folder, "a-odd.png", _entries_as_list)
    write(art(), folder / "b-plain.png")
    guard.sign(write(art(seed=2), tmp_path / "c.png"), folder / "c-signed.png", watermark=False)
    code, out, err = run("verify", folder, "--json", "--no-watermark")
    assert code == 1, err
    states = {Path(r["file"]).name: r["c2pa"]["state"] for r in json.loads(out)}
    assert states == {"a-odd.png": "invalid", "b-plain.png": "absent", "c-signed.png": "trusted"}
