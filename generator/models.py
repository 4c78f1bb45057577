"""Load a Stable Diffusion model the way web UI users name them: hub id, diffusers folder, or one
.safetensors/.ckpt file; SD 1.x, SD 2.x and SDXL (with its optional refiner).

One pipeline is loaded per model; img2img and inpainting reuse its weights through `from_pipe`.
Every failure to find or read a model becomes a ModelNotFoundError naming the model and the fix.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from guard.errors import GuardError, ModelNotFoundError
from guard.modelref import ModelRef, loading, resolve

# SD 1.5-family default: runs on 4 GB GPUs and on CPU, 512x512 native, and it is what most
# LoRAs, embeddings and web UI infotexts in circulation were made for (see docs/generate.md).
DEFAULT_MODEL = "stable-diffusion-v1-5/stable-diffusion-v1-5"

Family = Literal["sd", "sdxl"]
Task = Literal["txt2img", "img2img", "inpaint"]

PIPELINES: dict[Family, dict[Task, str]] = {
    "sd": {
        "txt2img": "StableDiffusionPipeline",
        "img2img": "StableDiffusionImg2ImgPipeline",
        "inpaint": "StableDiffusionInpaintPipeline",
    },
    "sdxl": {
        "txt2img": "StableDiffusionXLPipeline",
        "img2img": "StableDiffusionXLImg2ImgPipeline",
        "inpaint": "StableDiffusionXLInpaintPipeline",
    },
}

# the same tasks with ControlNet units
CONTROL_PIPELINES: dict[Family, dict[Task, str]] = {
    "sd": {
        "txt2img": "StableDiffusionControlNetPipeline",
        "img2img": "StableDiffusionControlNetImg2ImgPipeline",
        "inpaint": "StableDiffusionControlNetInpaintPipeline",
    },
    "sdxl": {
        "txt2img": "StableDiffusionXLControlNetPipeline",
        "img2img": "StableDiffusionXLControlNetImg2ImgPipeline",
        "inpaint": "StableDiffusionXLControlNetInpaintPipeline",
    },
}

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


class ModelLoadError(GuardError):
    """A model file or folder exists but is not something guard can generate with."""


@dataclass
class LoadedModel:
    """A loaded pipeline plus what the infotext and the manifest say about it."""

    pipe: Any
    ref: ModelRef
    family: Family
    hash: str | None  # web UI's short model hash
    device: str
    refiner_only: bool = False
    vae_name: str | None = None
    vae_hash: str | None = None
    _tasks: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        return self.ref.name

    @property
    def native_size(self) -> int:
        """The resolution the model was trained at (512 SD 1.x, 768 SD 2.x-v, 1024 SDXL)."""
        unet = self.pipe.unet.config
        return int(unet.sample_size) * int(self.pipe.vae_scale_factor)

    @property
    def inpainting_unet(self) -> bool:
        return int(self.pipe.unet.config.in_channels) == 9

    def pipeline(self, task: Task) -> Any:
        """The pipeline for a task, sharing this model's weights (no second load)."""
        if task not in self._tasks:
            import diffusers

            if task == "txt2img" and self.refiner_only:
                raise ModelLoadError(
                    f"{self.name}: is an SDXL refiner, which cannot start from a prompt alone; "
                    "use it with --refiner, or give --init-image"
                )
            if task == "txt2img" and self.inpainting_unet:
                raise ModelLoadError(
                    f"{self.name}: is an inpainting model; give --init-image and --mask, "
                    "or choose a regular model for text-to-image"
                )
            cls = getattr(diffusers, PIPELINES[self.family][task])
            pipe = self.pipe if isinstance(self.pipe, cls) else cls.from_pipe(self.pipe)
            self._tasks[task] = pipe
        return self._tasks[task]

    def control_pipeline(self, task: Task, controlnets: list[Any]) -> Any:
        """The task's ControlNet pipeline over this model's weights and the given ControlNets."""
        import diffusers

        base = self.pipeline(task)  # the same refusals (refiner, inpainting UNet) apply
        cls = getattr(diffusers, CONTROL_PIPELINES[self.family][task])
        net = (
            controlnets[0] if len(controlnets) == 1 else diffusers.MultiControlNetModel(controlnets)
        )
        return cls.from_pipe(base, controlnet=net)


