"""The local identity's files: a root CA and an end-entity signing certificate, created on
first use under GUARD_HOME/identity (keys 0600 in a 0700 folder). guard.identity.signer.Identity.default
loads them; nothing here signs.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from pathlib import Path

from guard import config
from guard.errors import IdentityError


def init_local(
    *,
    name: str | None = None,
    org: str | None = None,
    force: bool = False,
    tsa_url: str | None = None,
    quiet: bool = False,
) -> Path:
    """Create a root CA and an end-entity signing certificate under GUARD_HOME/identity.

    The CA is what verifiers trust (`guard keys export-ca`); the end-entity certificate is what
    signs. Re-running with force=True replaces both, which makes earlier signatures 'valid' but
    no longer 'trusted' for anyone who trusts only the new CA.
    """
    import getpass

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    folder = config.identity_dir()
    if (folder / "signer.pem").exists() and not force:
        raise IdentityError(
            f"an identity already exists in {folder}; pass --force to replace it "
            "(earlier signatures stay valid but are no longer trusted under the new CA)"
        )
    name = name or getpass.getuser() or "guard user"
    org = org or "guard local identity"
    now = dt.datetime.now(dt.timezone.utc)

    def subject(cn: str) -> x509.Name:
        return x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, cn),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
            ]
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = subject(f"{name} (guard root CA)")
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ee_key = ec.generate_private_key(ec.SECP256R1())
    ee = (
        x509.CertificateBuilder()
        .subject_name(subject(name))
        .issuer_name(ca_name)
        .public_key(ee_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=825))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(digital_signature=True), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ee_key.public_key()), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )

    def pem(cert: x509.Certificate) -> bytes:
        return cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    _write_private(folder / "ca.key", key_pem(ca_key))
    _write_private(folder / "signer.key", key_pem(ee_key))
    _write_public(folder / "ca.pem", pem(ca))
    _write_public(folder / "signer.pem", pem(ee) + pem(ca))
    _write_public(
        folder / "identity.json",
        json.dumps({"name": name, "org": org, "tsa_url": tsa_url}, indent=2).encode(),
    )
    if not quiet:
        print(
            f"guard: created a signing identity for '{name}' ({org}) in {folder}.\n"
            "guard: share its CA with people who verify your images: guard keys export-ca -o my-ca.pem",
            file=sys.stderr,
        )
    return folder


def local_ca_pem() -> bytes | None:
    path = config.identity_dir() / "ca.pem"
    return path.read_bytes() if path.exists() else None


def _key_usage(*, digital_signature: bool = False, cert_sign: bool = False):
    from cryptography import x509

    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _write_private(path: Path, data: bytes) -> None:
    """Created with mode 0600 from the first byte, so the key is never readable by others."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def _write_public(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def read_settings(folder: Path) -> dict[str, str | None]:
    try:
        return json.loads((folder / "identity.json").read_text())
    except (OSError, ValueError):
        return {}
