"""verify under hostile input: every file gets the right verdict for the right reason (issue 9)."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import pytest
from click.testing import CliRunner

import guard
from guard.cli import main
from guard.errors import ImageInputError
from guard.ledger.match import LedgerMatch
from guard.media import imageio
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


C2PA_RS = Path(__file__).parent / "fixtures" / "c2pa-rs"  # the SDK's own test images (README)


@pytest.mark.parametrize(
    ("name", "code", "words", "sdk_words"),
    [
        (
            "no_alg.jpg",
            "guard.manifest.unknownAlgorithm",
            "signed with an algorithm guard cannot check",
            "unknown algorithm",
        ),
        (
            "prerelease.jpg",
            "guard.manifest.prerelease",
            "made by a pre-release version of the standard",
            "prerelease content detected",
        ),
    ],
)
def test_a_store_the_sdk_will_not_check_says_why_not_misplaced(
    name: str, code: str, words: str, sdk_words: str
) -> None:
    """c2pa-rs refuses these two stores (UnknownAlgorithm, PrereleaseError); they are where JPEG
    keeps them, so the verdict names the SDK's reason, in plain words, not `misplaced`."""
    path = C2PA_RS / name
    v = guard.verify(path, watermark=False)
    assert v.state == "invalid"
    assert codes(v) == [code]
    assert words in v.c2pa.failures[0].meaning
    assert sdk_words in v.c2pa.failures[0].explanation  # the SDK's own words
    text = "\n".join(v.summary())
    assert words in text and "not where its format keeps them" not in text
    assert "could not be checked" in text.splitlines()[0]  # not "do not match this file"

    exit_code, out, err = run("verify", path, "--no-watermark")
    assert exit_code == 1, err
    assert code in out and words in out
    exit_code, out, _ = run("verify", path, "--no-watermark", "--json")
    [failure] = json.loads(out)[0]["c2pa"]["failures"]
    assert failure["code"] == code and words in failure["meaning"]


def jpeg_store(data: bytes) -> bytes:
    """A JPEG's C2PA store: its APP11 JUMBF segments joined. Each payload is "JP", the box
    instance (2 bytes), the sequence number (4), then the box, whose 8-byte header every segment
    after the first repeats."""
    from guard.media import jpeg_segments

    parts = [s.payload for s in jpeg_segments.segments(data) if s.payload[:2] == b"JP"]
    parts = [p for p in parts if p[2:4] == parts[0][2:4]]
    return parts[0][8:] + b"".join(p[16:] for p in parts[1:])


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("no_alg.jpg", "guard.manifest.unknownAlgorithm"),
        ("prerelease.jpg", "guard.manifest.prerelease"),
    ],
)
def test_a_stored_manifest_the_sdk_will_not_check_says_why(name: str, code: str) -> None:
    """A ledger record's bare store (read_store) gets the same reason as an embedded one."""
    from guard.provenance import c2pa_io

    store = jpeg_store((C2PA_RS / name).read_bytes())
    assert c2pa_io.STORE_UUID in store[:64]
    report = c2pa_io.read_store(store, trust_pem=None)
    assert report.state == "invalid" and report.detached
    assert [f.code for f in report.failures] == [code]


def test_every_guard_failure_code_is_documented() -> None:
    from guard.provenance.vocab import FAILURE_WORDS

    doc = (Path(__file__).parents[1] / "docs" / "verify-json.md").read_text()
    missing = [c for c in FAILURE_WORDS if c.startswith("guard.") and c not in doc]
    assert not missing, f"codes missing from docs/verify-json.md: {missing}"


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


# -- 4. big compressed text chunks -----------------------------------------------------------------


def with_big_text(data: bytes, kind: bytes, *, after_idat: bool = False) -> bytes:
    """A PNG with one `workflow` text chunk that inflates to 2 MB (Pillow stops at 1 MB)."""
    packed = zlib.compress(b'{"nodes": []}' + b" " * (2 * 2**20))
    body = (
        b"workflow\x00\x00" + packed
        if kind == b"zTXt"
        else b"workflow\x00\x01\x00\x00\x00" + packed
    )
    iend = len(data) - 12
    at = iend if after_idat else 33  # right after IHDR, or right before IEND
    return data[:at] + png_chunk(kind, body) + data[at:]


