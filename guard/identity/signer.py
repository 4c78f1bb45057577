"""Who signs: keys and certificates, turned into a C2PA signer. Nothing else.

Three sources, one type:
- a local identity created on first use (a root CA + an end-entity certificate, under GUARD_HOME;
  guard.identity.local_ca makes it);
- an organisation's own PEM chain and key (`--cert/--key`, passphrase from GUARD_KEY_PASSPHRASE);
- a callback (HSM/KMS): guard hands over the bytes to sign and never sees the key.
Keys are never printed, logged or put in a repr.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from guard import config
from guard.errors import IdentityError
from guard.identity.local_ca import init_local, read_settings

if TYPE_CHECKING:
    import c2pa

KEY_PASSPHRASE_ENV = "GUARD_KEY_PASSPHRASE"
ALGORITHMS = ("es256", "es384", "es512", "ps256", "ps384", "ps512", "ed25519")

SignCallback = Callable[[bytes], bytes]


@dataclass
class Identity:
    """A certificate chain (end-entity first) and a way to sign with its key."""

    chain_pem: bytes
    alg: str = "es256"
    tsa_url: str | None = None
    _key_pem: bytes | None = field(default=None, repr=False)
    _callback: SignCallback | None = field(default=None, repr=False)
    source: str = "local"  # 'local' | 'files' | 'callback'

    def __post_init__(self) -> None:
        if (self._key_pem is None) == (self._callback is None):
            raise IdentityError("an identity needs exactly one of a private key or a sign callback")
        if self.alg not in ALGORITHMS:
            raise IdentityError(f"unknown signing algorithm '{self.alg}'; use one of {ALGORITHMS}")
        if self.tsa_url and not self.tsa_url.startswith(("http://", "https://")):
            raise IdentityError(f"timestamp authority URL must be http(s): {self.tsa_url}")

    # -- constructors -------------------------------------------------------------------------

    @classmethod
    def from_files(
        cls,
        cert: str | os.PathLike[str],
        key: str | os.PathLike[str],
        *,
        passphrase: bytes | None = None,
        tsa_url: str | None = None,
    ) -> Identity:
        """An organisation's own chain + key. An encrypted key is opened with the passphrase
        (or GUARD_KEY_PASSPHRASE) in memory only; nothing decrypted is written to disk."""
        from cryptography.hazmat.primitives import serialization

        chain_pem = _read(cert, "certificate chain")
        key_bytes = _read(key, "private key")
        warn_if_exposed(Path(key))
        if passphrase is None and os.environ.get(KEY_PASSPHRASE_ENV):
            passphrase = os.environ[KEY_PASSPHRASE_ENV].encode()
        encrypted = _is_encrypted(key_bytes)
        if not encrypted and passphrase is not None:
            _warn(
                f"{key}: the private key is not encrypted, so the passphrase "
                f"({KEY_PASSPHRASE_ENV}) was not needed; keep the file private (chmod 600)"
            )
            passphrase = None
        if encrypted and passphrase is None:
            raise IdentityError(
                f"{key}: the private key is encrypted; set {KEY_PASSPHRASE_ENV} to its passphrase"
            )
        try:
            private = serialization.load_pem_private_key(key_bytes, password=passphrase)
        except (TypeError, ValueError) as exc:
            if encrypted:
                raise IdentityError(
                    f"{key}: the passphrase in {KEY_PASSPHRASE_ENV} does not open this encrypted "
                    "private key (wrong passphrase?)"
                ) from exc
            raise IdentityError(f"{key}: not a PEM private key ({exc})") from exc
        certs = _load_chain(chain_pem, str(cert))
        # the SubjectPublicKeyInfo of both: defined for every key type (Ed25519 has no numbers)
        spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        if certs[0].public_key().public_bytes(*spki) != private.public_key().public_bytes(*spki):
            raise IdentityError(f"{key} does not belong to the first certificate in {cert}")
        _check_end_entity(certs[0], str(cert))
        pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return cls(
            chain_pem=chain_pem,
            alg=_alg_for(private),
            tsa_url=tsa_url,
            _key_pem=pem,
            source="files",
        )

    @classmethod
    def from_callback(
        cls,
        sign: SignCallback,
        chain_pem: bytes | str,
        *,
        alg: str = "es256",
        tsa_url: str | None = None,
    ) -> Identity:
        """For keys in an HSM or KMS: `sign(data) -> signature` (raw r||s or DER for ECDSA)."""
        chain = chain_pem.encode() if isinstance(chain_pem, str) else chain_pem
        _check_end_entity(_load_chain(chain, "certificate chain")[0], "certificate chain")
        return cls(chain_pem=chain, alg=alg, tsa_url=tsa_url, _callback=sign, source="callback")

    @classmethod
    def default(cls, *, tsa_url: str | None = None, create: bool = True) -> Identity:
        """The user's local identity, created (and announced once on stderr) on first use."""
        folder = config.identity_dir()
        if not (folder / "signer.pem").exists():
            if not create:
                raise IdentityError(
                    f"no signing identity in {folder}; run 'guard keys init' to create one"
                )
            init_local()
        warn_if_exposed(folder)
        settings = read_settings(folder)
        return cls(
            chain_pem=_read(folder / "signer.pem", "certificate chain"),
            alg="es256",
            tsa_url=tsa_url or settings.get("tsa_url"),
            _key_pem=_read(folder / "signer.key", "private key"),
            source="local",
        )

    # -- use ----------------------------------------------------------------------------------

    def c2pa_signer(self) -> c2pa.Signer:
        import c2pa

        alg = getattr(c2pa.C2paSigningAlg, self.alg.upper())
        chain = self.chain_pem.decode()
        try:
            if self._callback is not None:
                return c2pa.Signer.from_callback(self._callback, alg, chain, self.tsa_url)
            info = c2pa.C2paSignerInfo(
                alg, self.chain_pem, self._key_pem, self.tsa_url.encode() if self.tsa_url else None
            )
            return c2pa.Signer.from_info(info)
        except c2pa.C2paError as exc:
            raise IdentityError(f"the C2PA SDK rejected this identity: {exc}") from exc

    def describe(self) -> dict[str, str | None]:
        """Public facts only: safe to print and to put in JSON."""
        from cryptography.hazmat.primitives import hashes

        leaf = _load_chain(self.chain_pem, "certificate chain")[0]
        return {
            "subject": leaf.subject.rfc4514_string(),
            "issuer": leaf.issuer.rfc4514_string(),
            "not_after": leaf.not_valid_after_utc.isoformat(),
            "sha256_fingerprint": leaf.fingerprint(hashes.SHA256()).hex(),
            "algorithm": self.alg,
            "source": self.source,
            "timestamp_authority": self.tsa_url,
        }

    @property
    def subject_name(self) -> str:
        from cryptography.x509.oid import NameOID

        leaf = _load_chain(self.chain_pem, "certificate chain")[0]
        names = leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return str(names[0].value) if names else leaf.subject.rfc4514_string()


