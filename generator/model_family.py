"""Which kind of Stable Diffusion model a folder or checkpoint holds: SD 1.x/2.x ("sd") or SDXL,
and whether it is an SDXL refiner, decided before any weight is loaded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from generator import checkpoints
from generator.errors import ModelLoadError
from guard.errors import ModelNotFoundError

Family = Literal["sd", "sdxl"]

# diffusers' single-file model types -> guard's families
_SINGLE_FILE_TYPES: dict[str, Family] = {
    "v1": "sd",
    "inpainting": "sd",
    "v2": "sd",
    "inpainting_v2": "sd",
    "xl_base": "sdxl",
    "xl_inpaint": "sdxl",
    "xl_refiner": "sdxl",
    "playground-v2-5": "sdxl",
}


def folder_family(folder: Path) -> tuple[Family, bool]:
    index = folder / "model_index.json"
    if not index.is_file():
        raise ModelNotFoundError(
            f"{folder}: not a diffusers model folder (no model_index.json). Pass the folder that "
            "holds model_index.json, a .safetensors/.ckpt checkpoint, or a hub id."
        )
    try:
        info = json.loads(index.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelNotFoundError(f"{index}: unreadable ({exc})") from exc
    name = str(info.get("_class_name", ""))
    if "StableDiffusion" not in name:
        raise ModelLoadError(
            f"{folder}: is a {name or 'unknown'} model; guard generates with Stable Diffusion "
            "1.x, 2.x and SDXL models"
        )
    family: Family = "sdxl" if "XL" in name else "sd"
    refiner_only = family == "sdxl" and not (info.get("text_encoder") or [None])[0]
    return family, refiner_only


def single_file_type(path: Path) -> str:
    """diffusers' name for the architecture of a single-file checkpoint ('v1', 'xl_base', ...)."""
    import torch
    from diffusers.loaders.single_file_utils import infer_diffusers_model_type

    try:
        shapes = checkpoints.shapes(path)
    except Exception as exc:  # truncated file, pickle with code, not a checkpoint at all
        raise ModelNotFoundError(
            f"{path}: cannot be read as a model checkpoint ({type(exc).__name__}: {exc}). "
            "It may be incomplete or, for .ckpt, contain code guard refuses to unpickle; "
            "re-download it or use the .safetensors version."
        ) from exc
    meta = {k: torch.empty(s, device="meta") for k, s in shapes.items()}
    return infer_diffusers_model_type(meta)


def single_file_family(path: Path, config: str | None) -> tuple[Family, bool, str | None]:
    if config and Path(config).is_dir():
        family, refiner_only = folder_family(Path(config))
        return family, refiner_only, None
    model_type = single_file_type(path)
    if model_type not in _SINGLE_FILE_TYPES:
        raise ModelLoadError(
            f"{path}: is a '{model_type}' checkpoint; guard generates with Stable Diffusion 1.x, "
            "2.x and SDXL checkpoints"
        )
    from diffusers.loaders.single_file_utils import DIFFUSERS_DEFAULT_PIPELINE_PATHS

    base = DIFFUSERS_DEFAULT_PIPELINE_PATHS[model_type]["pretrained_model_name_or_path"]
    return _SINGLE_FILE_TYPES[model_type], model_type == "xl_refiner", base