# ---- devices -------------------------------------------------------------------------------------
def pick_device(device: str = "auto") -> str:
    import torch

    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise GuardError("--device cuda: no CUDA GPU is visible to torch; use --device cpu")
    if device == "mps" and not (
        getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    ):
        raise GuardError("--device mps: Apple Metal is not available here; use --device cpu")
    return device


def _low_memory(device: str, family: Family) -> bool:
    """Attention slicing and VAE tiling cost ~10% speed; use them only when memory is short."""
    import torch

    gib = 1 << 30
    if device == "cuda":
        total = torch.cuda.get_device_properties(0).total_memory
        return total < (12 if family == "sdxl" else 8) * gib
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return False
    return total < (32 if family == "sdxl" else 16) * gib


def _dtype_kwarg() -> str:
    """diffusers renamed `torch_dtype` to `dtype`; use whichever the installed version expects."""
    from diffusers.utils import deprecation_utils

    return "dtype" if hasattr(deprecation_utils, "_resolve_dtype") else "torch_dtype"


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


# ---- what kind of model is it --------------------------------------------------------------------
def _folder_family(folder: Path) -> tuple[Family, bool]:
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


def _checkpoint_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes of a checkpoint without reading its weights."""
    if path.suffix.lower() == ".safetensors":
        with path.open("rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(n))
        return {k: tuple(v["shape"]) for k, v in header.items() if k != "__metadata__"}
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    while isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    return {k: tuple(v.shape) for k, v in state.items() if hasattr(v, "shape")}


def single_file_type(path: Path) -> str:
    """diffusers' name for the architecture of a single-file checkpoint ('v1', 'xl_base', ...)."""
    import torch
    from diffusers.loaders.single_file_utils import infer_diffusers_model_type

    try:
        shapes = _checkpoint_shapes(path)
    except Exception as exc:  # truncated file, pickle with code, not a checkpoint at all
        raise ModelNotFoundError(
            f"{path}: cannot be read as a model checkpoint ({type(exc).__name__}: {exc}). "
            "It may be incomplete or, for .ckpt, contain code guard refuses to unpickle; "
            "re-download it or use the .safetensors version."
        ) from exc
    meta = {k: torch.empty(s, device="meta") for k, s in shapes.items()}
    return infer_diffusers_model_type(meta)


def _single_file_family(path: Path, config: str | None) -> tuple[Family, bool, str | None]:
    if config and Path(config).is_dir():
        family, refiner_only = _folder_family(Path(config))
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


# ---- loading -------------------------------------------------------------------------------------
def load_model(
    model: str | Path = DEFAULT_MODEL,
    *,
    config: str | Path | None = None,
    vae: str | Path | None = None,
    device: str = "auto",
    low_memory: bool | None = None,
    progress: bool = True,
    share_from: LoadedModel | None = None,
    what: str = "model",
) -> LoadedModel:
    """Load a model reference onto a device: fp16 on GPUs, fp32 on CPU.

    `config` is for single-file checkpoints: a diffusers folder (or cached hub id) of the same
    architecture, or an original .yaml, so loading works offline. `share_from` lends an SDXL
    base's VAE and second text encoder to a refiner, as diffusers' own examples do. `what` names
    the model in error messages ("model", "refiner").
    """
    import torch
    from diffusers.utils import logging as dlogging

    dlogging.set_verbosity_error()  # diffusers' warnings are for developers, not for users
    if not progress:
        from transformers.utils import logging as tlogging

        dlogging.disable_progress_bar()
        tlogging.disable_progress_bar()
    ref = resolve(model)
    device = pick_device(device)
    dtype = torch.float16 if device in ("cuda", "mps") else torch.float32
    config_str = str(config) if config is not None else None

    default_config: str | None = None
    if ref.kind == "hub":
        folder = _download(ref, what)
        ref_path = folder
        family, refiner_only = _folder_family(folder)
    elif ref.kind == "folder":
        assert ref.path is not None
        ref_path = ref.path
        family, refiner_only = _folder_family(ref.path)
    else:
        assert ref.path is not None
        ref_path = ref.path
        family, refiner_only, default_config = _single_file_family(ref.path, config_str)

    import diffusers

    task: Task = "img2img" if refiner_only else "txt2img"
    cls = getattr(diffusers, PIPELINES[family][task])
    kwargs: dict[str, Any] = {_dtype_kwarg(): dtype}
    if family == "sd":
        # web UI runs without the NSFW classifier; loading it would cost 1.2 GB and a download
        kwargs.update(safety_checker=None, requires_safety_checker=False)
    if share_from is not None and family == "sdxl" and share_from.family == "sdxl":
        kwargs.update(vae=share_from.pipe.vae)
        if getattr(share_from.pipe, "text_encoder_2", None) is not None:
            kwargs.update(text_encoder_2=share_from.pipe.text_encoder_2)

    if ref.kind == "single_file":
        pipe = _from_single_file(cls, ref, config_str, default_config, kwargs, what)
    else:
        with loading(ref, what):
            pipe = cls.from_pretrained(str(ref_path), local_files_only=True, **kwargs)

    from generator.hashes import model_hash

    loaded = LoadedModel(
        pipe=pipe,
        ref=ref,
        family=family,
        hash=model_hash(ref_path),
        device=device,
        refiner_only=refiner_only,
    )
    if vae is not None:
        set_vae(loaded, vae)
    if low_memory is None:
        low_memory = _low_memory(device, family)
    if low_memory:
        pipe.enable_attention_slicing()
        pipe.vae.enable_tiling()
    pipe.to(device)
    pipe.set_progress_bar_config(disable=not progress, leave=False)
    return loaded


