"""A labelled corpus with every signal kind `guard scan` reads, built in code.

Used by the tests (every file must get its expected decision and signal), by
benchmarks/bench_scan.py (the side-by-side comparison with datadiligence) and by anyone who
wants to see the scanner at work:

    python -m guard.scan.corpus DIR      # writes the files and DIR/labels.json

Signing uses the current guard identity and ledger (GUARD_HOME); scan the corpus with the same
GUARD_HOME so the stripped copies find their ledger records. Images are small (320x256) so the
whole corpus builds in a few seconds; the watermark still fits (it needs 256 px).
"""

from __future__ import annotations

import io
import json
import sys
import tarfile
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, PngImagePlugin

W, H = 320, 256
WEBUI_PARAMETERS = (
    "a lighthouse at dusk, oil painting\n"
    "Negative prompt: blurry\n"
    "Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1234, "
    "Size: 512x512, Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Version: v1.10.1"
)
# ComfyUI's SaveImage: the API graph as `prompt`, the editor graph as `workflow`
COMFY_PROMPT = {
    "3": {"class_type": "KSampler", "inputs": {"seed": 5, "steps": 20, "cfg": 8.0}},
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd15.safetensors"}},
    "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI"}},
}
COMFY_WORKFLOW = {"last_node_id": 9, "nodes": [{"id": 3, "type": "KSampler"}], "links": []}
NOVELAI_COMMENT = {"prompt": "a cat", "steps": 28, "sampler": "k_euler", "scale": 5, "uc": "bad"}
SDXL_BITS = [int(b) for b in bin(0xB3EC907BB19E)[2:]]


@dataclass(frozen=True)
class Labelled:
    """One corpus file and the answer guard must give."""

    path: str  # as the report names it (SHARD#MEMBER for shard samples)
    carries: str  # what is in it, in words
    decision: str
    signal: str | None  # the signal that must be among the row's signals (None: none at all)
    headers: dict[str, str] | None = None  # HTTP headers the downloader recorded (for comparison)


def picture(seed: int, width: int = W, height: int = H) -> Image.Image:
    """A textured, photo-like test picture (gradients, edges and grain), deterministic."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    fx, fy, phase = rng.uniform(8, 40), rng.uniform(8, 40), rng.uniform(0, 6.28)
    r = 120 + 90 * np.sin(x / fx + phase) * np.cos(y / fy)
    g = 128 + 80 * np.sin((x + y) / (fx + fy) * 2 + phase)
    b = 60 + 150 * (x / width) * (y / height)
    rgb = np.stack([r, g, b], -1) + rng.normal(0, 7, (height, width, 3))
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB")


def _jpeg(im: Image.Image, **params: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=90, **params)
    return buf.getvalue()


def _png(im: Image.Image, text: dict[str, str] | None = None) -> bytes:
    info = PngImagePlugin.PngInfo()
    for key, value in (text or {}).items():
        info.add_text(key, value)
    buf = io.BytesIO()
    im.save(buf, "PNG", pnginfo=info)
    return buf.getvalue()


def _sdxl_marked(im: Image.Image) -> Image.Image:
    from imwatermark import WatermarkEncoder  # the encoder diffusers' SDXL watermarker uses

    enc = WatermarkEncoder()
    enc.set_watermark("bits", SDXL_BITS)
    bgr = np.ascontiguousarray(np.asarray(im)[:, :, ::-1])
    return Image.fromarray(np.ascontiguousarray(enc.encode(bgr, "dwtDct")[:, :, ::-1]))


def _legacy_c2pa(data: bytes) -> bytes:
    """A manifest with only the deprecated c2pa.training-mining assertion (C2PA 1.x tools)."""
    from guard.identity import Identity
    from guard.provenance import c2pa_io, vocab

    definition = {
        "claim_generator_info": [{"name": "legacy-camera-app", "version": "1.0"}],
        "title": "legacy.jpg",
        "format": "image/jpeg",
        "assertions": [
            {
                "label": "c2pa.actions",
                "data": {
                    "actions": [
                        {"action": "c2pa.created", "digitalSourceType": vocab.source_uri("photo")}
                    ]
                },
            },
            {
                "label": "c2pa.training-mining",
                "data": {
                    "entries": {
                        f"c2pa.{use}": {"use": "notAllowed"}
                        for use in ("ai_generative_training", "ai_inference", "ai_training")
                    }
                    | {"c2pa.data_mining": {"use": "notAllowed"}}
                },
            },
        ],
    }
    signed, _ = c2pa_io.sign(definition, data, "image/jpeg", Identity.default())
    return signed


def _flip_scan_byte(jpeg: bytes) -> bytes:
    """Change one byte of entropy-coded data just before EOI: still decodes, hash no longer."""
    data = bytearray(jpeg)
    i = data.rindex(b"\xff\xd9") - 64
    while data[i] == 0xFF or data[i - 1] == 0xFF:
        i -= 1
    data[i] ^= 0x10
    return bytes(data)


def _declared_size(png: bytes, width: int, height: int) -> bytes:
    """The same PNG with IHDR claiming another size (CRC fixed, so only the size lies)."""
    import struct
    import zlib

    body = struct.pack(">II", width, height) + png[24:29]
    return png[:16] + body + struct.pack(">I", zlib.crc32(b"IHDR" + body)) + png[33:]


def _xmp_only(data: bytes, fields: dict[str, object]) -> bytes:
    from guard.provenance import xmp

    return xmp.embed(data, xmp.merged_packet(None, fields))


def _ensure_identity() -> None:
    from guard import config
    from guard.identity import init_local

    if not (config.identity_dir() / "signer.pem").exists():
        init_local(name="Corpus Signer", org="guard corpus")


def build(folder: str | Path) -> list[Labelled]:
    """Write the corpus into `folder` (created) and return the labels."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _ensure_identity()
    with tempfile.TemporaryDirectory(prefix="guard-corpus-") as tmp:
        labels = _build(folder, Path(tmp))
    (folder / "labels.json").write_text(json.dumps([asdict(x) for x in labels], indent=1))
    return labels


