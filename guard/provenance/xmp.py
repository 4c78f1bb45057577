"""The IPTC/PLUS facts in XMP, for the many platforms that read XMP rather than C2PA.

exiv2 (through pyexiv2) builds, merges and places the packet, so it lands where each format's
standard readers look: JPEG APP1, PNG iTXt `XML:com.adobe.xmp`, the WebP XMP chunk, the TIFF
XMP tag. exiv2 cannot write AVIF, so for AVIF the merged packet is handed to the encoder instead.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from guard.provenance import vocab

DIGITAL_SOURCE_TYPE = "Xmp.iptcExt.DigitalSourceType"
DATA_MINING = "Xmp.plus.DataMining"
CREATOR = "Xmp.dc.creator"
CREATOR_TOOL = "Xmp.xmp.CreatorTool"
EXIV2_WRITES = frozenset({"PNG", "JPEG", "WEBP", "TIFF"})


@dataclass
class XmpFacts:
    digital_source_type: str | None = None
    data_mining: str | None = None

    @property
    def training(self) -> str | None:
        """The CAWG choice the DataMining value means; None also for a value that is no IPTC
        term (`readable` is then False, and scan calls the image unverifiable)."""
        value = vocab.plus_to_training(self.data_mining)
        return None if value == vocab.UNREADABLE else value

    @property
    def readable(self) -> bool:
        return vocab.plus_to_training(self.data_mining) != vocab.UNREADABLE

    def to_dict(self) -> dict[str, str | None]:
        return {
            "digital_source_type": self.digital_source_type,
            "data_mining": self.data_mining,
            "training": self.training,
        }


def fields(
    source_uri: str, training: str, author: str | None = None, tool: str | None = None
) -> dict[str, object]:
    out: dict[str, object] = {
        DIGITAL_SOURCE_TYPE: source_uri,
        DATA_MINING: vocab.PLUS_DATA_MINING[training],
    }
    if author:
        out[CREATOR] = [author]
    if tool:
        out[CREATOR_TOOL] = tool
    return out


def _exiv2():
    import pyexiv2

    pyexiv2.set_log_level(4)  # exiv2 warns on stderr about harmless oddities in real files
    return pyexiv2


def merged_packet(existing: bytes | None, new_fields: dict[str, object]) -> bytes:
    """Merge new fields into an existing packet (kept, not replaced), serialised by exiv2."""
    from PIL import Image

    pyexiv2 = _exiv2()
    carrier = io.BytesIO()
    Image.new("L", (1, 1)).save(carrier, "PNG")
    with pyexiv2.ImageData(carrier.getvalue()) as img:
        if existing:
            try:
                img.modify_raw_xmp(existing.decode("utf-8", errors="replace"))
            except (RuntimeError, ValueError):
                pass  # an unparseable packet is dropped rather than failing the signature
        img.modify_xmp(new_fields)
        return img.read_raw_xmp().encode("utf-8")


def embed(data: bytes, packet: bytes) -> bytes:
    """Place a packet into encoded PNG/JPEG/WebP/TIFF bytes without touching the pixel data."""
    pyexiv2 = _exiv2()
    with pyexiv2.ImageData(data) as img:
        img.modify_raw_xmp(packet.decode("utf-8"))
        return img.get_bytes()


def read(data: bytes) -> XmpFacts:
    try:
        pyexiv2 = _exiv2()
        with pyexiv2.ImageData(data) as img:
            values = img.read_xmp()
    except (RuntimeError, ValueError, OSError):
        return XmpFacts()

    def one(key: str) -> str | None:
        value = values.get(key)
        if isinstance(value, list):
            value = value[0] if value else None
        if isinstance(value, dict):
            value = next(iter(value.values()), None)
        return str(value) if value else None

    return XmpFacts(one(DIGITAL_SOURCE_TYPE), one(DATA_MINING))