def _download(ref: ModelRef, what: str = "model") -> Path:
    """The local snapshot folder of a hub model (downloaded once when online)."""
    from diffusers import DiffusionPipeline

    with loading(ref, what):
        # safety_checker=None: its 1.2 GB of weights are never used (see load_model)
        folder = DiffusionPipeline.download(
            ref.raw, local_files_only=_offline(), safety_checker=None
        )
    return Path(folder)


def download_snapshot(ref: ModelRef, what: str = "model") -> Path:
    """The local snapshot folder of any hub repository (a VAE, a ControlNet)."""
    with loading(ref, what):
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(ref.raw, local_files_only=_offline()))


def _from_single_file(
    cls: Any,
    ref: ModelRef,
    config: str | None,
    default_config: str | None,
    kwargs: dict,
    what: str = "model",
) -> Any:
    extra: dict[str, Any] = {}
    if config is not None:
        if config.lower().endswith((".yaml", ".yml")):
            extra["original_config"] = config
        else:
            extra["config"] = config
    try:
        with loading(ref, what):
            return cls.from_single_file(
                str(ref.path), local_files_only=_offline(), **extra, **kwargs
            )
    except ModelNotFoundError as exc:
        if config is not None:
            raise
        needed = f" ({default_config})" if default_config else ""
        raise ModelNotFoundError(
            f"{what} '{ref.raw}' is a single-file checkpoint; diffusers needs the configuration "
            f"of its base model{needed}, which is not in the local Hugging Face cache, and the "
            "hub cannot be reached. Pass a local diffusers folder of the same architecture with "
            "--config DIR (or the original .yaml), or run once online to cache it."
        ) from exc


def set_vae(loaded: LoadedModel, vae: str | Path) -> None:
    """Swap in another VAE (web UI's SD VAE setting): hub id, diffusers folder or single file."""
    from diffusers import AutoencoderKL

    from generator.hashes import vae_hash

    ref = resolve(vae)
    current = loaded.pipe.vae
    dtype = current.dtype
    if ref.kind == "single_file":
        assert ref.path is not None
        with loading(ref, "VAE"):
            state = _read_state_dict(ref.path)
        new = AutoencoderKL.from_config(current.config)
        if not any(k.startswith(("encoder.down_blocks", "decoder.up_blocks")) for k in state):
            from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

            state = convert_ldm_vae_checkpoint(state, new.config)
        try:
            new.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ModelLoadError(
                f"VAE '{vae}' does not fit model '{loaded.name}' (different architecture): "
                f"{str(exc).splitlines()[0]}"
            ) from exc
        path = ref.path
    else:
        if ref.kind == "hub":
            path = download_snapshot(ref, "VAE")
        else:
            assert ref.path is not None
            path = ref.path
        folder = path / "vae" if (path / "vae" / "config.json").is_file() else path
        with loading(ref, "VAE"):
            new = AutoencoderKL.from_pretrained(str(folder), local_files_only=True)
        path = folder
    loaded.pipe.vae = new.to(device=current.device, dtype=dtype)
    loaded._tasks.clear()
    loaded.vae_name = ref.name
    loaded.vae_hash = vae_hash(path)


def _read_state_dict(path: Path) -> dict[str, Any]:
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    while isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    return state
