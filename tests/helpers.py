"""Small builders shared by the tests: images, certificate chains, byte-level edits."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def art(width: int = 320, height: int = 256, mode: str = "RGB", seed: int = 0) -> Image.Image:
    """A textured, deterministic test picture (smooth gradients + detail, like real art)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    r = 128 + 100 * np.sin(x / 23.0) * np.cos(y / 31.0)
    g = 128 + 90 * np.sin((x + y) / 17.0)
    b = 255 * x / max(width - 1, 1)
    rgb = np.stack([r, g, b], -1) + rng.normal(0, 6, (height, width, 3))
    im = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB")
    if mode == "RGBA":
        alpha = (255 * (x / max(width - 1, 1))).astype(np.uint8)
        im.putalpha(Image.fromarray(alpha, "L"))
    elif mode != "RGB":
        im = im.convert(mode)
    return im


def write(im: Image.Image, path: Path, fmt: str | None = None, **params: object) -> Path:
    im.save(path, fmt, **params)
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_chain(
    folder: Path, *, name: str = "Org Signer", passphrase: bytes | None = None
) -> tuple[Path, Path, Path]:
    """An organisation's own CA + end-entity chain (cert chain, key, CA) — not guard's local one."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def subject(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    now = dt.datetime.now(dt.UTC)
    usage = dict(
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        encipher_only=False,
        decipher_only=False,
    )
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(subject(f"{name} CA"))
        .issuer_name(subject(f"{name} CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=False, key_cert_sign=True, crl_sign=True, **usage),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    ee = (
        x509.CertificateBuilder()
        .subject_name(subject(name))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False, **usage),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    enc = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    chain, key_path, ca_path = folder / "chain.pem", folder / "signer.key", folder / "ca.pem"
    chain.write_bytes(ee.public_bytes(pem) + ca.public_bytes(pem))
    key_path.write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8, enc))
    ca_path.write_bytes(ca.public_bytes(pem))
    return chain, key_path, ca_path


def flip_png_pixel(data: bytes) -> bytes:
    """Change one pixel's value inside IDAT, keeping every other chunk (the manifest too)."""
    chunks, pos = [], 8
    while pos < len(data):
        length = struct.unpack(">I", data[pos : pos + 4])[0]
        kind = data[pos + 4 : pos + 8]
        chunks.append((kind, data[pos + 8 : pos + 8 + length]))
        pos += 12 + length
    idat = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    raw = bytearray(idat)
    raw[-1] ^= 0x01  # last channel of the last pixel: no later byte is predicted from it
    new_idat = zlib.compress(bytes(raw))
    out, done = [data[:8]], False
    for kind, body in chunks:
        if kind == b"IDAT":
            if done:
                continue
            body, done = new_idat, True
        out.append(
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )
    return b"".join(out)


def png_bomb() -> bytes:
    """A tiny PNG whose header declares 40000x40000 pixels."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", 40000, 40000, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def png_bytes(im: Image.Image, **params: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "PNG", **params)
    return buf.getvalue()


def scan_bomb(repeats: int, size: int = 1024) -> bytes:
    """A progressive JPEG whose smallest scan (16 bytes on a flat picture) is repeated: libjpeg
    decodes each repeat over the whole picture (8,000 repeats at 4096 px: 227 KB, 3 s here)."""
    import re

    b = io.BytesIO()
    Image.new("RGB", (size, size), (120, 130, 140)).save(b, "JPEG", quality=90, progressive=True)
    data = b.getvalue()
    scans, pos = [], 2
    while data[pos + 1] != 0xD9:
        (length,) = struct.unpack_from(">H", data, pos + 2)
        if data[pos + 1] == 0xDA:
            end = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]").search(data, pos + 2 + length)
            assert end is not None
            scans.append(data[pos : end.start()])
            pos = end.start()
        else:
            pos += 2 + length
    eoi = data.rindex(b"\xff\xd9")
    return data[:eoi] + min(scans, key=len) * repeats + data[eoi:]


def webui_read_info(image: Image.Image) -> str | None:
    """Stable Diffusion web UI's modules/images.py read_info_from_image, for its standard
    metadata (the PNG `parameters` text, EXIF UserComment): how web UI's own PNG Info reads a file."""
    import piexif
    import piexif.helper

    items = (image.info or {}).copy()
    geninfo = items.pop("parameters", None)
    if "exif" in items:
        try:
            exif = piexif.load(items["exif"])
        except OSError:
            exif = None
        comment = (exif or {}).get("Exif", {}).get(piexif.ExifIFD.UserComment, b"")
        try:
            comment = piexif.helper.UserComment.load(comment)
        except ValueError:
            comment = comment.decode("utf8", errors="ignore")
        if comment:
            geninfo = comment
    return geninfo
