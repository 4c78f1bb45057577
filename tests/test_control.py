"""ControlNet units: pose JSON drawn as OpenPose skeletons, Canny, the extension's infotext, tiny
in-code ControlNets saved as folders and single files, and generation they condition."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tiny_models as tm
import torch
from PIL import Image

from generator import control
from generator.errors import GenerationError
from generator.pose import COLORS, Pose
from generator.publishing import PublishOptions
from guard.webui.infotext import Infotext

# ---- tiny ControlNets ------------------------------------------------------------------------------


def tiny_controlnet(unet, seed: int = 3):
    """A ControlNet shaped for `unet`, its zero-initialised convolutions given random weights so
    that the control picture really changes the result (a fresh ControlNet adds nothing)."""
    from diffusers import ControlNetModel

    torch.manual_seed(seed)
    net = ControlNetModel.from_unet(unet)
    with torch.no_grad():
        zero_initialised = [
            *net.controlnet_down_blocks.parameters(),
            *net.controlnet_mid_block.parameters(),
            *net.controlnet_cond_embedding.conv_out.parameters(),  # else the picture adds nothing
        ]
        for p in zero_initialised:
            p.normal_(0, 0.3)
    return net


def ldm_state(net, unet_config) -> dict[str, torch.Tensor]:
    """The ControlNet in the extension's LDM layout (control_model.input_blocks..., zero_convs)."""
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING

    state = net.state_dict()
    unet_part = {
        k: v
        for k, v in state.items()
        if k.startswith(("down_blocks", "mid_block", "time_embedding", "conv_in", "add_embedding"))
    }
    out = {
        k.replace("model.diffusion_model.", "control_model."): v
        for k, v in tm._unet_to_ldm(unet_part, unet_config).items()
    }
    fixed = DIFFUSERS_TO_LDM_MAPPING["controlnet"]["layers"]
    for key, value in state.items():
        if key in fixed and key.startswith("controlnet_cond_embedding"):
            out["control_model." + fixed[key]] = value
        elif key.startswith("controlnet_cond_embedding.blocks."):
            i, rest = key.split(".")[2], key.split(".")[3]
            out[f"control_model.input_hint_block.{2 * (int(i) + 1)}.{rest}"] = value
        elif key.startswith("controlnet_down_blocks."):
            i, rest = key.split(".")[1], key.split(".")[2]
            out[f"control_model.zero_convs.{i}.0.{rest}"] = value
        elif key.startswith("controlnet_mid_block."):
            out[f"control_model.middle_block_out.0.{key.split('.')[-1]}"] = value
    return {k: v.contiguous() for k, v in out.items()}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from diffusers import StableDiffusionPipeline
    from safetensors.torch import save_file

    root = tmp_path_factory.mktemp("control")
    folder = tm.sd_folder(tmp_path_factory)
    unet = StableDiffusionPipeline.from_pretrained(folder).unet
    net = tiny_controlnet(unet)
    net.save_pretrained(root / "control_tiny_openpose", safe_serialization=True)
    save_file(ldm_state(net, unet.config), str(root / "control_tiny_openpose.safetensors"))
    torch.save(ldm_state(net, unet.config), root / "control_tiny_openpose.pth")
    tiny_controlnet(unet, seed=4).save_pretrained(root / "control_tiny_canny")
    pose = root / "pose.json"
    pose.write_text(json.dumps(POSE_JSON))
    photo = root / "photo.png"
    Image.fromarray(_square(96, 80)).save(photo)
    return {"sd": folder, "root": root, "pose": pose, "photo": photo}


@pytest.fixture(scope="module")
def gen(files, tmp_path_factory):
    from generator.generate import Generator
    from generator.models import load_model

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GUARD_HOME", str(tmp_path_factory.mktemp("home")))
        return Generator(load_model(files["sd"], progress=False), progress=False)


def _square(w: int, h: int) -> np.ndarray:
    a = np.zeros((h, w, 3), np.uint8)
    a[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = 255
    return a


# 18 COCO points of a person standing, in pixels of a 512x512 canvas (openpose-editor's export)
BODY = [
    (256, 80), (256, 140), (206, 140), (186, 220), (176, 300), (306, 140), (326, 220),
    (336, 300), (226, 300), (226, 400), (226, 490), (286, 300), (286, 400), (286, 490),
    (246, 70), (266, 70), (236, 76), (276, 76),
]  # fmt: skip
POSE_JSON = {
    "people": [{"pose_keypoints_2d": [v for x, y in BODY for v in (x, y, 1.0)]}],
    "canvas_width": 512,
    "canvas_height": 512,
}


# ---- pose JSON -------------------------------------------------------------------------------------
def test_pose_json_draws_the_openpose_skeleton():
    picture = np.asarray(Pose(POSE_JSON).render())
    assert picture.shape == (512, 512, 3)
    # each joint is a disc in its standard colour: nose red, neck orange, right shoulder ...
    for (x, y), color in zip(BODY, COLORS):
        assert tuple(picture[y, x]) == color, (x, y)
    # limbs are the colour at 60 %: neck -> right hip (limb 7, green) half way down
    assert tuple(picture[220, 241]) == tuple(int(c * 0.6) for c in COLORS[6])
    assert tuple(picture[5, 5]) == (0, 0, 0)  # black background
    # fractions of the canvas draw the same picture, and BODY_25 maps onto COCO
    normalised = {
        "people": [{"pose_keypoints_2d": [v for x, y in BODY for v in (x / 512, y / 512, 1)]}],
        "canvas_width": 512,
        "canvas_height": 512,
    }
    assert np.array_equal(np.asarray(Pose(normalised).render()), picture)
    body25 = [None] * 25
    for coco, b25 in enumerate((0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18)):
        body25[b25] = BODY[coco]
    body25 = [p or (0, 0) for p in body25]
    flat = [v for i, (x, y) in enumerate(body25) for v in (x, y, 0.0 if i in (8, 19) else 1.0)]
    as25 = {"people": [{"pose_keypoints_2d": flat}], "canvas_width": 512, "canvas_height": 512}
    assert np.array_equal(np.asarray(Pose(as25).render()), picture)


def test_pose_json_hands_face_and_missing_points():
    data = json.loads(json.dumps(POSE_JSON))
    person = data["people"][0]
    person["pose_keypoints_2d"][3 * 4 + 2] = 0  # right wrist not detected
    person["face_keypoints_2d"] = [250, 90, 1.0]
    person["hand_left_keypoints_2d"] = [v for i in range(21) for v in (330 + i, 310 + i, 1.0)]
    picture = np.asarray(Pose(data).render())
    assert tuple(picture[300, 176]) != COLORS[4]  # the missing wrist is not drawn
    assert tuple(picture[90, 250]) == (255, 255, 255)  # face points are white dots
    assert tuple(picture[330, 350]) == (0, 0, 255)  # hand joints are blue-on-RGB (0, 0, 255)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"canvas_width": 512, "canvas_height": 512}, "'people' list"),
        ({"people": [], "canvas_width": 512}, "canvas_width and canvas_height"),
        ({"people": [{"pose_keypoints_2d": [1, 2]}], "canvas_width": 64, "canvas_height": 64}, "triples"),
        ({"people": [{"pose_keypoints_2d": [1, 2, 1]}], "canvas_width": 64, "canvas_height": 64}, r"expected 18 \(COCO\)"),
        ({"people": [], "canvas_width": 64, "canvas_height": 64}, "no person"),
    ],
)  # fmt: skip
def test_bad_pose_json_says_what_is_wrong(data, message):
    with pytest.raises(GenerationError, match=message):
        Pose(data)


def test_extension_export_list_form(tmp_path):
    path = tmp_path / "poses.json"
    path.write_text(json.dumps([POSE_JSON]))  # the extension saves one pose per batch image
    assert Pose.load(path).width == 512


# ---- preprocessing ---------------------------------------------------------------------------------
def test_canny_is_opencvs_on_the_512_px_picture():
    import cv2

    photo = Image.fromarray(_square(128, 128))
    edges = np.asarray(control.canny(photo))
    assert edges.shape == (512, 512, 3)
    big = cv2.resize(_square(128, 128), (512, 512), interpolation=cv2.INTER_CUBIC)
    assert np.array_equal(edges[..., 0], cv2.Canny(big, 100, 200))
    assert edges[256, 120:136, 0].max() == 255 and edges[256, 256, 0] == 0


def test_crop_and_resize_covers_then_cuts_the_centre():
    wide = Image.fromarray(np.concatenate([np.zeros((64, 64, 3), np.uint8), _square(64, 64)], 1))
    out = control.crop_and_resize(wide, 32, 32)  # 128x64 -> 64x32 -> centre 32x32
    assert out.size == (32, 32)
    tall = control.crop_and_resize(wide, 64, 128)
    assert tall.size == (64, 128)


