"""A labelled corpus with every signal kind `guard scan` reads, built in code.

Used by the tests (every file must get its expected decision and signal), by
benchmarks/bench_scan.py (the side-by-side comparison with datadiligence) and by anyone who
wants to see the scanner at work:

    python -m tests.scan_corpus.corpus DIR      # writes the files and DIR/labels.json

Signing uses the current guard identity and ledger (GUARD_HOME); scan the corpus with the same
GUARD_HOME so the stripped copies find their ledger records. Images are small (320x256) so the
whole corpus builds in a few seconds; the watermark still fits (it needs 256 px).
"""

from __future__ import annotations

import io
import json
import os
import sys
import tarfile
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from tests.scan_corpus.parts import (
    COMFY_PROMPT,
    COMFY_WORKFLOW,
    NOVELAI_COMMENT,
    WEBUI_PARAMETERS,
    H,
    W,
    declared_size,
    flip_scan_byte,
    jpeg,
    legacy_c2pa,
    picture,
    png,
    sdxl_marked,
    xmp_only,
)

__all__ = ["COMFY_PROMPT", "NOVELAI_COMMENT", "WEBUI_PARAMETERS", "Labelled", "build", "picture"]


@dataclass(frozen=True)
class Labelled:
    """One corpus file and the answer guard must give."""

    path: str  # as the report names it (SHARD#MEMBER for shard samples)
    carries: str  # what is in it, in words
    decision: str
    signal: str | None  # the signal that must be among the row's signals (None: none at all)
    headers: dict[str, str] | None = None  # HTTP headers the downloader recorded (for comparison)


def _ensure_identity() -> None:
    from guard import config
    from guard.identity.local_ca import init_local

    if not (config.identity_dir() / "signer.pem").exists():
        init_local(name="Corpus Signer", org="guard corpus")


