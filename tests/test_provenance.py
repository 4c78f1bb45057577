"""C2PA signing and verification through the library API (watermark off: tested on its own)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms

import guard
from guard.identity import Identity
from guard.provenance import c2pa_io, vocab, xmp
from guard.provenance import manifest as manifest_mod
from guard.provenance.spec import ManifestSpec
from tests.helpers import art, flip_png_pixel, make_chain, sha256, write

FORMATS = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp", "TIFF": ".tif", "AVIF": ".avif"}


def sign(src: Path, out: Path | None = None, **kw):
    kw.setdefault("watermark", False)
    return guard.sign(src, out, **kw)


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_round_trip_per_format_is_trusted(tmp_path: Path, fmt: str) -> None:
    src = write(art(), tmp_path / f"art{FORMATS[fmt]}", fmt)
    before = sha256(src)
    published = sign(src, author="Ada", source="digital-art")
    assert published.path == tmp_path / f"art.signed{FORMATS[fmt]}"
    v = guard.verify(published.path, watermark=False)
    assert v.state == "trusted", v.c2pa.failures
    assert v.c2pa.author == "Ada"
    assert v.c2pa.digital_source_type == vocab.IPTC + "digitalCreation"
    assert v.c2pa.training_mining == {e: "notAllowed" for e in vocab.TRAINING_ENTRIES}
    assert v.c2pa.claim_generator == f"guard/{guard.__version__}"
    assert v.c2pa.label == published.manifest_label
    assert [a["action"] for a in v.c2pa.actions] == ["c2pa.created"]
    assert sha256(src) == before  # the input is never touched


def test_foreign_ca_is_valid_but_not_trusted_until_trusted(tmp_path: Path) -> None:
    chain, key, ca = make_chain(tmp_path)
    org = Identity.from_files(chain, key)
    published = sign(write(art(), tmp_path / "a.png"), identity=org)
    v = guard.verify(published.path, watermark=False)
    assert v.state == "valid"
    assert "signingCredential.untrusted" in [f.code for f in v.c2pa.failures]
    assert v.c2pa.signer["subject"] == "Org Signer"
    assert guard.verify(published.path, trust_files=(ca,), watermark=False).state == "trusted"


def test_one_flipped_pixel_makes_it_invalid_with_a_plain_reason(tmp_path: Path) -> None:
    published = sign(write(art(), tmp_path / "a.png"))
    tampered = tmp_path / "tampered.png"
    tampered.write_bytes(flip_png_pixel(published.path.read_bytes()))
    a = np.asarray(Image.open(published.path)).astype(int)
    b = np.asarray(Image.open(tampered)).astype(int)
    assert (a != b).sum() == 1  # exactly one channel of one pixel differs
    v = guard.verify(tampered, watermark=False)
    assert v.state == "invalid"
    codes = {f.code: f.meaning for f in v.c2pa.failures}
    assert codes["assertion.dataHash.mismatch"] == "pixels or bytes changed after signing"
    assert not v.ok


def test_resaving_through_pillow_drops_the_credentials(tmp_path: Path) -> None:
    published = sign(write(art(), tmp_path / "a.png"))
    resaved = write(Image.open(published.path), tmp_path / "resaved.png", "PNG")
    v = guard.verify(resaved, watermark=False)
    assert v.state == "absent"
    assert not v.ok


def test_signing_a_signed_image_keeps_the_parent(tmp_path: Path) -> None:
    first = sign(write(art(), tmp_path / "a.png"), author="Ada")
    second = sign(first.path, tmp_path / "b.png", author="Bob")
    v = guard.verify(second.path, watermark=False)
    assert v.state == "trusted"
    assert [a["action"] for a in v.c2pa.actions] == ["c2pa.opened"]
    [parent] = v.c2pa.ingredients
    assert parent["relationship"] == "parentOf"
    assert parent["manifest"] == first.manifest_label
    assert parent["actions"] == ["c2pa.created"]
    # the parent's own manifest is carried along, so the history is complete
    assert first.manifest_label in v.c2pa.store["manifests"]


def test_rgba_alpha_and_icc_profile_survive(tmp_path: Path) -> None:
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    src = write(art(mode="RGBA"), tmp_path / "a.png", "PNG", icc_profile=icc)
    published = guard.sign(src, watermark=True) if _has_watermark() else sign(src)
    out = Image.open(published.path)
    assert out.mode == "RGBA"
    assert out.info["icc_profile"] == icc
    np.testing.assert_array_equal(np.asarray(out)[..., 3], np.asarray(Image.open(src))[..., 3])


def test_unchanged_pixels_are_passed_through_bit_exact(tmp_path: Path) -> None:
    ramp = (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16).astype(np.uint16)
    src = tmp_path / "g16.png"
    Image.fromarray(ramp).save(src)
    published = sign(src)
    np.testing.assert_array_equal(np.asarray(Image.open(published.path)), ramp)  # still 16-bit
    assert guard.verify(published.path, watermark=False).state == "trusted"


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "TIFF", "AVIF"])
def test_xmp_fields_are_readable_by_exiv2_and_existing_xmp_is_kept(
    tmp_path: Path, fmt: str
) -> None:
    import pyexiv2

    src = write(art(), tmp_path / f"a{FORMATS[fmt]}", fmt)
    if fmt != "AVIF":  # exiv2 cannot write AVIF; the others get a pre-existing packet
        with pyexiv2.ImageData(src.read_bytes()) as img:
            img.modify_xmp({"Xmp.dc.title": {'lang="x-default"': "Sunset"}, "Xmp.xmp.Rating": "4"})
            src.write_bytes(img.get_bytes())
    published = sign(src, training="notAllowed", source="ai")
    with pyexiv2.ImageData(published.path.read_bytes()) as img:
        values = img.read_xmp()
    assert values["Xmp.iptcExt.DigitalSourceType"] == vocab.IPTC + "trainedAlgorithmicMedia"
    assert (
        values["Xmp.plus.DataMining"]
        == "http://ns.useplus.org/ldf/vocab/DMI-PROHIBITED-AIMLTRAINING"
    )
    if fmt != "AVIF":
        assert values["Xmp.xmp.Rating"] == "4"
        assert values["Xmp.dc.title"] == {'lang="x-default"': "Sunset"}
    v = guard.verify(published.path, watermark=False)
    assert v.state == "trusted"
    assert v.xmp.digital_source_type == v.c2pa.digital_source_type
    assert v.xmp.training == "notAllowed"
    assert v.disagreements == []


def test_verify_reports_xmp_that_disagrees_with_the_manifest(tmp_path: Path) -> None:
    data = io.BytesIO()
    art().save(data, "PNG")
    packet = xmp.merged_packet(None, xmp.fields(vocab.source_uri("photo"), "allowed"))
    lying = xmp.embed(data.getvalue(), packet)
    spec = ManifestSpec(source="ai", training="notAllowed")
    definition = manifest_mod.build(spec, title="x.png", mime="image/png", thumbnail=False)
    signed, _ = c2pa_io.sign(definition, lying, "image/png", Identity.default())
    path = tmp_path / "x.png"
    path.write_bytes(signed)
    v = guard.verify(path, watermark=False)
    assert v.state == "trusted"
    assert len(v.disagreements) == 2
    assert "photograph" in v.disagreements[0] and "AI-generated" in v.disagreements[0]
    assert "allowed" in v.disagreements[1]


def test_sidecar_leaves_the_image_unsigned_and_verifies_with_it(tmp_path: Path) -> None:
    published = sign(write(art(), tmp_path / "a.png"), sidecar=True)
    assert published.sidecar_path == tmp_path / "a.signed.c2pa"
    assert c2pa_io.read(published.path.read_bytes(), "image/png", trust_pem=None).state == "absent"
    v = guard.verify(published.path, watermark=False)
    assert v.state == "trusted"
    assert v.c2pa.sidecar


def test_training_and_source_choices_are_recorded(tmp_path: Path) -> None:
    published = sign(write(art(), tmp_path / "a.png"), training="allowed", source="photo")
    v = guard.verify(published.path, watermark=False)
    assert v.training == "allowed"
    assert v.c2pa.digital_source_type == vocab.IPTC + "digitalCapture"
    assert "photograph" in "\n".join(v.summary())


def test_thumbnail_is_small_and_never_upscaled(tmp_path: Path) -> None:
    assert Image.open(io.BytesIO(c2pa_io.thumbnail_jpeg(art(100, 60)))).size == (100, 60)
    assert max(Image.open(io.BytesIO(c2pa_io.thumbnail_jpeg(art(1000, 500)))).size) == 256


def test_callback_signer_for_hsm_keys(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    chain, key_path, ca = make_chain(tmp_path)
    key = serialization.load_pem_private_key(key_path.read_bytes(), None)
    calls = []

    def hsm_sign(data: bytes) -> bytes:
        calls.append(len(data))
        return key.sign(data, ec.ECDSA(hashes.SHA256()))

    identity = Identity.from_callback(hsm_sign, chain.read_bytes())
    published = sign(write(art(), tmp_path / "a.png"), identity=identity)
    assert calls, "the callback was never asked to sign"
    assert guard.verify(published.path, trust_files=(ca,), watermark=False).state == "trusted"


def test_encrypted_org_key_uses_the_passphrase_env(tmp_path: Path, monkeypatch) -> None:
    from guard.errors import IdentityError

    chain, key, ca = make_chain(tmp_path, passphrase=b"s3cret")
    with pytest.raises(IdentityError, match="GUARD_KEY_PASSPHRASE"):
        Identity.from_files(chain, key)
    monkeypatch.setenv("GUARD_KEY_PASSPHRASE", "s3cret")
    identity = Identity.from_files(chain, key)
    assert "s3cret" not in repr(identity) and "PRIVATE" not in repr(identity)
    published = sign(write(art(), tmp_path / "a.png"), identity=identity)
    assert guard.verify(published.path, trust_files=(ca,), watermark=False).state == "trusted"


def test_a_ca_certificate_cannot_be_used_to_sign(tmp_path: Path) -> None:
    from guard import config
    from guard.errors import IdentityError
    from guard.identity.local_ca import init_local

    init_local(quiet=True)
    folder = config.identity_dir()
    with pytest.raises(IdentityError, match="it is a CA certificate"):
        Identity.from_files(folder / "ca.pem", folder / "ca.key")


def test_private_keys_are_mode_0600(guard_home: Path) -> None:
    from guard.identity.local_ca import init_local

    folder = init_local(quiet=True)
    assert (folder / "signer.key").stat().st_mode & 0o777 == 0o600
    assert (folder / "ca.key").stat().st_mode & 0o777 == 0o600
    assert folder.stat().st_mode & 0o777 == 0o700


def test_local_certificates_have_the_extensions_c2pa_needs() -> None:
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    from guard.identity.local_ca import init_local

    folder = init_local(name="Ada", org="Studio", quiet=True)
    leaf, root = x509.load_pem_x509_certificates((folder / "signer.pem").read_bytes())
    ext = leaf.extensions
    assert ext.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert ext.get_extension_for_class(x509.KeyUsage).value.digital_signature
    assert (
        ExtendedKeyUsageOID.EMAIL_PROTECTION
        in ext.get_extension_for_class(x509.ExtendedKeyUsage).value
    )
    aki = ext.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    assert aki == root.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    assert "CN=Ada" in leaf.subject.rfc4514_string() and "O=Studio" in leaf.subject.rfc4514_string()


def _has_watermark() -> bool:
    try:
        import guard.watermark as wm

        return hasattr(wm, "embed")
    except ImportError:
        return False
