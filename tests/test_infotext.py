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
    """JPEG/WebP from web UI: EXIF UserComment, 'UNICODE' prefix + UTF-16, written as web UI
    writes it (modules/images.py: piexif.dump of piexif.helper.UserComment.dump, "unicode")."""
    import piexif
    import piexif.helper

    comment = piexif.helper.UserComment.dump(ISSUE_EXAMPLE, encoding="unicode")
    exif = piexif.dump({"Exif": {piexif.ExifIFD.UserComment: comment}})
    path = tmp_path / f"webui{suffix}"
    Image.new("RGB", (32, 32), "blue").save(path, fmt, exif=exif)
    info, where = read_file(path)
    assert info is not None and info.to_text() == ISSUE_EXAMPLE
    assert where == "EXIF UserComment"


def test_image_without_parameters(tmp_path):
    path = tmp_path / "plain.png"
    Image.new("RGB", (32, 32)).save(path)
    assert read_file(path) == (None, None)


# ---- ComfyUI's `prompt` graph -------------------------------------------------------------------
# The `prompt` text chunk of ComfyUI's default text-to-image workflow, as ComfyUI writes it.
COMFYUI_PROMPT = {
    "3": {
        "class_type": "KSampler",
        "inputs": {
            "seed": 156680208700286,
            "steps": 20,
            "cfg": 8,
            "sampler_name": "euler",
            "scheduler": "normal",
            "denoise": 1,
            "model": ["4", 0],
            "positive": ["6", 0],
            "negative": ["7", 0],
            "latent_image": ["5", 0],
        },
    },
    "4": {
        "class_type": "CheckpointLoaderSimple",
        "inputs": {"ckpt_name": "v1-5-pruned-emaonly.safetensors"},
    },
    "5": {
        "class_type": "EmptyLatentImage",
        "inputs": {"width": 512, "height": 512, "batch_size": 1},
    },
    "6": {
        "class_type": "CLIPTextEncode",
        "inputs": {
            "text": "beautiful scenery nature glass bottle landscape, , purple galaxy bottle,",
            "clip": ["4", 1],
        },
    },
    "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "text, watermark", "clip": ["4", 1]}},
    "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
    "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}},
}
COMFYUI_FIELDS = {
    "generator": "ComfyUI",
    "prompt": "beautiful scenery nature glass bottle landscape, , purple galaxy bottle,",
    "negative_prompt": "text, watermark",
    "checkpoint": "v1-5-pruned-emaonly.safetensors",
    "seed": 156680208700286,
    "steps": 20,
    "sampler": "euler",
    "scheduler": "normal",
    "cfg_scale": 8.0,
}


def _comfyui_png(path, prompt_text: str):
    meta = PngImagePlugin.PngInfo()
    meta.add_text("prompt", prompt_text)
    Image.new("RGB", (16, 16)).save(path, pnginfo=meta)
    return path