@pytest.mark.parametrize(("kind", "after"), [(b"zTXt", False), (b"zTXt", True), (b"iTXt", False)])
def test_an_oversized_text_chunk_is_a_clear_input_error(kind: bytes, after: bool) -> None:
    from tests.helpers import png_bytes

    data = with_big_text(png_bytes(art()), kind, after_idat=after)
    with pytest.raises(ImageInputError, match=r"text chunk 'workflow' expands to more than 1 MB"):
        imageio.decode(data, "big.png")


@pytest.mark.parametrize(
    "command", [("sign",), ("verify",), ("info",), ("watermark", "detect")], ids=str
)
def test_every_command_gives_one_line_for_an_oversized_text_chunk(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    from tests.helpers import png_bytes

    path = tmp_path / "big.png"
    path.write_bytes(with_big_text(png_bytes(art()), b"zTXt"))
    code, out, err = run(*command, path)
    assert code == 2, (out, err)
    [line] = err.strip().splitlines()
    assert line.startswith("guard: error:") and str(path) in line
    assert "text chunk 'workflow'" in line and "Traceback" not in err
    assert not list(tmp_path.glob("big.signed*"))


def test_protect_refuses_it_before_loading_any_model(tmp_path: Path) -> None:
    from tests.helpers import png_bytes

    path = tmp_path / "big.png"
    path.write_bytes(with_big_text(png_bytes(art()), b"iTXt"))
    with pytest.raises(ImageInputError, match="text chunk 'workflow'"):
        guard.protect_file(path, model=tmp_path / "no-such-model")


# -- 5. the pixel limit, and huge images decoded reduced -------------------------------------------


def declared_png(width: int, height: int) -> bytes:
    """A greyscale PNG declaring width x height whose one row of data ends the stream: cheap to
    build, and Pillow decodes it (the missing rows stay black)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(b"\x00" * (width + 1)))
        + png_chunk(b"IEND", b"")
    )


def test_the_documented_limit_is_the_real_one(monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)
    # 100 MP: over Pillow's warning level (89.5 MP), under guard's documented 179 MP
    assert imageio.decode(declared_png(10_000, 10_000), "wide.png").image.size == (10_000, 10_000)
    with pytest.raises(ImageInputError, match="over the 179 MP limit"):
        imageio.decode(declared_png(15_000, 13_000), "huge.png")  # 195 MP


def test_guard_max_pixels_raises_pillows_limit_too(monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)
    monkeypatch.setenv("GUARD_MAX_PIXELS", "200000000")
    assert imageio.decode(declared_png(15_000, 13_000), "huge.png").image.size == (15_000, 13_000)
    monkeypatch.setenv("GUARD_MAX_PIXELS", "50000000")
    with pytest.raises(ImageInputError, match="over the 50 MP limit"):
        imageio.decode(declared_png(10_000, 10_000), "wide.png")


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_large_images_can_be_decoded_reduced_for_analysis(fmt: str) -> None:
    import io

    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated by 90°
    buf = io.BytesIO()
    art(2000, 1500).save(buf, fmt, exif=exif.tobytes())
    full = imageio.decode(buf.getvalue())
    assert full.image.size == (1500, 2000) and full.reduced_from is None
    small = imageio.decode(buf.getvalue(), reduce_over=1_000_000, min_side=350)
    assert small.reduced_from == (2000, 1500)  # the file's own size
    assert small.image.size == (375, 500)  # factor 4, still upright, short side >= 350
    assert small.image.mode == "RGB"


@pytest.mark.slow
def test_verify_reduces_huge_images_and_still_finds_the_watermark(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from guard import verdict

    published = guard.sign(write(art(2048, 2048), tmp_path / "big.png"))
    monkeypatch.setattr(verdict, "FULL_DECODE_PIXELS", 1_000_000)  # 2048² is "huge" here
    v = guard.verify(published.path)
    assert v.state == "trusted"
    assert v.watermark is not None and v.watermark.found
    assert v.watermark.id == published.watermark_id
    assert v.ledger is not None and v.ledger.verified
    assert any("decoded reduced" in n and "third-party marks" in n for n in v.notes)


@pytest.mark.slow
def test_verifying_a_small_file_that_decodes_to_81_mp_stays_small_in_memory(
    tmp_path: Path,
) -> None:
    import subprocess
    import sys

    from PIL import Image

    path = tmp_path / "flat.jpg"
    Image.new("L", (9000, 9000), 128).save(path, "JPEG", quality=90)
    assert path.stat().st_size < 2**20  # a small file ...
    child = (
        "import sys, guard; v = guard.verify(sys.argv[1]); print(v.state);"
        "print(open('/proc/self/status').read().split('VmHWM:')[1].split()[0])"
    )
    out = subprocess.run(
        [sys.executable, "-c", child, str(path)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    ).stdout.split()
    assert out[0] == "absent"
    assert int(out[1]) < 400 * 1024  # ... that decodes to 81 MP: peak under 400 MB (was 2.4 GB)


# -- 6. the ledger match's own manifest ------------------------------------------------------------


def stripped_copy(path: Path, out: Path) -> Path:
    """The same pixels without any metadata: the watermark is all that is left."""
    from PIL import Image

    Image.open(path).convert("RGB").save(out, "PNG")
    return out


@pytest.mark.parametrize("sidecar", [False, True], ids=["embedded", "sidecar"])
def test_a_ledger_match_validates_its_stored_manifest_on_its_own(
    tmp_path: Path, sidecar: bool
) -> None:
    published = guard.sign(write(art(), tmp_path / "a.png"), author="Ada", sidecar=sidecar)
    for path in (published.path, stripped_copy(published.path, tmp_path / "bare.png")):
        v = guard.verify(path)
        m = v.ledger
        assert m is not None and m.manifest is not None
        assert m.manifest.state == "trusted", m.manifest.failures  # was: invalid, exclusion range
        assert m.manifest.detached and m.manifest.failures == []
        assert m.verified and m.problem is None
        assert m.signer == m.manifest.signer_name and m.signer
        assert m.author == "Ada" and m.training == "notAllowed"
        report = v.to_dict()["ledger"]
        assert report["verified"] is True and report["manifest"]["state"] == "trusted"
        assert report["manifest"]["detached"] is True


def _forge(tmp_path: Path, manifest: bytes | None, watermark_id: str):
    from guard.ledger import Ledger, Record

    forged = Ledger(tmp_path / "forged.sqlite3")
    forged.add(
        Record(
            watermark_id,
            signer="Adobe Inc.",
            manifest=manifest,
            summary={"training": "allowed", "author": "Adobe Inc."},
        )
    )
    return forged


def _store_for(
    watermark_id: str, identity, training: str = "allowed", fingerprint: bytes | None = None
) -> bytes:
    from guard.provenance import c2pa_io
    from guard.provenance import manifest as manifest_mod
    from guard.provenance.spec import ManifestSpec
    from tests.helpers import png_bytes

    spec = ManifestSpec(source="photo", training=training)
    definition = manifest_mod.build(
        spec,
        title="x.png",
        mime="image/png",
        thumbnail=False,
        watermark_id=watermark_id,
        fingerprint=fingerprint,
    )
    return c2pa_io.sign(definition, png_bytes(art(64, 64)), "image/png", identity)[1]


@pytest.mark.parametrize("case", ["no manifest", "another ID's manifest", "untrusted signer"])
def test_a_forged_ledger_record_is_shown_unverified_and_none_of_its_claims_used(
    tmp_path: Path, case: str
) -> None:
    from guard.identity import Identity
    from tests.helpers import make_chain

    published = guard.sign(write(art(), tmp_path / "a.png"), training="notAllowed")
    wid = published.watermark_id
    assert wid is not None
    if case == "no manifest":
        manifest = None
    elif case == "another ID's manifest":
        manifest = _store_for("00" * 8, Identity.default())  # trusted, but bound elsewhere
    else:
        chain, key, _ = make_chain(tmp_path, name="Adobe Inc.")  # anyone can name a CA so
        manifest = _store_for(wid, Identity.from_files(chain, key))
    bare = stripped_copy(published.path, tmp_path / "bare.png")
    with _forge(tmp_path, manifest, wid) as forged:
        v = guard.verify(bare, ledger=forged)
    assert v.state == "absent" and v.watermark is not None and v.watermark.found
    m = v.ledger
    assert m is not None and not m.verified and m.problem
    assert m.signer is None and m.training is None and m.author is None
    assert v.training is None  # "allowed" is never reported
    text = "\n".join(v.summary())
    assert "UNVERIFIED" in text and "Adobe" not in text and "training allowed" not in text
    report = v.to_dict()
    assert report["ledger"]["verified"] is False and report["ledger"]["signer"] is None
    assert report["training"] is None and report["ledger"]["training"] is None


def test_a_record_with_a_trusted_manifest_for_its_id_is_believed(tmp_path: Path) -> None:
    """The other side of the forgery test: a record passes on its manifest, not on its text."""
    from PIL import Image

    from guard.identity import Identity
    from guard.ledger import fingerprint

    published = guard.sign(write(art(), tmp_path / "a.png"), training="notAllowed")
    wid = published.watermark_id
    assert wid is not None
    with Image.open(published.path) as im:
        picture = fingerprint.compute(im)
    manifest = _store_for(wid, Identity.default(), training="constrained", fingerprint=picture)
    bare = stripped_copy(published.path, tmp_path / "bare.png")
    with _forge(tmp_path, manifest, wid) as ledger:
        v = guard.verify(bare, ledger=ledger)
    assert v.ledger is not None and v.ledger.verified and v.ledger.content_match is True
    assert v.ledger.training == v.training == "constrained"  # the manifest's word, not "allowed"
    assert v.ledger.signer != "Adobe Inc."
    # the same trusted record with no picture to compare: nothing says this file is its picture
    (tmp_path / "forged.sqlite3").unlink()
    manifest = _store_for(wid, Identity.default(), training="constrained")
    with _forge(tmp_path, manifest, wid) as ledger:
        v = guard.verify(bare, ledger=ledger)
    assert v.ledger is not None and v.ledger.verified and v.ledger.content_match is None
    assert v.training is None and v.ledger.training is None


# -- the typed public API (issue 12 part 1) --------------------------------------------------------


def test_detection_is_public_and_imported_only_when_used() -> None:
    import subprocess
    import sys

    child = (
        "import sys, guard\n"
        "assert 'guard.watermark' not in sys.modules\n"
        "from guard.watermark import Detection\n"
        "assert guard.Detection is Detection and guard.verify_bytes.__module__ == 'guard.verdict'\n"
    )
    subprocess.run([sys.executable, "-c", child], check=True, cwd=Path(__file__).parents[1])


def test_the_verdict_holds_typed_objects_and_serialises_them_only_in_to_dict(
    tmp_path: Path,
) -> None:
    published = guard.sign(write(art(), tmp_path / "a.png"))
    v = guard.verify(published.path)
    assert isinstance(v.watermark, guard.Detection)
    assert isinstance(v.ledger, LedgerMatch)
    d = v.to_dict()
    assert d["watermark"] == v.watermark.to_dict() and d["watermark"]["id"] == v.watermark.id
    assert d["third_party_marks"] == [] and d["notes"] == []
    assert json.loads(json.dumps(d)) == d


def test_every_json_field_is_documented(tmp_path: Path) -> None:
    """docs/verify-json.md is the schema scripts rely on: no field may appear undocumented."""
    published = guard.sign(write(art(), tmp_path / "a.png"), author="Ada")
    d = guard.verify(published.path).to_dict()
    doc = (Path(__file__).parents[1] / "docs" / "verify-json.md").read_text()
    parts = [d, d["c2pa"], d["xmp"], d["watermark"], d["ledger"], d["ledger"]["manifest"]]
    missing = {k for part in parts for k in part if f'"{k}"' not in doc}
    assert not missing, f"fields missing from docs/verify-json.md: {sorted(missing)}"


def _drop_xmp_chunk(data: bytes) -> bytes:
    """The PNG without its XMP iTXt chunk; the C2PA store stays (and no longer matches)."""
    import struct

    out, pos = [data[:8]], 8
    while pos < len(data):
        length = struct.unpack(">I", data[pos : pos + 4])[0]
        chunk = data[pos : pos + 12 + length]
        if not (chunk[4:8] == b"iTXt" and chunk[8:].startswith(b"XML:com.adobe.xmp")):
            out.append(chunk)
        pos += 12 + length
    return b"".join(out)


def test_an_invalid_manifest_states_nothing_about_this_file(tmp_path: Path) -> None:
    """A manifest that no longer matches the bytes speaks of the file as it was signed, not of
    this one: its source and training claims stay in the c2pa report, never at top level."""
    published = guard.sign(
        write(art(), tmp_path / "a.png"), source="ai", training="allowed", watermark=False
    )
    tampered = tmp_path / "tampered.png"
    tampered.write_bytes(_drop_xmp_chunk(published.path.read_bytes()))
    v = guard.verify(tampered)
    assert v.state == "invalid" and v.xmp.training is None
    assert v.c2pa.training == "allowed" and v.c2pa.digital_source_type  # reported, as history
    assert v.training is None and v.digital_source_type is None
    report = v.to_dict()
    assert report["training"] is None and report["digital_source_type"] is None
    assert "training: no statement" in "\n".join(v.summary())


@pytest.mark.parametrize("kind", ["pipe", "device"])
def test_a_pipe_or_device_named_like_an_image_is_an_input_error_not_a_hang(
    tmp_path: Path, kind: str
) -> None:
    """`guard verify *` in a folder from someone else: a named pipe called photo.jpg blocked
    verify forever (waiting for a writer), a link to /dev/zero read until memory ran out."""
    import os

    path = tmp_path / "photo.jpg"
    if kind == "pipe":
        os.mkfifo(path)
    else:
        os.symlink("/dev/zero", path)
    with pytest.raises(ImageInputError, match="not a regular file"):
        imageio.read_file(path)
    result = CliRunner().invoke(main, ["verify", str(path)])
    assert result.exit_code == 2 and "not a regular file" in result.output


# ---- bounded work per file -----------------------------------------------------------------
def test_a_jpeg_with_thousands_of_scans_is_refused_before_decoding(tmp_path):
    """Each scan of a progressive JPEG is a pass over the whole picture: 8,000 repeats of a
    16-byte scan kept libjpeg busy for 3 s, and a 32 MiB upload holds 2 million."""
    from PIL import Image

    from guard.media.jpeg_segments import count_scans
    from tests.helpers import scan_bomb

    bomb = tmp_path / "bomb.jpg"
    bomb.write_bytes(scan_bomb(5000))
    assert count_scans(bomb.read_bytes(), 10**6) == 5000 + 10
    assert count_scans(bomb.read_bytes(), imageio.MAX_JPEG_SCANS) == imageio.MAX_JPEG_SCANS + 1
    result = CliRunner().invoke(main, ["verify", str(bomb)])
    assert result.exit_code == 2 and "more than 100 scans" in result.stderr
    progressive = tmp_path / "fine.jpg"  # an ordinary progressive JPEG still decodes
    Image.open(bomb).convert("RGB").resize((256, 256)).save(progressive, progressive=True)
    assert count_scans(progressive.read_bytes(), 100) == 10
    assert imageio.load(progressive).image.size == (256, 256)


def test_scan_says_a_store_the_sdk_will_not_check_cannot_be_checked(tmp_path) -> None:
    import shutil

    fixtures = Path(__file__).parent / "fixtures" / "c2pa-rs"
    shutil.copy(fixtures / "prerelease.jpg", tmp_path)
    [row] = guard.scan([tmp_path / "prerelease.jpg"], workers=0, watermark=False)
    assert row.decision == "unverifiable"
    assert row.reasons[0].startswith("Content Credentials cannot be checked: ")