# ---- the extension's infotext ------------------------------------------------------------------------
def test_unit_text_is_the_extensions_layout():
    unit = control.Control("openpose", control.Path("pose.png"), 0.8, 0.0, 0.9)
    text = control.unit_text(unit, "control_v11p_sd15_openpose", "cab727d4")
    assert text == (
        "Module: none, Model: control_v11p_sd15_openpose [cab727d4], Weight: 0.8, "
        "Resize Mode: Crop and Resize, Processor Res: 512, Threshold A: 0.5, Threshold B: 0.5, "
        "Guidance Start: 0.0, Guidance End: 0.9, Pixel Perfect: False, Control Mode: Balanced"
    )
    canny = control.unit_text(control.Control("canny", control.Path("p.png")), "c", None)
    assert "Module: canny, Model: c, Weight: 1.0" in canny
    assert "Threshold A: 100.0, Threshold B: 200.0" in canny
    # in the parameters line it is JSON-quoted, and web UI's parser gets it back whole
    info = Infotext("a", "", {"Steps": "2", "Seed": "1", "ControlNet 0": text, "Version": "v"})
    line = info.to_text().splitlines()[-1]
    assert f'ControlNet 0: "{text}"' in line
    back = Infotext.parse(info.to_text()).params["ControlNet 0"]
    assert control.parse_unit(back)["Model"] == "control_v11p_sd15_openpose [cab727d4]"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("openpose:pose.png", ("openpose", "pose.png", 1.0, 0.0, 1.0)),
        ("openpose:pose.png:0.7", ("openpose", "pose.png", 0.7, 0.0, 1.0)),
        ("canny:dir/a:b.png:1.2:0.1:0.8", ("canny", "dir/a:b.png", 1.2, 0.1, 0.8)),
    ],
)
def test_control_option_syntax(text, expected):
    c = control.parse_control(text)
    assert (c.kind, str(c.image), c.weight, c.start, c.end) == expected


def test_control_option_errors(files, tmp_path):
    with pytest.raises(GenerationError, match="KIND one of openpose, canny"):
        control.parse_control("depth:x.png")
    with pytest.raises(GenerationError, match="no such file"):
        control.validate([control.parse_control("openpose:missing.png")])
    with pytest.raises(GenerationError, match=r"weight 3\.0"):
        control.validate([control.parse_control(f"openpose:{files['photo']}:3")])
    with pytest.raises(GenerationError, match="start <= end"):
        control.validate([control.parse_control(f"canny:{files['photo']}:1:0.8:0.2")])
    assert control.parse_pose(str(files["pose"])).module == "none"


def test_pose_from_a_photo_without_detector_weights_says_how_to_give_a_pose(files):
    unit = control.parse_pose(f"{files['photo']}:0.9")
    assert unit.detect and unit.module == "openpose"
    with pytest.raises(GenerationError) as info:
        control.validate([unit])
    message = str(info.value)
    assert "--pose pose.json" in message and "--control openpose:pose.png" in message
    assert "lllyasviel/Annotators" in message


# ---- models ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["control_tiny_openpose", "control_tiny_openpose.safetensors", "control_tiny_openpose.pth"])  # fmt: skip
def test_controlnet_loads_from_folder_and_single_files(gen, files, name):
    from diffusers import ControlNetModel

    from generator.hashes import controlnet_hash

    loaded = control.load_controlnet(files["root"] / name, gen.model)
    assert loaded.name == "control_tiny_openpose"
    assert loaded.hash is not None and len(loaded.hash) == 8
    assert loaded.hash == controlnet_hash(files["root"] / name)
    reference = ControlNetModel.from_pretrained(files["root"] / "control_tiny_openpose")
    for key, value in reference.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[key], value), key


def test_controlnet_for_another_family_is_refused(files, tmp_path_factory):
    from diffusers import StableDiffusionXLPipeline

    from generator.errors import ModelLoadError
    from generator.models import load_model

    xl = load_model(tm.sdxl_folder(tmp_path_factory), progress=False)
    with pytest.raises(ModelLoadError, match="another model family"):
        control.load_controlnet(files["root"] / "control_tiny_openpose", xl)
    with pytest.raises(ModelLoadError, match="does not fit"):
        control.load_controlnet(files["root"] / "control_tiny_openpose.safetensors", xl)
    del StableDiffusionXLPipeline


# ---- generation ------------------------------------------------------------------------------------
def _settings(**kw):
    from generator.settings import Settings

    base = {"prompt": "a blue bird", "steps": 3, "width": 64, "height": 64, "seed": 11}
    base.update(kw)
    return Settings(**base)


def _pixels(gen, **kw) -> np.ndarray:
    return np.asarray(next(gen.images(_settings(**kw))).image, dtype=np.int16)