def _info(*args):
    from click.testing import CliRunner

    from guard.cli import main

    result = CliRunner().invoke(main, ["info", *map(str, args)], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_comfyui_prompt_graph_gives_its_parameters():
    from guard.provenance.generator_tags import comfyui_parameters

    params = comfyui_parameters({"prompt": json.dumps(COMFYUI_PROMPT)})
    assert params is not None and params.to_dict() == COMFYUI_FIELDS
    assert comfyui_parameters({"parameters": ISSUE_EXAMPLE}) is None
    assert comfyui_parameters({"prompt": "a photo of a cat"}) is None  # not ComfyUI's


def test_guard_info_on_a_comfyui_png(tmp_path):
    path = _comfyui_png(tmp_path / "ComfyUI_00001_.png", json.dumps(COMFYUI_PROMPT))
    code, stdout, stderr = _info(path)
    assert code == 0, stderr
    assert stdout.splitlines() == [
        "Prompt: beautiful scenery nature glass bottle landscape, , purple galaxy bottle,",
        "Negative prompt: text, watermark",
        "Checkpoint: v1-5-pruned-emaonly.safetensors",
        "Seed: 156680208700286",
        "Steps: 20",
        "Sampler: euler",
        "Scheduler: normal",
        "CFG: 8",
    ]
    code, stdout, _ = _info(path, "--json")
    [report] = json.loads(stdout)
    assert code == 0 and report["found"] and report["source"] == "ComfyUI prompt graph"
    assert {k: report[k] for k in COMFYUI_FIELDS} == COMFYUI_FIELDS


def _graph(**changes):
    graph = json.loads(json.dumps(COMFYUI_PROMPT))
    for node, inputs in changes.items():
        graph[node]["inputs"].update(inputs)
    return graph


def _chain(n: int) -> dict:
    """A KSampler whose positive prompt is n conditioning nodes away (a hostile, deep graph)."""
    graph = _graph(**{"3": {"positive": ["c0", 0]}})
    for i in range(n):
        graph[f"c{i}"] = {
            "class_type": "ConditioningZeroOut",
            "inputs": {"conditioning": [f"c{i + 1}", 0]},
        }
    return graph


HOSTILE = {
    # chunk text -> the fields still read from it (None: no generation parameters at all)
    "malformed JSON": ('{"3": {"class_type": "KSampler", "inputs": {"seed": 1', None),
    "not an object": ("[1, 2, 3]", None),
    "nested too deep": ("[" * 100_000 + "]" * 100_000, None),
    "over the size limit": (json.dumps({**COMFYUI_PROMPT, "x": "y" * (1 << 20)}), None),
    "links to missing nodes": (
        json.dumps(_graph(**{"3": {"positive": ["99", 0], "model": ["98", 0]}})),
        {"prompt": None, "checkpoint": "v1-5-pruned-emaonly.safetensors", "steps": 20},
    ),
    "link cycles": (
        json.dumps(
            {
                **_graph(**{"3": {"positive": ["10", 0], "negative": ["3", 0]}}),
                "10": {"class_type": "ConditioningCombine", "inputs": {"conditioning": ["11", 0]}},
                "11": {"class_type": "ConditioningCombine", "inputs": {"conditioning": ["10", 0]}},
            }
        ),
        {"prompt": None, "negative_prompt": None, "seed": 156680208700286},
    ),
    "a model cycle and no loader": (
        json.dumps(
            {
                k: v
                for k, v in _graph(**{"3": {"model": ["12", 0]}}).items()
                if v["class_type"] != "CheckpointLoaderSimple"
            }
            | {"12": {"class_type": "LoraLoader", "inputs": {"model": ["12", 0]}}}
        ),
        {"checkpoint": None, "negative_prompt": "text, watermark"},
    ),
    "wrong types everywhere": (
        json.dumps(
            _graph(
                **{
                    "3": {"seed": "1", "steps": True, "cfg": [1], "sampler_name": 3, "positive": 6},
                    "7": {"text": ["6"]},
                }
            )
            | {"x": "not a node", "y": {"class_type": "KSampler", "inputs": "not a dict"}}
        ),
        {"seed": None, "steps": None, "cfg_scale": None, "sampler": None, "prompt": None},
    ),
    "a huge graph": (
        json.dumps(_chain(10_000)),  # 0.9 MB: under the size limit
        {"prompt": None, "negative_prompt": "text, watermark", "scheduler": "normal"},
    ),
}


@pytest.mark.parametrize("case", HOSTILE)
def test_a_hostile_comfyui_prompt_chunk_is_a_clean_message_or_partial(tmp_path, case):
    from guard.provenance.generator_tags import comfyui_parameters

    text, expected = HOSTILE[case]
    params = comfyui_parameters({"prompt": text})
    code, stdout, stderr = _info(_comfyui_png(tmp_path / "comfy.png", text))
    assert "Traceback" not in stderr
    if expected is None:
        assert params is None
        assert code == 1 and stderr.endswith("no generation parameters found\n") and not stdout
    else:
        assert params is not None
        assert {k: params.to_dict()[k] for k in expected} == expected
        assert code == 0 and stdout.strip() and not stderr
