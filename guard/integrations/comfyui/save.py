"""Save Image (guard): ComfyUI's SaveImage, with every file watermarked and signed.

The contract is SaveImage's (ComfyUI's nodes.py), kept to the letter so the node is a drop-in:

- the folder, name and counter come from `folder_paths.get_save_image_path(filename_prefix,
  output_dir, width, height)` with the first image's width and height; each image of the batch
  is `{filename with %batch_num% replaced}_{counter:05}_.png`, the counter going up by one;
  `%date:…%` and `%Node.widget%` are replaced first, as ComfyUI's page does for SaveImage only
  (guard.integrations.comfyui.names);
- the pixels are SaveImage's 8-bit conversion (guard.integrations.comfyui.images);
- the `prompt` and `extra_pnginfo` text chunks (`workflow`) are SaveImage's, byte for byte, and
  none when ComfyUI runs with --disable-metadata;
- the return value has SaveImage's `{"ui": {"images": [{"filename", "subfolder", "type"}]}}`.

What guard adds goes through its one publishing path (guard.publishing.publish): the watermark,
then the C2PA manifest (AI-generated: IPTC trainedAlgorithmicMedia; the checkpoint, seed, steps,
sampler, scheduler and CFG read from the prompt graph, in the `org.guard.comfyui.generation`
assertion, in ComfyUI's own names: not web UI's `org.guard.generation`, whose reader would take
`euler` for a web UI sampler), then the ledger record. The workflow never breaks on guard's
account: when guard cannot publish an image, it is saved exactly as SaveImage saves it (same
bytes: Pillow, compress_level 4, the same chunks), and the error is logged and reported in the
node's text (`ui.text` and its STRING output).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from guard.integrations.comfyui import names
from guard.integrations.comfyui.images import png_entries, png_info, to_pil
from guard.provenance.spec import Assertion, ManifestSpec, Training

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from guard.identity import Identity
    from guard.ledger import Ledger

logger = logging.getLogger(__name__)

# folder_paths.get_save_image_path(filename_prefix, output_dir, image_width=0, image_height=0)
#   -> (full_output_folder, filename, counter, subfolder, filename_prefix)
SaveImagePath = Callable[[str, str, int, int], tuple[str, str, int, str, str]]

COMPRESS_LEVEL = 4  # SaveImage's; PreviewImage uses 1
GENERATOR = "ComfyUI"
ASSERTION = "org.guard.comfyui.generation"
# what the prompt graph says, in the assertion (ComfyUIParameters' fields, ComfyUI's names)
_FIELDS = (
    "prompt",
    "negative_prompt",
    "checkpoint",
    "seed",
    "steps",
    "sampler",
    "scheduler",
    "cfg_scale",
)


def save_images(
    images: torch.Tensor,
    filename_prefix: str = "ComfyUI",
    prompt: Mapping[str, Any] | None = None,
    extra_pnginfo: Mapping[str, Any] | None = None,
    *,
    output_dir: str,
    get_save_image_path: SaveImagePath,
    disable_metadata: bool = False,
    compress_level: int = COMPRESS_LEVEL,
    folder_type: str = "output",
    training: Training = "notAllowed",
    identity: Identity | None = None,
    ledger: Ledger | None = None,
) -> dict[str, Any]:
    """SaveImage.save_images, publishing each image through guard. Returns SaveImage's `ui`
    (plus `text`: one line per image saying what guard did) and, as `result`, that text."""
    workflow = (extra_pnginfo or {}).get("workflow")
    filename_prefix = names.replace(
        filename_prefix, prompt, workflow if isinstance(workflow, Mapping) else None
    )
    full_output_folder, filename, counter, subfolder, filename_prefix = get_save_image_path(
        filename_prefix, output_dir, images[0].shape[1], images[0].shape[0]
    )
    results: list[dict[str, str]] = []
    lines: list[str] = []
    for batch_number, image in enumerate(images):
        pixels = to_pil(image)
        entries = None if disable_metadata else png_entries(prompt, extra_pnginfo)
        filename_with_batch_num = filename.replace("%batch_num%", str(batch_number))
        file = f"{filename_with_batch_num}_{counter:05}_.png"
        path = Path(full_output_folder) / file
        lines.append(
            _save_one(
                pixels,
                path,
                entries,
                training=training,
                batch_index=batch_number,
                compress_level=compress_level,
                identity=identity,
                ledger=ledger,
            )
        )
        results.append({"filename": file, "subfolder": subfolder, "type": folder_type})
        counter += 1
    return {"ui": {"images": results, "text": lines}, "result": ("\n".join(lines),)}


def generation_spec(
    entries: list[tuple[str, str]] | None,
    *,
    training: Training,
    size: tuple[int, int],
    batch_index: int,
) -> ManifestSpec:
    """What the manifest says about one image ComfyUI generated, from SaveImage's text
    `entries`; None (--disable-metadata) states no generation parameters and writes no text."""
    from guard.provenance.generator_tags import comfyui_parameters

    text = dict(entries or [])
    params = comfyui_parameters(text)
    data: dict[str, Any] = {"generator": GENERATOR}
    if params is not None:
        fields = params.to_dict()
        data.update({key: fields[key] for key in _FIELDS if fields[key] is not None})
    data.update(width=size[0], height=size[1], batch_index=batch_index)
    checkpoint = params.checkpoint if params is not None else None
    return ManifestSpec(
        action="created",
        source="ai",  # IPTC trainedAlgorithmicMedia
        training=training,
        software_agent={"name": checkpoint or GENERATOR, "version": "unknown"},
        action_parameters={"description": "generated with ComfyUI"},
        text=text,
        assertions=[Assertion(ASSERTION, data)],
    )


def _save_one(
    pixels: Image.Image,
    path: Path,
    entries: list[tuple[str, str]] | None,
    *,
    training: Training,
    batch_index: int,
    compress_level: int,
    identity: Identity | None,
    ledger: Ledger | None,
) -> str:
    """Publish one image; on any failure, save it as SaveImage does. Returns the report line."""
    from guard.publishing import publish

    before = _file_id(path)
    try:
        spec = generation_spec(
            entries, training=training, size=pixels.size, batch_index=batch_index
        )
        # SaveImage replaces a file of the same name (another writer took the counter meanwhile)
        published = publish(pixels, path, spec, identity=identity, ledger=ledger, force=True)
    except Exception as exc:
        written = _file_id(path)
        if written is not None and written != before:  # signed and saved; a later step failed
            logger.error("guard: %s was signed, but: %s", path, exc, exc_info=True)
            return f"{path.name}: signed, but guard reported an error: {exc}"
        logger.error(
            "guard: could not watermark and sign %s (%s); saving it as SaveImage does",
            path,
            exc,
            exc_info=True,
        )
        pixels.save(
            path,
            pnginfo=None if entries is None else png_info(entries),
            compress_level=compress_level,
        )
        return f"{path.name}: saved WITHOUT guard's watermark and signature: {exc}"
    done = (
        f"watermarked (ID {published.watermark_id}) and signed"
        if published.watermark_id
        else "signed"
    )
    line = f"{path.name}: {done}" + "".join(f"; {note}" for note in published.notes)
    logger.info("guard: %s", line)
    return line


def _file_id(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns
