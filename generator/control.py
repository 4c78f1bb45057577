"""ControlNet units as web UI's ControlNet extension runs and records them: OpenPose first, Canny.

A unit is a control picture, a ControlNet model and web UI's knobs (weight, guidance start/end).
The control picture comes from:
- `openpose:pose.png`: an OpenPose skeleton picture, used as is (extension module "none");
- `--pose pose.json`: the OpenPose JSON openpose-editor and the extension export, drawn in code
  (generator/pose.py; module "none");
- `--pose photo.jpg`: the pose detected in a photo with controlnet_aux's OpenPose detector when
  its weights are in the local Hugging Face cache (module "openpose");
- `canny:photo.png`: OpenCV's Canny edges, as the extension's canny preprocessor (module "canny":
  resized to 512 px on the short side, thresholds 100/200).
The control picture is fitted to the output size with the extension's default "Crop and Resize".

The infotext entry is the extension's own serialisation (internal_controlnet/args.py):
`ControlNet 0: "Module: none, Model: control_v11p_sd15_openpose [cab727d4], Weight: 1.0, Resize
Mode: Crop and Resize, Processor Res: 512, Threshold A: 0.5, Threshold B: 0.5, Guidance Start:
0.0, Guidance End: 1.0, Pixel Perfect: False, Control Mode: Balanced"`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from generator.errors import GenerationError

KINDS = ("openpose", "canny")
# ControlNet models used when --control-model is not given (hub ids, downloaded once online)
DEFAULT_MODELS = {
    ("sd", "openpose"): "lllyasviel/control_v11p_sd15_openpose",
    ("sd", "canny"): "lllyasviel/control_v11p_sd15_canny",
    ("sdxl", "openpose"): "thibaud/controlnet-openpose-sdxl-1.0",
    ("sdxl", "canny"): "diffusers/controlnet-canny-sdxl-1.0",
}
PROCESSOR_RES = 512  # the extension's default preprocessor resolution
CANNY_LOW, CANNY_HIGH = 100, 200
# the extension's values for sliders a module does not use (PreprocessorParameter defaults)
UNUSED_THRESHOLD = 0.5
POSE_DETECTOR_REPO = "lllyasviel/Annotators"


@dataclass
class Control:
    """One ControlNet unit as asked for (CLI `--control` / `--pose`, or library callers)."""

    kind: str  # "openpose" or "canny": which ControlNet
    image: Path  # a picture, or for openpose a pose JSON
    weight: float = 1.0
    start: float = 0.0  # guidance start / end, fractions of the steps
    end: float = 1.0
    model: str | None = None  # hub id, folder or file; None: DEFAULT_MODELS
    detect: bool = False  # openpose from a photo: run the pose detector

    @property
    def module(self) -> str:
        """The extension's preprocessor name for this unit."""
        if self.kind == "canny":
            return "canny"
        return "openpose" if self.detect else "none"

    @property
    def is_json(self) -> bool:
        return self.image.suffix.lower() == ".json"


def _numbers(parts: list[str], text: str, option: str) -> tuple[float, float, float]:
    try:
        values = [float(p) for p in parts]
    except ValueError as exc:
        raise GenerationError(
            f"{option} {text}: weight, start and end must be numbers "
            f"({option} KIND:IMAGE[:WEIGHT[:START:END]])"
        ) from exc
    weight = values[0] if values else 1.0
    start, end = (values[1], values[2]) if len(values) == 3 else (0.0, 1.0)
    return weight, start, end


def _split_path(rest: str, text: str, option: str) -> tuple[Path, tuple[float, float, float]]:
    """'pose.png:0.8:0:0.9' -> the path and its numbers; a path may itself hold ':'."""
    parts = rest.split(":")
    for count in (3, 1, 0):
        if len(parts) > count:
            head = ":".join(parts[: len(parts) - count])
            tail = parts[len(parts) - count :]
            if count == 0 or all(_is_number(t) for t in tail):
                return Path(head).expanduser(), _numbers(tail, text, option)
    raise GenerationError(f"{option} {text}: expected KIND:IMAGE[:WEIGHT[:START:END]]")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def parse_control(text: str) -> Control:
    """`--control openpose:pose.png[:weight[:start:end]]` or `canny:photo.png...`."""
    kind, sep, rest = text.partition(":")
    kind = kind.strip().lower()
    if not sep or kind not in KINDS:
        raise GenerationError(
            f"--control {text}: expected KIND:IMAGE[:WEIGHT[:START:END]] with KIND one of "
            f"{', '.join(KINDS)} (e.g. --control openpose:pose.png:0.8); for a pose JSON or a "
            "photo to detect a pose in, use --pose"
        )
    path, (weight, start, end) = _split_path(rest, text, "--control")
    return Control(kind, path, weight, start, end)


def parse_pose(text: str) -> Control:
    """`--pose pose.json[:weight[:start:end]]`, or a photo to detect the pose in."""
    path, (weight, start, end) = _split_path(text, text, "--pose")
    detect = path.suffix.lower() != ".json"
    return Control("openpose", path, weight, start, end, detect=detect)


def validate(controls: list[Control]) -> None:
    """Checks that need no model: files, numbers, the pose JSON itself, the detector's presence."""
    for n, c in enumerate(controls):
        where = f"ControlNet {n} ({c.kind}:{c.image})"
        if c.kind not in KINDS:
            raise GenerationError(f"{where}: unknown kind; use one of {', '.join(KINDS)}")
        if not c.image.is_file():
            raise GenerationError(f"{where}: no such file")
        if not 0.0 <= c.weight <= 2.0:
            raise GenerationError(f"{where}: weight {c.weight}: use 0 to 2, as web UI does")
        if not 0.0 <= c.start <= c.end <= 1.0:
            raise GenerationError(
                f"{where}: guidance start {c.start} and end {c.end}: use 0 <= start <= end <= 1"
            )
        if c.is_json:
            from generator.pose import Pose

            Pose.load(c.image)
        if c.detect:
            _detector()  # fails now, with the way out, rather than after the model loaded


# ---- the control picture ---------------------------------------------------------------------------
def control_image(c: Control, width: int, height: int) -> Any:
    """The unit's control picture at the output size (PIL RGB)."""
    from guard.media import imageio

    if c.is_json:
        from generator.pose import Pose

        picture = Pose.load(c.image).render()
    else:
        picture = imageio.load(c.image).image.convert("RGB")
        if c.kind == "canny":
            picture = canny(picture)
        elif c.detect:
            picture = detect_pose(picture)
    return crop_and_resize(picture, width, height)


def crop_and_resize(picture: Any, width: int, height: int) -> Any:
    """The extension's "Crop and Resize": scale to cover the output, then cut the centre."""
    import cv2
    import numpy as np
    from PIL import Image

    array = np.asarray(picture.convert("RGB"))
    h, w = array.shape[:2]
    k = max(height / h, width / w)
    new_w, new_h = max(round(w * k), width), max(round(h * k), height)
    interpolation = cv2.INTER_AREA if k < 1 else cv2.INTER_LANCZOS4
    resized = cv2.resize(array, (new_w, new_h), interpolation=interpolation)
    top, left = (new_h - height) // 2, (new_w - width) // 2
    return Image.fromarray(resized[top : top + height, left : left + width])


def canny(picture: Any, low: int = CANNY_LOW, high: int = CANNY_HIGH) -> Any:
    """The extension's canny preprocessor: short side to 512 px, edge-padded to a multiple of 64,
    cv2.Canny, padding removed; white edges on black, RGB."""
    import cv2
    import numpy as np
    from PIL import Image

    array = np.asarray(picture.convert("RGB"))
    h, w = array.shape[:2]
    k = PROCESSOR_RES / min(h, w)
    new_h, new_w = round(h * k), round(w * k)
    interpolation = cv2.INTER_CUBIC if k > 1 else cv2.INTER_AREA
    resized = cv2.resize(array, (new_w, new_h), interpolation=interpolation)
    pad_h, pad_w = -new_h % 64, -new_w % 64
    padded = np.pad(resized, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    edges = cv2.Canny(padded, low, high)[:new_h, :new_w]
    return Image.fromarray(cv2.cvtColor(edges, cv2.COLOR_GRAY2RGB))


def _detector() -> Any:
    """controlnet_aux's OpenPose detector from the local cache, or an error that says what to do."""
    way_out = (
        "Give the pose as a skeleton picture (--control openpose:pose.png) or as OpenPose JSON "
        "from openpose-editor or web UI's ControlNet extension (--pose pose.json)."
    )
    try:
        from controlnet_aux import OpenposeDetector
    except ImportError as exc:
        raise GenerationError(
            "--pose PHOTO: detecting a pose in a photo needs the controlnet_aux package "
            "(pip install controlnet-aux) and its OpenPose weights "
            f"({POSE_DETECTOR_REPO}) in the local Hugging Face cache. " + way_out
        ) from exc
    try:
        return OpenposeDetector.from_pretrained(POSE_DETECTOR_REPO)
    except Exception as exc:
        raise GenerationError(
            f"--pose PHOTO: the OpenPose detector weights ({POSE_DETECTOR_REPO}) are not in the "
            f"local Hugging Face cache and cannot be downloaded now ({type(exc).__name__}). "
            f"Download them once on a connected machine (huggingface-cli download "
            f"{POSE_DETECTOR_REPO} body_pose_model.pth), or: " + way_out
        ) from exc


def detect_pose(photo: Any) -> Any:
    detector = _detector()
    return detector(photo, detect_resolution=PROCESSOR_RES, image_resolution=PROCESSOR_RES)


# ---- the infotext ----------------------------------------------------------------------------------
def unit_text(c: Control, model_name: str, model_hash: str | None) -> str:
    """The extension's serialisation of a unit (the value of `ControlNet N`)."""
    canny_unit = c.module == "canny"
    fields = {
        "Module": c.module,
        "Model": f"{model_name} [{model_hash}]" if model_hash else model_name,
        "Weight": str(float(c.weight)),
        "Resize Mode": "Crop and Resize",
        "Processor Res": str(PROCESSOR_RES),
        "Threshold A": str(float(CANNY_LOW if canny_unit else UNUSED_THRESHOLD)),
        "Threshold B": str(float(CANNY_HIGH if canny_unit else UNUSED_THRESHOLD)),
        "Guidance Start": str(float(c.start)),
        "Guidance End": str(float(c.end)),
        "Pixel Perfect": "False",
        "Control Mode": "Balanced",
    }
    return ", ".join(f"{k}: {v}" for k, v in fields.items())


def parse_unit(text: str) -> dict[str, str]:
    """`Module: none, Model: x [h], ...` -> its fields (the extension's ControlNetUnit.parse)."""
    out: dict[str, str] = {}
    for item in text.split(","):
        key, sep, value = item.strip().partition(": ")
        if sep:
            out[key] = value
    return out


# ---- models ----------------------------------------------------------------------------------------
@dataclass
class LoadedControlNet:
    model: Any  # diffusers ControlNetModel
    name: str
    hash: str | None


def load_controlnet(ref: str | Path, base: Any) -> LoadedControlNet:
    """A ControlNet as web UI users have them: hub id, diffusers folder, or one file (.safetensors
    / .pth, the extension's LDM layout or diffusers'), matched to the base model's architecture."""
    import diffusers

    from generator.checkpoints import read_state_dict
    from generator.errors import ModelLoadError
    from generator.hashes import controlnet_hash
    from generator.hub import download_snapshot
    from guard.modelref import loading, resolve

    model_ref = resolve(ref)
    dtype = base.pipe.unet.dtype
    if model_ref.kind == "single_file":
        assert model_ref.path is not None
        path = model_ref.path
        with loading(model_ref, "ControlNet"):
            state = read_state_dict(path)
        from diffusers.loaders.single_file_utils import convert_controlnet_checkpoint

        model = diffusers.ControlNetModel.from_unet(base.pipe.unet, load_weights_from_unet=False)
        try:
            converted = convert_controlnet_checkpoint(state, dict(model.config))
            model.load_state_dict(converted, strict=True)
        except (RuntimeError, KeyError, ValueError) as exc:
            raise ModelLoadError(
                f"ControlNet '{ref}' does not fit model '{base.name}' ({base.family.upper()}): "
                f"{' '.join(str(exc).split())[:240]}. Use a ControlNet made for this model family."
            ) from exc
    else:
        if model_ref.kind == "hub":
            path = download_snapshot(model_ref, "ControlNet")
        else:
            assert model_ref.path is not None
            path = model_ref.path
        with loading(model_ref, "ControlNet"):
            model = diffusers.ControlNetModel.from_pretrained(str(path), local_files_only=True)
        expected = int(base.pipe.unet.config.cross_attention_dim)
        if int(model.config.cross_attention_dim) != expected:
            raise ModelLoadError(
                f"ControlNet '{ref}' was made for another model family (text width "
                f"{model.config.cross_attention_dim}, '{base.name}' has {expected}); use a "
                f"ControlNet made for {base.family.upper()}"
            )
    model = model.to(device=base.pipe.unet.device, dtype=dtype)
    return LoadedControlNet(model, model_ref.name, controlnet_hash(path))
