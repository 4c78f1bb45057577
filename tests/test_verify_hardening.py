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