def _is_encrypted(key_pem: bytes) -> bool:
    """PKCS#8 'ENCRYPTED PRIVATE KEY' or a traditional PEM with 'Proc-Type: 4,ENCRYPTED'."""
    return b"ENCRYPTED PRIVATE KEY" in key_pem or b"Proc-Type: 4,ENCRYPTED" in key_pem


def warn_if_exposed(path: Path) -> None:
    """Warn, as ssh does, when others can read a private key (a file, or the identity folder
    and the keys in it). ssh refuses such keys; guard signs, but says how to fix it."""
    if os.name != "posix":  # Windows ACLs are not mode bits
        return
    exposed = []
    candidates = [path] if path.is_file() else [path, *sorted(path.glob("*.key"))]
    for p in candidates:
        try:
            mode = p.stat().st_mode & 0o777
        except OSError:
            continue
        if mode & 0o077:
            exposed.append((p, mode))
    if not exposed:
        return
    names = ", ".join(f"{p} ({mode:04o})" for p, mode in exposed)
    fix = " ".join(f"chmod {'700' if p.is_dir() else '600'} {p};" for p, _ in exposed)
    _warn(
        f"private key readable by others: {names}; anyone on this machine can sign as you. Fix: {fix}".rstrip(
            ";"
        )
    )


def _warn(message: str) -> None:
    print(f"guard: warning: {message}", file=sys.stderr)


def _read(path: str | os.PathLike[str], what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError as exc:
        raise IdentityError(f"{path}: {what} not found") from exc
    except OSError as exc:
        raise IdentityError(f"{path}: cannot read the {what} ({exc.strerror or exc})") from exc


def _load_chain(chain_pem: bytes, where: str) -> list:
    from cryptography import x509

    try:
        certs = x509.load_pem_x509_certificates(chain_pem)
    except ValueError as exc:
        raise IdentityError(f"{where}: not a PEM certificate chain ({exc})") from exc
    if not certs:
        raise IdentityError(f"{where}: contains no certificate")
    return certs


def _check_end_entity(cert, where: str) -> None:
    """C2PA validators reject a CA certificate or one without these uses; say so before signing."""
    from cryptography import x509

    problems = []
    try:
        if cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            problems.append("it is a CA certificate")
    except x509.ExtensionNotFound:
        pass
    try:
        if not cert.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature:
            problems.append("its KeyUsage lacks digitalSignature")
    except x509.ExtensionNotFound:
        problems.append("it has no KeyUsage extension")
    if cert.not_valid_after_utc < dt.datetime.now(dt.timezone.utc):
        problems.append(f"it expired on {cert.not_valid_after_utc:%Y-%m-%d}")
    if problems:
        raise IdentityError(
            f"{where}: the signing certificate cannot sign C2PA manifests: {'; '.join(problems)}. "
            "Use an end-entity certificate with KeyUsage digitalSignature and EKU emailProtection "
            "(or documentSigning)."
        )


def _alg_for(private_key) -> str:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        return {256: "es256", 384: "es384", 521: "es512"}.get(private_key.curve.key_size, "es256")
    if isinstance(private_key, ed25519.Ed25519PrivateKey):
        return "ed25519"
    if isinstance(private_key, rsa.RSAPrivateKey):
        return "ps256"
    raise IdentityError("unsupported key type; use an EC (P-256/384/521), Ed25519 or RSA key")