def build(folder: str | Path) -> list[Labelled]:
    """Write the corpus into `folder` (created) and return the labels. Without GUARD_HOME set
    (the CLI below, bench_scan --compare), the corpus signer and its ledger live in
    `folder/guard-home` for this process: building test material must never create or change
    the user's own identity."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("GUARD_HOME", str(folder.resolve() / "guard-home"))
    _ensure_identity()
    with tempfile.TemporaryDirectory(prefix="guard-corpus-") as tmp:
        labels = _build(folder, Path(tmp))
    (folder / "labels.json").write_text(json.dumps([asdict(x) for x in labels], indent=1))
    return labels


def _build(folder: Path, scratch: Path) -> list[Labelled]:
    """The files; `scratch` holds the inputs that signing needs (never part of the corpus)."""
    from guard import publish
    from guard import sign as guard_sign
    from guard.media import encoding as image_encoding
    from guard.media import imageio
    from guard.provenance import vocab, xmp
    from guard.provenance.spec import ManifestSpec

    labels: list[Labelled] = []

    def put(name: str, data: bytes, carries: str, decision: str, signal: str | None) -> Path:
        path = folder / name
        path.write_bytes(data)
        labels.append(Labelled(str(path.resolve()), carries, decision, signal))
        return path

    def signed(name: str, carries: str, decision: str, signal: str | None, **kw) -> Path:
        src = scratch / name
        src.write_bytes(kw.pop("data"))
        out = folder / name
        guard_sign(src, out, force=True, **kw)
        labels.append(Labelled(str(out.resolve()), carries, decision, signal))
        return out

    # -- clean pictures: nothing to say, nothing excluded
    put("clean_photo.jpg", jpeg(picture(1)), "a plain JPEG photo", "allowed", None)
    put("clean_photo.png", png(picture(2)), "a plain PNG", "allowed", None)
    camera = Image.Exif()
    camera.update({0x010F: "Canon", 0x0110: "EOS R5", 0x0131: "Adobe Photoshop 25.0"})
    put(
        "clean_camera_exif.jpg",
        jpeg(picture(3), exif=camera.tobytes()),
        "a photo with camera EXIF (Make, Model, Software)",
        "allowed",
        None,
    )
    signed(
        "c2pa_photo_allowed.jpg",
        "C2PA (cawg): photo, training allowed; guard's watermark bound by the manifest",
        "allowed",
        None,
        data=jpeg(picture(4)),
        source="photo",
        training="allowed",
    )
    # -- the owner's word
    signed(
        "c2pa_cawg_not_allowed.jpg",
        "C2PA cawg.training-mining notAllowed (and PLUS in XMP)",
        "opted_out",
        "c2pa_training_not_allowed",
        data=jpeg(picture(5)),
        source="photo",
        training="notAllowed",
        watermark=False,
    )
    signed(
        "c2pa_sidecar_not_allowed.png",
        "C2PA in a .c2pa sidecar: cawg notAllowed",
        "opted_out",
        "c2pa_training_not_allowed",
        data=png(picture(6)),
        source="digital-art",
        training="notAllowed",
        watermark=False,
        sidecar=True,
    )
    put(
        "c2pa_legacy_not_allowed.jpg",
        legacy_c2pa(jpeg(picture(7))),
        "C2PA legacy c2pa.training-mining notAllowed",
        "opted_out",
        "c2pa_legacy_training_not_allowed",
    )
    put(
        "xmp_plus_opt_out.jpg",
        xmp_only(jpeg(picture(8)), {xmp.DATA_MINING: vocab.PLUS_DATA_MINING["notAllowed"]}),
        "IPTC PLUS DataMining prohibited in XMP, no C2PA",
        "opted_out",
        "xmp_training_not_allowed",
    )
    # -- AI-generated
    ai = folder / "c2pa_ai_generated.png"
    publish(
        picture(9),
        ai,
        ManifestSpec(source="ai", training="allowed"),
        watermark=False,
        force=True,
    )
    labels.append(
        Labelled(
            str(ai.resolve()), "C2PA: trainedAlgorithmicMedia", "ai_generated", "c2pa_ai_source"
        )
    )
    put(
        "xmp_ai_source.png",
        xmp_only(png(picture(10)), {xmp.DIGITAL_SOURCE_TYPE: vocab.source_uri("ai")}),
        "IPTC DigitalSourceType trainedAlgorithmicMedia in XMP, no C2PA",
        "ai_generated",
        "xmp_ai_source",
    )
    for name, training, decision, signal in (
        ("guard_marked_stripped.jpg", "allowed", "ai_generated", "ledger_ai_source"),
        (
            "guard_marked_stripped_opt_out.jpg",
            "notAllowed",
            "opted_out",
            "ledger_training_not_allowed",
        ),
    ):
        marked = scratch / f"marked-{name.replace('.jpg', '.png')}"
        publish(
            picture(11 if training == "allowed" else 12),
            marked,
            ManifestSpec(
                source="ai" if training == "allowed" else "digital-art", training=training
            ),
            force=True,
        )
        stripped = imageio.load(marked).image  # the pixels only: metadata gone, re-encoded
        put(
            name,
            jpeg(stripped),
            f"guard-signed ({'AI' if training == 'allowed' else 'art, ' + training}), "
            "metadata stripped, JPEG re-encoded: watermark -> ledger",
            decision,
            signal,
        )
    put(
        "sdxl_marked.png",
        png(sdxl_marked(picture(13))),
        "SDXL invisible watermark (dwtDct, 48 bits), no metadata",
        "ai_generated",
        "third_party_ai_mark",
    )
    put(
        "webui.png",
        png(picture(14), {"parameters": WEBUI_PARAMETERS}),
        "Stable Diffusion web UI `parameters` PNG chunk",
        "ai_generated",
        "generator_metadata",
    )
    put(
        "webui.jpg",
        image_encoding.encode(
            picture(15), "JPEG", text={"parameters": WEBUI_PARAMETERS}, quality=90
        ),
        "web UI parameters in EXIF UserComment (JPEG)",
        "ai_generated",
        "generator_metadata",
    )
    put(
        "comfyui.png",
        png(
            picture(16),
            {"prompt": json.dumps(COMFY_PROMPT), "workflow": json.dumps(COMFY_WORKFLOW)},
        ),
        "ComfyUI `prompt` and `workflow` PNG chunks",
        "ai_generated",
        "generator_metadata",
    )
    put(
        "novelai.png",
        png(
            picture(17),
            {
                "Title": "AI generated image",
                "Software": "NovelAI",
                "Source": "Stable Diffusion XL C1E1DE52",
                "Comment": json.dumps(NOVELAI_COMMENT),
            },
        ),
        "NovelAI `Software` and `Comment` PNG chunks",
        "ai_generated",
        "generator_metadata",
    )
    # -- claims that cannot be checked, and files that cannot be read
    src = scratch / "tampered-src.jpg"
    src.write_bytes(jpeg(picture(18)))
    guard_sign(
        src,
        src.with_name("tampered.jpg"),
        source="photo",
        training="allowed",
        watermark=False,
        force=True,
    )
    put(
        "c2pa_tampered.jpg",
        flip_scan_byte(src.with_name("tampered.jpg").read_bytes()),
        "C2PA (training allowed), one byte of image data changed after signing",
        "unverifiable",
        "c2pa_invalid",
    )
    whole = jpeg(picture(19))
    put(
        "truncated.jpg",
        whole[: len(whole) // 2],
        "a JPEG cut in half",
        "unverifiable",
        "unreadable",
    )
    put(
        "garbage.png",
        np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
        "random bytes named .png",
        "unverifiable",
        "unreadable",
    )
    put("empty.jpg", b"", "an empty file", "unverifiable", "unreadable")
    put(
        "bomb.png",
        declared_size(png(picture(23, 64, 64)), 40000, 40000),
        "a PNG declaring 40000x40000 pixels (a decompression bomb)",
        "unverifiable",
        "unreadable",
    )
    labels.extend(_shard(folder / "img2dataset" / "00000.tar"))
    return labels


def _shard(path: Path) -> list[Labelled]:
    """An img2dataset WebDataset shard: KEY.jpg + KEY.json (+ KEY.txt) per sample."""
    path.parent.mkdir(parents=True, exist_ok=True)
    samples = [
        ("000000000", jpeg(picture(20)), {}, "allowed", None, "a downloaded photo"),
        (
            "000000001",
            jpeg(picture(21)),
            {"headers": {"X-Robots-Tag": "noai, noimageai"}},
            "opted_out",
            "robots_noai",
            "X-Robots-Tag: noai, noimageai recorded in the sample's .json",
        ),
        (
            "000000002",
            jpeg(picture(22))[:900],
            {},
            "unverifiable",
            "unreadable",
            "a truncated download",
        ),
    ]
    labels = []
    with tarfile.open(path, "w") as tar:
        for key, data, extra, decision, signal, carries in samples:
            meta = {
                "url": f"https://example.com/{key}.jpg",
                "caption": "a picture",
                "key": key,
                "status": "success",
                "error_message": None,
                "width": W,
                "height": H,
                "original_width": W,
                "original_height": H,
                **extra,
            }
            for suffix, body in (
                ("jpg", data),
                ("txt", b"a picture"),
                ("json", json.dumps(meta, indent=4).encode()),
            ):
                info = tarfile.TarInfo(f"{key}.{suffix}")
                info.size = len(body)
                tar.addfile(info, io.BytesIO(body))
            headers = extra.get("headers")
            labels.append(
                Labelled(
                    f"{path.resolve()}#{key}.jpg",
                    f"img2dataset sample: {carries}",
                    decision,
                    signal,
                    headers,
                )
            )
    return labels


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m tests.scan_corpus.corpus DIR")
    for item in build(sys.argv[1]):
        print(f"{item.decision:<13} {item.signal or '-':<32} {item.path}")
