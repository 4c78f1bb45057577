"""Load a Stable Diffusion model the way web UI users name them: hub id, diffusers folder, or one
.safetensors/.ckpt file; SD 1.x, SD 2.x and SDXL (with its optional refiner).

One pipeline is loaded per model; img2img and inpainting reuse its weights through `from_pipe`.
Every failure to find or read a model becomes a ModelNotFoundError naming the model and the fix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from generator.devices import short_of_memory
from generator.errors import ModelLoadError
from generator.hub import download_pipeline, offline
from generator.model_family import Family, folder_family, single_file_family
from generator.vae import set_vae
from guard.devices import pick_device
from guard.errors import ModelNotFoundError
from guard.modelref import ModelRef, loading, resolve
from guard.progress import disable as bar_disable
from guard.progress import drawn as bar_drawn

# SD 1.5-family default: runs on 4 GB GPUs and on CPU, 512x512 native, and it is what most
# LoRAs, embeddings and web UI infotexts in circulation were made for (see docs/generate.md).
DEFAULT_MODEL = "stable-diffusion-v1-5/stable-diffusion-v1-5"

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


def _dtype_kwarg() -> str:
    """diffusers renamed `torch_dtype` to `dtype`; use whichever the installed version expects."""
    from diffusers.utils import deprecation_utils

    return "dtype" if hasattr(deprecation_utils, "_resolve_dtype") else "torch_dtype"


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
    if not bar_drawn(progress):  # loading and download bars: one global switch, guard's rule
        from transformers.utils import logging as tlogging

        dlogging.disable_progress_bar()
        tlogging.disable_progress_bar()
    ref = resolve(model)
    device = pick_device(device)
    dtype = torch.float16 if device in ("cuda", "mps") else torch.float32
    config_str = str(config) if config is not None else None

    default_config: str | None = None
    if ref.kind == "hub":
        folder = download_pipeline(ref, what)
        ref_path = folder
        family, refiner_only = folder_family(folder)
    elif ref.kind == "folder":
        assert ref.path is not None
        ref_path = ref.path
        family, refiner_only = folder_family(ref.path)
    else:
        assert ref.path is not None
        ref_path = ref.path
        family, refiner_only, default_config = single_file_family(ref.path, config_str)

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
        low_memory = short_of_memory(device, family)
    if low_memory:
        pipe.enable_attention_slicing()
        pipe.vae.enable_tiling()
    pipe.to(device)
    pipe.set_progress_bar_config(disable=bar_disable(progress), leave=False)
    return loaded


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
                str(ref.path), local_files_only=offline(), **extra, **kwargs
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
