"""web UI's PNG Info reads what `guard generate` writes, in PNG, JPEG and WebP.

`webui_read_info` is web UI 1.10's reading code (modules/images.py, read_info_from_image) for
these formats: the PNG `parameters` text, else the EXIF UserComment through piexif.load and
piexif.helper.UserComment.load, falling back to UTF-8 as web UI does. The text it gets must be
guard's infotext exactly, quoted ControlNet unit, schedule type and non-ASCII prompt included.
"""

from __future__ import annotations

import json

import pytest
import tiny_models as tm
from helpers import webui_read_info
from PIL import Image

from generator import control
from generator.publishing import PublishOptions
from guard.webui.infotext import Infotext

POSE = {
    "people": [
        {"pose_keypoints_2d": [v for i in range(18) for v in (100 + 10 * i, 50 + 20 * i, 1)]}
    ],
    "canvas_width": 512,
    "canvas_height": 512,
}


@pytest.fixture(scope="module")
def gen(tmp_path_factory):
    from diffusers import ControlNetModel, StableDiffusionPipeline

    from generator.generate import Generator
    from generator.models import load_model

    folder = tm.sd_folder(tmp_path_factory)
    root = tmp_path_factory.mktemp("reads")
    unet = StableDiffusionPipeline.from_pretrained(folder).unet
    ControlNetModel.from_unet(unet).save_pretrained(root / "control_tiny")
    (root / "pose.json").write_text(json.dumps(POSE))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GUARD_HOME", str(tmp_path_factory.mktemp("home")))
        g = Generator(load_model(folder, progress=False), progress=False)
    g.root = root  # type: ignore[attr-defined]
    return g


@pytest.mark.parametrize("fmt", ["png", "jpg", "webp"])
def test_web_ui_reads_guards_infotext(gen, tmp_path, fmt):
    from generator.settings import Settings

    pose = control.parse_pose(f"{gen.root / 'pose.json'}:0.8")
    pose.model = str(gen.root / "control_tiny")
    settings = Settings(
        "ein Vogel über dem Feld, (blue:1.2) — 青い鳥",
        negative_prompt="lowres",
        sampler="DPM++ 2M SDE",
        schedule_type="Align Your Steps",
        steps=2,
        width=64,
        height=64,
        seed=77,
        rng="nv",
        controls=[pose],
    )
    [item] = gen.generate(settings, tmp_path, PublishOptions(watermark=False, fmt=fmt))
    with Image.open(item.path) as im:
        text = webui_read_info(im)
    assert text == item.infotext.to_text()
    info = Infotext.parse(text)
    assert info.prompt == settings.prompt and info.negative_prompt == "lowres"
    assert info.params["Sampler"] == "DPM++ 2M SDE"
    assert info.params["Schedule type"] == "Align Your Steps"
    assert info.params["RNG"] == "NV" and info.params["Seed"] == "77"
    assert control.parse_unit(info.params["ControlNet 0"])["Weight"] == "0.8"
