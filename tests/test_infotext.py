"""web UI's `parameters` text: exact round trip, typed fields, and reading it from image files."""

from __future__ import annotations

import json

import pytest
from PIL import Image, PngImagePlugin

from guard.webui.infotext import (
    Infotext,
    format_number,
    lora_tags,
    quote,
    read_file,
    strip_lora_tags,
    unquote,
)

# The example from issue 4, verbatim.
ISSUE_EXAMPLE = (
    "a blue bird, flying over a field of flowers\n"
    "Negative prompt: EasyNegative\n"
    "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 2822745983, Size: 512x512, "
    "Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, "
    'TI hashes: "EasyNegative: c74b4e810b03", Version: v1.5.1'
)

# Lines in the shapes web UI writes them (newer schedule-type field, LoRA tags, hires fix,
# multi-line prompts, refiner, escaped quotes, no negative prompt).
WEB_UI_EXAMPLES = [
    ISSUE_EXAMPLE,
    "masterpiece, best quality, 1girl, (smile:1.2)\n<lora:add_detail:0.5>\n"
    "Negative prompt: (worst quality, low quality:1.4), EasyNegative,\nbad-hands-5\n"
    "Steps: 28, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: 3591623520, "
    "Size: 512x768, Model hash: 7f96a1a9ca, Model: anything-v5, Denoising strength: 0.45, "
    "Clip skip: 2, Hires upscale: 2, Hires steps: 12, Hires upscaler: R-ESRGAN 4x+ Anime6B, "
    'Lora hashes: "add_detail: 7c6bad76eb54", '
    'TI hashes: "EasyNegative: c74b4e810b03, bad-hands-5: aa7651be154c", Version: v1.9.4',
    "a photo of an astronaut riding a horse on mars\n"
    "Steps: 30, Sampler: Euler a, CFG scale: 7, Seed: 12345, Size: 1024x1024, "
    "Model hash: 31e35c80fc, Model: sd_xl_base_1.0, Refiner: sd_xl_refiner_1.0 [7440042bbd], "
    "Refiner switch at: 0.8, Version: v1.6.0",
    "portrait of a cat\nNegative prompt: lowres\n"
    "Steps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 1, Size: 512x512, "
    'Model: my-model, Wildcard prompt: "a \\"quoted\\" word, here", Version: v1.7.0',
]


@pytest.mark.parametrize("text", WEB_UI_EXAMPLES)
def test_round_trip_is_exact(text):
    info = Infotext.parse(text)
    assert info.to_text() == text
    # and through the structured form the assertion stores
    assert Infotext.from_dict(json.loads(json.dumps(info.to_dict()))).to_text() == text


def test_issue_example_fields():
    info = Infotext.parse(ISSUE_EXAMPLE)
    assert info.prompt == "a blue bird, flying over a field of flowers"
    assert info.negative_prompt == "EasyNegative"
    assert info.get("Steps") == 20
    assert info.get("Sampler") == "Euler a"
    assert info.get("CFG scale") == 7.0
    assert info.get("Seed") == 2822745983
    assert info.size == (512, 512)
    assert info.get("Model hash") == "6ce0161689"
    assert info.get("Model") == "v1-5-pruned-emaonly"
    assert info.get("TI hashes") == {"EasyNegative": "c74b4e810b03"}
    assert info.get("Version") == "v1.5.1"
    d = info.to_dict()
    assert (d["steps"], d["seed"], d["width"], d["height"]) == (20, 2822745983, 512, 512)
    assert d["ti_hashes"] == {"EasyNegative": "c74b4e810b03"}


def test_multiline_prompts_and_lora_tags():
    info = Infotext.parse(WEB_UI_EXAMPLES[1])
    assert info.prompt == "masterpiece, best quality, 1girl, (smile:1.2)\n<lora:add_detail:0.5>"
    assert info.negative_prompt == "(worst quality, low quality:1.4), EasyNegative,\nbad-hands-5"
    assert info.loras == [("add_detail", 0.5)]
    assert info.get("Schedule type") == "Karras"
    assert info.get("Denoising strength") == 0.45
    assert info.get("Clip skip") == 2
    assert info.get("TI hashes") == {"EasyNegative": "c74b4e810b03", "bad-hands-5": "aa7651be154c"}
    assert info.to_dict()["hires_upscaler"] == "R-ESRGAN 4x+ Anime6B"  # typed: a hires fix field


def test_quoted_values_are_unquoted():
    info = Infotext.parse(WEB_UI_EXAMPLES[3])
    assert info.params["Wildcard prompt"] == 'a "quoted" word, here'
    # web UI's parser keeps an unquoted ':' inside a value
    other = Infotext.parse("a\nSteps: 1, Model: my model: v2, Seed: 3")
    assert other.params["Model"] == "my model: v2"


def test_quote_rule():
    assert quote("Euler a") == "Euler a"
    assert quote("a, b") == '"a, b"'
    assert quote("a: b") == '"a: b"'
    assert quote("two\nlines") == '"two\\nlines"'
    assert quote("ünïcode, kept") == '"ünïcode, kept"'
    assert unquote('"a, b"') == "a, b"
    assert unquote('"broken') == '"broken'
    assert format_number(7.0) == "7" and format_number(7.5) == "7.5" and format_number(20) == "20"


def test_short_last_line_is_prompt_not_parameters():
    info = Infotext.parse("a cat\nSteps: 20, Seed: 1")  # fewer than three pairs: web UI's rule
    assert info.prompt == "a cat\nSteps: 20, Seed: 1"
    assert info.params == {}
    assert Infotext.parse("just a prompt").prompt == "just a prompt"


def test_no_negative_prompt_writes_no_line():
    info = Infotext("a cat", "", {"Steps": "20", "Sampler": "Euler", "Seed": "3"})
    assert info.to_text() == "a cat\nSteps: 20, Sampler: Euler, Seed: 3"


def test_lora_tag_helpers():
    prompt = "a cat <lora:detail:0.7>, sitting <lora:style>"
    assert lora_tags(prompt) == [("detail", 0.7), ("style", 1.0)]
    assert strip_lora_tags(prompt) == "a cat, sitting"


def test_read_png_text_chunk(tmp_path):
    meta = PngImagePlugin.PngInfo()
    meta.add_text("parameters", ISSUE_EXAMPLE)
    path = tmp_path / "webui.png"
    Image.new("RGB", (32, 32), "red").save(path, pnginfo=meta)
    info, where = read_file(path)
    assert info is not None and info.to_text() == ISSUE_EXAMPLE
    assert where == "PNG text chunk"


@pytest.mark.parametrize(("fmt", "suffix"), [("JPEG", ".jpg"), ("WEBP", ".webp")])
def test_read_exif_user_comment(tmp_path, fmt, suffix):
    """JPEG/WebP from web UI: EXIF UserComment, 'UNICODE' prefix + UTF-16 (piexif's helper)."""
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = b"UNICODE\x00" + ISSUE_EXAMPLE.encode("utf-16-be")
    path = tmp_path / f"webui{suffix}"
    Image.new("RGB", (32, 32), "blue").save(path, fmt, exif=exif.tobytes())
    info, where = read_file(path)
    assert info is not None and info.to_text() == ISSUE_EXAMPLE
    assert where == "EXIF UserComment"


def test_image_without_parameters(tmp_path):
    path = tmp_path / "plain.png"
    Image.new("RGB", (32, 32)).save(path)
    assert read_file(path) == (None, None)