def _build(folder: Path, scratch: Path) -> list[Labelled]:
    """The files; `scratch` holds the inputs that signing needs (never part of the corpus)."""
    from guard import imageio, publish
    from guard import sign as guard_sign
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
    put("clean_photo.jpg", _jpeg(picture(1)), "a plain JPEG photo", "allowed", None)
    put("clean_photo.png", _png(picture(2)), "a plain PNG", "allowed", None)
    camera = Image.Exif()
    camera.update({0x010F: "Canon", 0x0110: "EOS R5", 0x0131: "Adobe Photoshop 25.0"})
    put(
        "clean_camera_exif.jpg",
        _jpeg(picture(3), exif=camera.tobytes()),
        "a photo with camera EXIF (Make, Model, Software)",
        "allowed",
        None,
    )
    signed(
        "c2pa_photo_allowed.jpg",
        "C2PA (cawg): photo, training allowed; guard's watermark bound by the manifest",
        "allowed",
        None,
        data=_jpeg(picture(4)),
        source="photo",
        training="allowed",
    )
    # -- the owner's word
    signed(
        "c2pa_cawg_not_allowed.jpg",
        "C2PA cawg.training-mining notAllowed (and PLUS in XMP)",
        "opted_out",
        "c2pa_training_not_allowed",
        data=_jpeg(picture(5)),
        source="photo",
        training="notAllowed",
        watermark=False,
    )
    signed(
        "c2pa_sidecar_not_allowed.png",
        "C2PA in a .c2pa sidecar: cawg notAllowed",
        "opted_out",
        "c2pa_training_not_allowed",
        data=_png(picture(6)),
        source="digital-art",
        training="notAllowed",
        watermark=False,
        sidecar=True,
    )
    put(
        "c2pa_legacy_not_allowed.jpg",
        _legacy_c2pa(_jpeg(picture(7))),
        "C2PA legacy c2pa.training-mining notAllowed",
        "opted_out",
        "c2pa_legacy_training_not_allowed",
    )
    put(
        "xmp_plus_opt_out.jpg",
        _xmp_only(_jpeg(picture(8)), {xmp.DATA_MINING: vocab.PLUS_DATA_MINING["notAllowed"]}),
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
        _xmp_only(_png(picture(10)), {xmp.DIGITAL_SOURCE_TYPE: vocab.source_uri("ai")}),
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
            _jpeg(stripped),
            f"guard-signed ({'AI' if training == 'allowed' else 'art, ' + training}), "
            "metadata stripped, JPEG re-encoded: watermark -> ledger",
            decision,
            signal,
        )
    put(
        "sdxl_marked.png",
        _png(_sdxl_marked(picture(13))),
        "SDXL invisible watermark (dwtDct, 48 bits), no metadata",
        "ai_generated",
        "third_party_ai_mark",
    )
    put(
        "webui.png",
        _png(picture(14), {"parameters": WEBUI_PARAMETERS}),
        "Stable Diffusion web UI `parameters` PNG chunk",
        "ai_generated",
        "generator_metadata",
    )
    put(
        "webui.jpg",
        imageio.encode(picture(15), "JPEG", text={"parameters": WEBUI_PARAMETERS}, quality=90),
        "web UI parameters in EXIF UserComment (JPEG)",
        "ai_generated",
        "generator_metadata",
    )
    put(
        "comfyui.png",
        _png(
            picture(16),
            {"prompt": json.dumps(COMFY_PROMPT), "workflow": json.dumps(COMFY_WORKFLOW)},
        ),
        "ComfyUI `prompt` and `workflow` PNG chunks",
        "ai_generated",
        "generator_metadata",
    )
    put(
        "novelai.png",
        _png(
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
    src.write_bytes(_jpeg(picture(18)))
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
        _flip_scan_byte(src.with_name("tampered.jpg").read_bytes()),
        "C2PA (training allowed), one byte of image data changed after signing",
        "unverifiable",
        "c2pa_invalid",
    )
    whole = _jpeg(picture(19))
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
        _declared_size(_png(picture(23, 64, 64)), 40000, 40000),
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
        ("000000000", _jpeg(picture(20)), {}, "allowed", None, "a downloaded photo"),
        (
            "000000001",
            _jpeg(picture(21)),
            {"headers": {"X-Robots-Tag": "noai, noimageai"}},
            "opted_out",
            "robots_noai",
            "X-Robots-Tag: noai, noimageai recorded in the sample's .json",
        ),
        (
            "000000002",
            _jpeg(picture(22))[:900],
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


def datadiligence_says(item: Labelled) -> str:
    """What Spawning's datadiligence answers for one corpus file: 'allowed', 'not allowed', or
    'error: ...'. Files go through its FileEvaluator (C2PA), recorded headers through its
    header rules (X-Robots-Tag, TDM-Rep), as a pipeline using it would call them."""
    import contextlib
    import logging
    import os

    with contextlib.redirect_stdout(io.StringIO()):  # it prints a note about its API key
        import datadiligence as dd

    logging.getLogger().setLevel(logging.CRITICAL)  # it logs every failure it then ignores
    try:
        allowed = True
        if item.headers:
            allowed = dd.is_allowed(headers=item.headers)
        if "#" in item.path:  # a shard member: give it the file an extraction would give
            shard, member = item.path.split("#", 1)
            with tarfile.open(shard) as tar, tempfile.TemporaryDirectory() as tmp:
                fh = tar.extractfile(member)
                local = os.path.join(tmp, os.path.basename(member))
                with open(local, "wb") as out:
                    out.write(fh.read() if fh else b"")
                allowed = allowed and dd.is_allowed(path=local)
        else:
            allowed = allowed and dd.is_allowed(path=item.path)
    except Exception as exc:  # report whatever it raises, as a user would meet it
        return f"error: {type(exc).__name__}"
    return "allowed" if allowed else "not allowed"


def side_by_side(labels: list[Labelled], rows) -> list[dict[str, str]]:
    """One line per corpus file: what it carries, the right answer, guard's and datadiligence's."""
    by_path = {r.path: r for r in rows}
    table = []
    for item in labels:
        row = by_path.get(item.path)
        theirs = datadiligence_says(item)
        table.append(
            {
                "file": item.path.rsplit("/", 1)[-1],
                "carries": item.carries,
                "expected": item.decision,
                "guard": row.decision if row else "(no row)",
                "guard_reason": (row.reasons[0] if row and row.reasons else ""),
                "guard_correct": bool(row and row.decision == item.decision),
                "datadiligence": theirs,
                # a gatekeeper is right when it keeps out exactly what should be kept out
                "datadiligence_correct": (theirs == "allowed") == (item.decision == "allowed"),
            }
        )
    return table


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m guard.scan.corpus DIR")
    for item in build(sys.argv[1]):
        print(f"{item.decision:<13} {item.signal or '-':<32} {item.path}")