def test_a_pose_json_conditions_the_generation(gen, files):
    model = str(files["root"] / "control_tiny_openpose")
    pose = control.parse_pose(str(files["pose"]))
    pose.model = model
    plain = _pixels(gen)
    posed = next(gen.images(_settings(controls=[pose])))
    assert not np.array_equal(np.asarray(posed.image, dtype=np.int16), plain)
    assert np.array_equal(_pixels(gen, controls=[pose]), np.asarray(posed.image, dtype=np.int16))
    # weight 0 adds nothing: the ControlNet pipeline then gives the plain picture
    silent = control.parse_pose(f"{files['pose']}:0")
    silent.model = model
    assert np.abs(_pixels(gen, controls=[silent]) - plain).max() <= 1
    # another pose, another picture
    moved = json.loads(json.dumps(POSE_JSON))
    moved["people"][0]["pose_keypoints_2d"] = [v for x, y in BODY for v in (512 - x, 512 - y, 1.0)]
    other = files["root"] / "moved.json"
    other.write_text(json.dumps(moved))
    flipped = control.parse_pose(str(other))
    flipped.model = model
    assert not np.array_equal(_pixels(gen, controls=[flipped]), np.asarray(posed.image))
    text = posed.infotext.to_text()
    assert 'ControlNet 0: "Module: none, Model: control_tiny_openpose [' in text
    assert posed.control_images[0].size == (64, 64)


def test_several_controls_and_their_manifest(gen, files, tmp_path):
    from guard.verdict import verify
    from guard.webui.infotext import GENERATION_ASSERTION

    pose = control.parse_pose(f"{files['pose']}:0.8:0:0.5")
    pose.model = str(files["root"] / "control_tiny_openpose.safetensors")
    edges = control.parse_control(f"canny:{files['photo']}")
    edges.model = str(files["root"] / "control_tiny_canny")
    [item] = gen.generate(
        _settings(controls=[pose, edges]), tmp_path, PublishOptions(watermark=False)
    )
    info = item.infotext.params
    unit0 = control.parse_unit(info["ControlNet 0"])
    unit1 = control.parse_unit(info["ControlNet 1"])
    assert (unit0["Weight"], unit0["Guidance End"], unit0["Module"]) == ("0.8", "0.5", "none")
    assert (unit1["Module"], unit1["Model"].split(" ")[0]) == ("canny", "control_tiny_canny")
    v = verify(item.path, watermark=False)
    ingredients = {i["title"]: i["relationship"] for i in v.c2pa.ingredients}
    assert ingredients["ControlNet 0 control image (pose.json)"] == "inputTo"
    assert ingredients["ControlNet 1 control image"] == "inputTo"
    data = v.c2pa.assertions[GENERATION_ASSERTION]
    assert [u["module"] for u in data["controlnets"]] == ["none", "canny"]


def test_sdxl_takes_a_controlnet_too(tmp_path_factory, files):
    from diffusers import StableDiffusionXLPipeline

    from generator.generate import Generator
    from generator.models import load_model

    folder = tm.sdxl_folder(tmp_path_factory)
    net_dir = files["root"] / "control_tiny_sdxl"
    if not net_dir.exists():
        tiny_controlnet(StableDiffusionXLPipeline.from_pretrained(folder).unet).save_pretrained(
            net_dir
        )
    xl = Generator(load_model(folder, progress=False), progress=False)
    pose = control.parse_pose(str(files["pose"]))
    pose.model = str(net_dir)
    made = next(xl.images(_settings(controls=[pose], steps=2)))
    plain = next(xl.images(_settings(steps=2)))
    assert made.image.size == (64, 64)
    assert not np.array_equal(np.asarray(made.image), np.asarray(plain.image))
    assert "ControlNet 0" in made.infotext.params


def test_cli_pose_and_control_model(files, tmp_path):
    from click.testing import CliRunner

    from guard.cli import main

    args = [
        "generate", "a cat", "--model", files["sd"], "--steps", "2", "--size", "64x64",
        "--seed", "5", "--pose", files["pose"], "--control-model",
        files["root"] / "control_tiny_openpose", "--no-watermark", "-o", tmp_path,
    ]  # fmt: skip
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    [path] = tmp_path.glob("*.png")
    info = Infotext.parse(Image.open(path).info["parameters"])
    assert info.params["ControlNet 0"].startswith("Module: none, Model: control_tiny_openpose [")
    bad = CliRunner().invoke(
        main,
        [*map(str, args[:-2]), "--control-model", "x", "-o", str(tmp_path)],
        catch_exceptions=False,
    )
    assert bad.exit_code == 2 and "one per --control/--pose" in bad.output
