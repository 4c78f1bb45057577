"""guard's ComfyUI custom nodes (guard/integrations/comfyui), without ComfyUI.

ComfyUI cannot be installed here, so its module names are stood in for by the little the nodes
import: `folder_paths` (get_output_directory, get_save_image_path, get_annotated_filepath,
get_full_path, with ComfyUI's signatures and behaviour), `comfy.cli_args.args.disable_metadata`,
`comfy.utils.ProgressBar` and `comfy.model_management.throw_exception_if_processing_interrupted`.
The node package is installed into a fake ComfyUI folder by `guard integrations install`, loaded
as ComfyUI's nodes.load_custom_node loads a custom node folder (spec_from_file_location on its
__init__.py, under the folder's name), and every node is called as ComfyUI's execution.py calls
one: an instance, its hidden inputs filled in, FUNCTION called with keyword arguments, real torch
IMAGE tensors (B x H x W x C, float32 in 0..1).

What Save Image (guard) writes is compared with what SaveImage writes: `save_image_reference`
restates ComfyUI's nodes.py SaveImage.save_images (conversion, PngInfo chunks, names,
compress_level 4, the ui it returns).
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import logging
import os
import re
import sys
import types
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import tomllib
import torch
from click.testing import CliRunner
from helpers import art
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from guard.cli import main
from guard.integrations.install import MARKER, source
from guard.media import png_chunks

NODES = Path(__file__).resolve().parents[1] / "guard" / "integrations" / "comfyui" / "nodes"
HOST_FILES = ("main.py", "nodes.py", "folder_paths.py", "execution.py", "server.py")

# ComfyUI's default text-to-image graph as the browser queues it (API format), and the UI graph
# it sends along as extra_pnginfo["workflow"]
PROMPT = {
    "3": {
        "_meta": {"title": "KSampler"},
        "class_type": "KSampler",
        "inputs": {
            "seed": 8566257,
            "steps": 25,
            "cfg": 7.5,
            "sampler_name": "dpmpp_2m",
            "scheduler": "karras",
            "denoise": 1,
            "model": ["4", 0],
            "positive": ["6", 0],
            "negative": ["7", 0],
            "latent_image": ["5", 0],
        },
    },
    "4": {
        "_meta": {"title": "Load Checkpoint"},
        "class_type": "CheckpointLoaderSimple",
        "inputs": {"ckpt_name": "sd_xl_base_1.0.safetensors"},
    },
    "5": {
        "_meta": {"title": "Empty Latent Image"},
        "class_type": "EmptyLatentImage",
        "inputs": {"width": 320, "height": 256, "batch_size": 2},
    },
    "6": {
        "_meta": {"title": "CLIP Text Encode (Prompt)"},
        "class_type": "CLIPTextEncode",
        "inputs": {"text": "a café terrace at night, ☕ warm light", "clip": ["4", 1]},
    },
    "7": {
        "_meta": {"title": "CLIP Text Encode (Prompt)"},
        "class_type": "CLIPTextEncode",
        "inputs": {"text": "text, watermark", "clip": ["4", 1]},
    },
    "8": {
        "_meta": {"title": "VAE Decode"},
        "class_type": "VAEDecode",
        "inputs": {"samples": ["3", 0], "vae": ["4", 2]},
    },
    "9": {
        "_meta": {"title": "Save Image (guard)"},
        "class_type": "GuardSaveImage",
        "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]},
    },
}
EXTRA_DATA = {
    "extra_pnginfo": {
        "workflow": {
            "last_node_id": 9,
            "last_link_id": 9,
            "nodes": [
                {
                    "id": 9,
                    "type": "GuardSaveImage",
                    "pos": [1451, 189],
                    "size": [210, 270],
                    "widgets_values": ["ComfyUI"],
                    "inputs": [{"name": "images", "link": 9}],
                },
                {
                    "id": 3,
                    "type": "KSampler",
                    "widgets_values": [8566257, "fixed", 25, 7.5, "dpmpp_2m", "karras", 1],
                },
            ],
            "links": [[9, 8, 0, 9, 0, "IMAGE"]],
            "groups": [],
            "config": {},
            "extra": {"ds": {"scale": 1.0, "offset": [0, 0]}},
            "version": 0.4,
        }
    }
}


# -- ComfyUI's names, stood in for ----------------------------------------------------------------


def _get_save_image_path(filename_prefix, output_dir, image_width=0, image_height=0):
    """folder_paths.get_save_image_path's contract: the subfolder and name from the prefix
    (%width%/%height% filled in), the folder created, the counter one past the highest
    `{name}_NNNNN` already there; never outside the output folder."""

    def number(name):
        prefix_len = len(os.path.basename(filename_prefix))
        try:
            digits = int(name[prefix_len + 1 :].split("_")[0])
        except ValueError:
            digits = 0
        return digits, name[: prefix_len + 1]

    filename_prefix = filename_prefix.replace("%width%", str(image_width))
    filename_prefix = filename_prefix.replace("%height%", str(image_height))
    subfolder = os.path.dirname(os.path.normpath(filename_prefix))
    filename = os.path.basename(os.path.normpath(filename_prefix))
    full_output_folder = os.path.join(output_dir, subfolder)
    if os.path.commonpath((output_dir, os.path.abspath(full_output_folder))) != output_dir:
        raise Exception("Saving image outside the output folder is not allowed.")
    try:
        taken = [
            digits
            for digits, prefix in map(number, os.listdir(full_output_folder))
            if os.path.normcase(prefix[:-1]) == os.path.normcase(filename) and prefix[-1:] == "_"
        ]
        counter = max(taken) + 1
    except ValueError:
        counter = 1
    except FileNotFoundError:
        os.makedirs(full_output_folder, exist_ok=True)
        counter = 1
    return full_output_folder, filename, counter, subfolder, filename_prefix


class ProgressBar:
    """comfy.utils.ProgressBar(total, node_id=None) as a node sees it."""

    made: ClassVar[list[ProgressBar]] = []

    def __init__(self, total, node_id=None):
        self.total = total
        self.seen: list[tuple[int, int]] = []
        ProgressBar.made.append(self)

    def update_absolute(self, value, total=None, preview=None):
        self.seen.append((value, total if total is not None else self.total))


def fake_comfyui(root: Path) -> Path:
    """A ComfyUI checkout's root as guard sees it: the files at its top, and its folders."""
    root.mkdir(parents=True, exist_ok=True)
    for name in HOST_FILES:
        (root / name).write_text("# ComfyUI\n", encoding="utf-8")
    for folder in ("comfy", "custom_nodes", "output", "input", "temp", "models/checkpoints"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    return root


class Host:
    def __init__(self, root: Path, package: types.ModuleType, args: types.SimpleNamespace):
        self.root = root
        self.output = root / "output"
        self.nodes = package
        self.args = args


@pytest.fixture
def comfyui(tmp_path, monkeypatch) -> Host:
    """guard's nodes installed in a fake ComfyUI, loaded as ComfyUI loads a custom node."""
    from guard.integrations.install import install

    root = fake_comfyui(tmp_path / "ComfyUI")
    folder_paths = types.ModuleType("folder_paths")
    folder_paths.get_output_directory = lambda: str(root / "output")
    folder_paths.get_input_directory = lambda: str(root / "input")
    folder_paths.get_temp_directory = lambda: str(root / "temp")
    folder_paths.get_save_image_path = _get_save_image_path

    def get_annotated_filepath(name, default_dir=None):
        for tag, folder in (("[output]", "output"), ("[input]", "input"), ("[temp]", "temp")):
            if name.endswith(tag):
                return os.path.join(str(root / folder), name[: -len(tag) - 1])
        return os.path.join(default_dir or str(root / "input"), name)

    def get_full_path(folder_name, filename):
        path = root / "models" / folder_name / filename
        return str(path) if path.is_file() else None

    folder_paths.get_annotated_filepath = get_annotated_filepath
    folder_paths.get_full_path = get_full_path
    comfy = types.ModuleType("comfy")
    comfy.__path__ = []
    cli_args = types.ModuleType("comfy.cli_args")
    args = types.SimpleNamespace(disable_metadata=False)
    cli_args.args = args
    utils = types.ModuleType("comfy.utils")
    utils.ProgressBar = ProgressBar
    model_management = types.ModuleType("comfy.model_management")
    model_management.throw_exception_if_processing_interrupted = lambda: None
    comfy.cli_args, comfy.utils, comfy.model_management = cli_args, utils, model_management
    for name, module in {
        "folder_paths": folder_paths,
        "comfy": comfy,
        "comfy.cli_args": cli_args,
        "comfy.utils": utils,
        "comfy.model_management": model_management,
    }.items():
        monkeypatch.setitem(sys.modules, name, module)
    ProgressBar.made.clear()

    where = install("comfyui", root)
    # nodes.load_custom_node: the folder's name is the module's, its __init__.py the spec
    module_name = os.path.basename(where)
    spec = importlib.util.spec_from_file_location(module_name, os.path.join(where, "__init__.py"))
    assert spec is not None and spec.loader is not None
    package = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, module_name, package)
    spec.loader.exec_module(package)
    yield Host(root, package, args)
    for name in [n for n in sys.modules if n.startswith(module_name + ".")]:
        del sys.modules[name]


def run(node_class, prompt=None, extra_data=None, **inputs):
    """Call a node as ComfyUI's execution.py does: a fresh instance, the hidden inputs from
    INPUT_TYPES()["hidden"] (PROMPT: the API graph, EXTRA_PNGINFO: extra_data's extra_pnginfo,
    else None), FUNCTION with keyword arguments; a dict return is split into ui and result."""
    obj = node_class()
    for name, kind in node_class.INPUT_TYPES().get("hidden", {}).items():
        if kind == "PROMPT":
            inputs[name] = prompt if prompt is not None else {}
        elif kind == "EXTRA_PNGINFO":
            inputs[name] = (extra_data or {}).get("extra_pnginfo", None)
    out = getattr(obj, node_class.FUNCTION)(**inputs)
    ui, result = (out.get("ui"), out.get("result")) if isinstance(out, dict) else (None, out)
    if result is not None:
        assert len(result) == len(node_class.RETURN_TYPES)
        for is_list, value in zip(getattr(node_class, "OUTPUT_IS_LIST", ()), result):
            assert not is_list or isinstance(value, list)
    return ui, result


def image_batch(*pictures: Image.Image) -> torch.Tensor:
    """An IMAGE as LoadImage makes one: B x H x W x 3, float32 in 0..1."""
    arrays = [np.array(p.convert("RGB")).astype(np.float32) / 255.0 for p in pictures]
    return torch.from_numpy(np.stack(arrays))


def load_image(path: Path) -> torch.Tensor:
    with Image.open(path) as im:
        return image_batch(im.convert("RGB"))


def save_image_reference(
    images, filename_prefix, prompt, extra_pnginfo, output_dir, *, metadata=True
):
    """ComfyUI's SaveImage.save_images (nodes.py), restated: what it writes and returns."""
    folder, filename, counter, subfolder, _ = _get_save_image_path(
        filename_prefix, output_dir, images[0].shape[1], images[0].shape[0]
    )
    results = []
    for batch_number, image in enumerate(images):
        pixels = Image.fromarray(np.clip(255.0 * image.cpu().numpy(), 0, 255).astype(np.uint8))
        info = None
        if metadata:
            info = PngInfo()
            if prompt is not None:
                info.add_text("prompt", json.dumps(prompt))
            if extra_pnginfo is not None:
                for key in extra_pnginfo:
                    info.add_text(key, json.dumps(extra_pnginfo[key]))
        file = f"{filename.replace('%batch_num%', str(batch_number))}_{counter:05}_.png"
        pixels.save(os.path.join(folder, file), pnginfo=info, compress_level=4)
        results.append({"filename": file, "subfolder": subfolder, "type": "output"})
        counter += 1
    return {"ui": {"images": results}}


def chunks(path: Path) -> dict[str, bytes]:
    """The PNG's text chunks, raw (length, type, data, CRC), by keyword; XMP left out."""
    return {png_chunks.keyword(c): c for c in png_chunks.text_chunks(path.read_bytes())}


BATCH = image_batch(art(320, 256, seed=1), art(320, 256, seed=2))


# -- the package ComfyUI and its registry read ------------------------------------------------------


def test_the_node_package_is_publishable_to_the_comfy_registry():
    """docs.comfy.org/registry/specifications: [project] name/version/license/description,
    [project.urls] Repository, [tool.comfy] PublisherId/DisplayName/Icon."""
    meta = tomllib.loads((NODES / "pyproject.toml").read_text(encoding="utf-8"))
    project, comfy = meta["project"], meta["tool"]["comfy"]
    name = project["name"]
    assert len(name) < 100 and re.fullmatch(r"[A-Za-z][A-Za-z0-9]*(?:[-_.][A-Za-z0-9]+)*", name)
    assert "comfyui" not in name.lower()
    assert re.fullmatch(r"\d+\.\d+\.\d+", project["version"])
    assert project["license"] in ({"text": "Apache-2.0"}, {"file": "LICENSE"})
    assert project["description"] and "Repository" in project["urls"]
    assert {"PublisherId", "DisplayName", "Icon"} <= set(comfy) and comfy["DisplayName"]


def test_the_mappings_and_each_nodes_contract(comfyui):
    classes, names = comfyui.nodes.NODE_CLASS_MAPPINGS, comfyui.nodes.NODE_DISPLAY_NAME_MAPPINGS
    assert (
        set(classes)
        == set(names)
        == {
            "GuardSaveImage",
            "GuardProtectArtwork",
            "GuardVerify",
            "GuardDetectWatermark",
        }
    )
    assert names["GuardSaveImage"] == "Save Image (guard)"
    for cls in classes.values():
        types_ = cls.INPUT_TYPES()
        assert set(types_) <= {"required", "optional", "hidden"}
        assert isinstance(cls.RETURN_TYPES, tuple) and callable(getattr(cls, cls.FUNCTION))
        assert cls.CATEGORY == "image/guard"
        assert len(getattr(cls, "RETURN_NAMES", cls.RETURN_TYPES)) == len(cls.RETURN_TYPES)
    save = classes["GuardSaveImage"]
    types_ = save.INPUT_TYPES()
    assert types_["required"]["images"][0] == "IMAGE"
    assert types_["required"]["filename_prefix"][0] == "STRING"
    assert types_["required"]["filename_prefix"][1]["default"] == "ComfyUI"
    assert types_["hidden"] == {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}
    assert save.OUTPUT_NODE is True and save.FUNCTION == "save_images"
    node = save()
    assert (node.output_dir, node.type, node.compress_level) == (str(comfyui.output), "output", 4)
    protect = classes["GuardProtectArtwork"].INPUT_TYPES()["required"]
    assert protect["strength"][0] == ["low", "medium", "high"]
    assert classes["GuardProtectArtwork"].RETURN_TYPES == ("IMAGE",)
    assert classes["GuardDetectWatermark"].RETURN_TYPES == ("STRING", "FLOAT")


# -- Save Image (guard) -----------------------------------------------------------------------------


def test_save_image_writes_what_save_image_writes_watermarked_and_signed(comfyui, tmp_path):
    import guard

    save = comfyui.nodes.NODE_CLASS_MAPPINGS["GuardSaveImage"]
    ui, (report,) = run(save, PROMPT, EXTRA_DATA, images=BATCH, filename_prefix="ComfyUI")
    reference_dir = tmp_path / "reference-output"
    reference_dir.mkdir()
    extra = EXTRA_DATA["extra_pnginfo"]
    expected = save_image_reference(BATCH, "ComfyUI", PROMPT, extra, str(reference_dir))

    assert (
        ui["images"]
        == expected["ui"]["images"]
        == [
            {"filename": "ComfyUI_00001_.png", "subfolder": "", "type": "output"},
            {"filename": "ComfyUI_00002_.png", "subfolder": "", "type": "output"},
        ]
    )
    assert report == "\n".join(ui["text"]) and len(ui["text"]) == 2
    for item, line in zip(ui["images"], ui["text"]):
        path = comfyui.output / item["filename"]
        reference = reference_dir / item["filename"]
        # ComfyUI's chunks, byte for byte (keyword, json.dumps text, CRC), in SaveImage's order
        mine, theirs = chunks(path), chunks(reference)
        assert list(mine) == list(theirs) == ["prompt", "workflow"]
        assert mine == theirs
        assert png_chunks.text(mine["prompt"]) == json.dumps(PROMPT)
        assert png_chunks.text(mine["workflow"]) == json.dumps(extra["workflow"])
        # the same picture, but for guard's watermark
        with Image.open(path) as a, Image.open(reference) as b:
            assert a.size == b.size == (320, 256) and a.mode == b.mode == "RGB"
            delta = np.abs(np.asarray(a, np.int16) - np.asarray(b, np.int16))
        assert 0 < delta.mean() < 3

        v = guard.verify(path)
        assert v.state == "trusted", v.summary()
        assert v.watermark is not None and v.watermark.found
        assert line == f"{item['filename']}: watermarked (ID {v.watermark.id}) and signed"
        assert v.ledger is not None and v.ledger.verified and v.ledger.content_match
        assert v.digital_source_type.endswith("/trainedAlgorithmicMedia")
        assert v.training == "notAllowed"
        record = v.c2pa.assertions["org.guard.comfyui.generation"]
        assert "org.guard.generation" not in v.c2pa.assertions  # web UI's label, web UI's names
        assert {k: record[k] for k in ("checkpoint", "sampler", "scheduler", "seed", "steps")} == {
            "checkpoint": "sd_xl_base_1.0.safetensors",
            "sampler": "dpmpp_2m",
            "scheduler": "karras",
            "seed": 8566257,
            "steps": 25,
        }
        assert record["generator"] == "ComfyUI" and record["cfg_scale"] == 7.5
        assert record["prompt"] == "a café terrace at night, ☕ warm light"
        assert (record["width"], record["height"]) == (320, 256)
    assert [v["batch_index"] for v in _records(comfyui.output, ui)] == [0, 1]

    # guard info reads the file with its ComfyUI reader (the prompt graph)
    result = CliRunner().invoke(
        main, ["info", "--json", str(comfyui.output / "ComfyUI_00001_.png")]
    )
    assert result.exit_code == 0, result.output
    [info] = json.loads(result.stdout)
    assert info["source"] == "ComfyUI prompt graph" and info["generator"] == "ComfyUI"
    assert (info["checkpoint"], info["seed"], info["steps"]) == (
        "sd_xl_base_1.0.safetensors",
        8566257,
        25,
    )
    assert (info["sampler"], info["scheduler"], info["cfg_scale"]) == ("dpmpp_2m", "karras", 7.5)
    text = CliRunner().invoke(main, ["info", str(comfyui.output / "ComfyUI_00002_.png")]).stdout
    assert "Sampler: dpmpp_2m" in text and "Scheduler: karras" in text

    # the counter goes on from the files already there, as SaveImage's does
    ui, _ = run(save, PROMPT, EXTRA_DATA, images=BATCH[:1], filename_prefix="ComfyUI")
    assert ui["images"] == [{"filename": "ComfyUI_00003_.png", "subfolder": "", "type": "output"}]


def _records(output: Path, ui: dict) -> list[dict]:
    import guard

    return [
        guard.verify(output / i["filename"], watermark=False).c2pa.assertions[
            "org.guard.comfyui.generation"
        ]
        for i in ui["images"]
    ]


def test_save_image_names_subfolders_sizes_and_batch_numbers_as_save_image(comfyui, tmp_path):
    save = comfyui.nodes.NODE_CLASS_MAPPINGS["GuardSaveImage"]
    prefix = "guard/run_%width%x%height%_b%batch_num%"
    ui, _ = run(save, PROMPT, EXTRA_DATA, images=BATCH, filename_prefix=prefix)
    reference_dir = tmp_path / "reference-output"
    reference_dir.mkdir()
    extra = EXTRA_DATA["extra_pnginfo"]
    expected = save_image_reference(BATCH, prefix, PROMPT, extra, str(reference_dir))
    assert (
        ui["images"]
        == expected["ui"]["images"]
        == [
            {"filename": "run_320x256_b0_00001_.png", "subfolder": "guard", "type": "output"},
            {"filename": "run_320x256_b1_00002_.png", "subfolder": "guard", "type": "output"},
        ]
    )
    assert all((comfyui.output / "guard" / i["filename"]).is_file() for i in ui["images"])
    # the page replaces these for SaveImage before queueing; for this node the server does
    today = dt.date.today()
    ui, _ = run(
        save,
        PROMPT,
        EXTRA_DATA,
        images=BATCH[:1],
        filename_prefix="%date:yyyy-MM-dd%/s%KSampler.seed%",
    )
    assert ui["images"] == [
        {"filename": "s8566257_00001_.png", "subfolder": today.isoformat(), "type": "output"}
    ]
    with pytest.raises(Exception, match="outside the output folder"):
        run(save, PROMPT, EXTRA_DATA, images=BATCH, filename_prefix="../escape")


def test_filename_prefix_replacements_the_page_makes_for_save_image_only():
    """%date:…% and %Node.widget%, as ComfyUI's frontend (applyTextReplacements) makes them."""
    from guard.integrations.comfyui.names import replace

    now = dt.datetime(2025, 3, 7, 9, 5, 2)
    workflow = {
        "nodes": [{"id": 3, "type": "KSampler", "properties": {"Node name for S&R": "base"}}]
    }
    graph = json.loads(json.dumps(PROMPT))
    graph["4"]["inputs"]["ckpt_name"] = "sdxl/base.safetensors"
    cases = {
        "%date:yyyy-MM-dd%/ComfyUI": "2025-03-07/ComfyUI",
        "%date:yy_M_d-hh_mm_ss%": "25_3_7-09_05_02",
        "%base.seed%_%base.cfg%": "8566257_7.5",  # by the S&R name the workflow gives
        "%KSampler.steps%": "25",  # no S&R name is KSampler now, but its title is
        "%Empty Latent Image.width%x%EmptyLatentImage.height%": "320x256",  # title, type
        "%CheckpointLoaderSimple.ckpt_name%": "sdxl_base.safetensors",  # no folders from values
        "%VAEDecode.samples%": "%VAEDecode.samples%",  # a link, not a widget
        "%Nowhere.width%_%width%_%batch_num%": "%Nowhere.width%_%width%_%batch_num%",
    }
    for text, expected in cases.items():
        assert replace(text, graph, workflow, now) == expected, text
    assert replace("%date:yyyy%", None, None, now) == "2025"


def test_save_image_without_a_workflow_and_with_metadata_disabled(comfyui):
    import guard

    save = comfyui.nodes.NODE_CLASS_MAPPINGS["GuardSaveImage"]
    # a prompt queued through the API without extra_pnginfo: only the prompt chunk
    ui, _ = run(save, PROMPT, None, images=BATCH[:1], filename_prefix="api")
    path = comfyui.output / ui["images"][0]["filename"]
    assert list(chunks(path)) == ["prompt"] and guard.verify(path).state == "trusted"

    comfyui.args.disable_metadata = True  # ComfyUI's --disable-metadata
    ui, _ = run(
        save, PROMPT, EXTRA_DATA, images=BATCH[:1], filename_prefix="private", training="allowed"
    )
    path = comfyui.output / ui["images"][0]["filename"]
    assert chunks(path) == {}
    v = guard.verify(path)
    assert v.state == "trusted" and v.watermark.found and v.training == "allowed"
    record = v.c2pa.assertions["org.guard.comfyui.generation"]
    assert set(record) == {"generator", "width", "height", "batch_index"}  # no parameters
    assert v.digital_source_type.endswith("/trainedAlgorithmicMedia")


def test_save_image_still_saves_as_save_image_does_when_signing_fails(
    comfyui, tmp_path, monkeypatch, caplog
):
    from guard.errors import SigningError

    def refuse(*args, **kwargs):
        raise SigningError("the C2PA SDK refused to sign (test)")

    monkeypatch.setattr("guard.publishing.c2pa_io.sign", refuse)
    save = comfyui.nodes.NODE_CLASS_MAPPINGS["GuardSaveImage"]
    with caplog.at_level(logging.ERROR):
        ui, (report,) = run(save, PROMPT, EXTRA_DATA, images=BATCH, filename_prefix="ComfyUI")
    reference_dir = tmp_path / "reference-output"
    reference_dir.mkdir()
    extra = EXTRA_DATA["extra_pnginfo"]
    expected = save_image_reference(BATCH, "ComfyUI", PROMPT, extra, str(reference_dir))
    assert ui["images"] == expected["ui"]["images"]
    for item in ui["images"]:  # SaveImage's file exactly: same pixels, chunks and compression
        mine = (comfyui.output / item["filename"]).read_bytes()
        assert mine == (reference_dir / item["filename"]).read_bytes()
    assert ui["text"] == [
        f"{i['filename']}: saved WITHOUT guard's watermark and signature: "
        "the C2PA SDK refused to sign (test)"
        for i in ui["images"]
    ]
    assert "WITHOUT" in report
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2 and "refused to sign" in errors[0].getMessage()

    # with --disable-metadata as well: SaveImage's file without any chunk
    comfyui.args.disable_metadata = True
    ui, _ = run(save, PROMPT, EXTRA_DATA, images=BATCH[:1], filename_prefix="private")
    expected = save_image_reference(
        BATCH[:1], "private", PROMPT, extra, str(reference_dir), metadata=False
    )
    name = ui["images"][0]["filename"]
    assert name == expected["ui"]["images"][0]["filename"]
    assert (comfyui.output / name).read_bytes() == (reference_dir / name).read_bytes()


def test_save_image_signs_an_image_too_small_for_the_watermark_and_says_so(comfyui):
    import guard

    save = comfyui.nodes.NODE_CLASS_MAPPINGS["GuardSaveImage"]
    ui, (report,) = run(save, PROMPT, EXTRA_DATA, images=image_batch(art(128, 128)))
    name = ui["images"][0]["filename"]
    assert report.startswith(f"{name}: signed; not watermarked: ")
    v = guard.verify(comfyui.output / name)
    assert v.state == "trusted" and not v.watermark.found
    assert list(chunks(comfyui.output / name)) == ["prompt", "workflow"]


# -- Protect Artwork, Verify, Detect Watermark --------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory) -> Path:
    import tiny_models as tm

    return tm.sd_folder(tmp_path_factory)


def test_protect_artwork_returns_a_protected_image_batch(comfyui, tiny_sd):
    node = comfyui.nodes.NODE_CLASS_MAPPINGS["GuardProtectArtwork"]
    images = image_batch(art(64, 64, seed=3), art(64, 64, seed=4))
    _, (protected,) = run(
        node, images=images, strength="low", mode="textural", model=str(tiny_sd), robust=False
    )
    assert isinstance(protected, torch.Tensor) and protected.dtype == torch.float32
    assert protected.shape == images.shape and protected.device.type == "cpu"
    assert float(protected.min()) >= 0 and float(protected.max()) <= 1
    delta = (protected - images).abs()
    assert float(delta.max()) <= 4 / 255 + 1e-6  # the low preset's eps
    assert float(delta.mean()) > 0
    [bar] = ProgressBar.made
    assert bar.seen[-1][0] == bar.seen[-1][1] == 2 * 6  # two images, six steps each
    assert [v for v, _ in bar.seen] == sorted(v for v, _ in bar.seen)


def test_protect_artwork_finds_a_checkpoint_by_its_comfyui_name(comfyui, monkeypatch):
    from guard.integrations.comfyui import protect

    seen = []

    def spy(images, **options):
        seen.append(options["model"])
        return images, []

    monkeypatch.setattr(protect, "protect_images", spy)
    node = comfyui.nodes.NODE_CLASS_MAPPINGS["GuardProtectArtwork"]
    ckpt = comfyui.root / "models" / "checkpoints" / "sd15" / "v1-5-pruned.safetensors"
    ckpt.parent.mkdir()
    ckpt.write_bytes(b"weights")
    for model in ("sd15/v1-5-pruned.safetensors", "someone/a-hub-model", "  "):
        run(node, images=BATCH, strength="medium", mode="textural", model=model, robust=True)
    assert seen == [str(ckpt), "someone/a-hub-model", None]


def test_verify_a_file_and_an_image(comfyui):
    save = comfyui.nodes.NODE_CLASS_MAPPINGS["GuardSaveImage"]
    verify = comfyui.nodes.NODE_CLASS_MAPPINGS["GuardVerify"]
    ui, _ = run(save, PROMPT, EXTRA_DATA, images=BATCH[:1], filename_prefix="ComfyUI")
    name = ui["images"][0]["filename"]

    ui, (texts, jsons) = run(verify, file=f"{name} [output]")
    [text], [data] = texts, [json.loads(j) for j in jsons]
    assert ui["text"] == texts
    assert text.splitlines()[0].startswith(f"{comfyui.output / name}: TRUSTED")
    assert "source: AI-generated" in text
    assert data["c2pa"]["state"] == "trusted" and data["watermark"]["found"]
    mark = data["watermark"]["id"]

    # pixels only (as LoadImage gives them): no manifest, the watermark and its record
    _, (texts, jsons) = run(verify, images=load_image(comfyui.output / name))
    [data] = [json.loads(j) for j in jsons]
    assert data["c2pa"]["state"] == "absent"
    assert data["watermark"]["found"] and data["watermark"]["id"] == mark
    assert data["ledger"]["match"] is True and data["digital_source_type"].endswith(
        "/trainedAlgorithmicMedia"
    )
    assert f"ID {mark}" in texts[0]

    with pytest.raises(ValueError, match="connect an IMAGE or name a file"):
        run(verify)
    again = verify.IS_CHANGED(file=f"{name} [output]")
    assert again != again  # NaN: ComfyUI never answers Verify from its cache


def test_detect_watermark_gives_the_id_and_p_value_per_image(comfyui):
    import guard

    save = comfyui.nodes.NODE_CLASS_MAPPINGS["GuardSaveImage"]
    detect = comfyui.nodes.NODE_CLASS_MAPPINGS["GuardDetectWatermark"]
    ui, _ = run(save, PROMPT, EXTRA_DATA, images=BATCH[:1], filename_prefix="ComfyUI")
    path = comfyui.output / ui["images"][0]["filename"]
    mark = guard.verify(path).watermark.id

    both = torch.cat([load_image(path), BATCH[1:]])  # a marked image, then an unmarked one
    ui, (ids, p_values) = run(detect, images=both)
    assert ids == [mark, ""]
    assert p_values[0] <= 1e-6 < p_values[1] and all(isinstance(p, float) for p in p_values)
    assert ui["text"][0].startswith(mark) and ui["text"][1].startswith("no watermark")


# -- guard integrations install comfyui PATH --------------------------------------------------------


def _cli(*args):
    return CliRunner().invoke(main, ["integrations", *map(str, args)])


def test_install_copies_the_node_package_and_uninstall_removes_it(tmp_path):
    root = fake_comfyui(tmp_path / "ComfyUI")
    result = _cli("install", "comfyui", root)
    assert result.exit_code == 0, result.output
    dest = root / "custom_nodes" / "guard-comfyui"
    assert str(dest) in result.output and not dest.is_symlink()
    files = {p.name for p in dest.iterdir()}
    assert {"__init__.py", "pyproject.toml", "README.md", "save_image.py", MARKER} <= files
    assert "__pycache__" not in files
    assert (dest / "save_image.py").read_bytes() == (NODES / "save_image.py").read_bytes()

    again = _cli("install", "comfyui", root)  # guard's own earlier copy is replaced
    assert again.exit_code == 0, again.output
    result = _cli("uninstall", "comfyui", root)
    assert result.exit_code == 0 and not dest.exists()
    assert (root / "custom_nodes").is_dir() and (root / "main.py").is_file()
    result = _cli("uninstall", "comfyui", root)
    assert result.exit_code == 2 and "is not installed there" in result.output


def test_install_link_points_at_guards_own_copy(tmp_path):
    root = fake_comfyui(tmp_path / "ComfyUI")
    result = _cli("install", "comfyui", root, "--link")
    assert result.exit_code == 0, result.output
    dest = root / "custom_nodes" / "guard-comfyui"
    assert dest.is_symlink() and dest.resolve() == source("comfyui").resolve() == NODES.resolve()
    assert _cli("uninstall", "comfyui", root).exit_code == 0
    assert not dest.exists() and not dest.is_symlink() and (NODES / "__init__.py").is_file()


def test_install_refuses_a_folder_that_is_not_guards_or_not_comfyui(tmp_path):
    root = fake_comfyui(tmp_path / "ComfyUI")
    theirs = root / "custom_nodes" / "guard-comfyui"
    theirs.mkdir()
    (theirs / "__init__.py").write_text("# someone else's nodes\n", encoding="utf-8")
    for command in (("install", "comfyui", root), ("uninstall", "comfyui", root)):
        result = _cli(*command)
        assert result.exit_code == 2 and "was not installed by guard" in result.output
    assert (theirs / "__init__.py").read_text(encoding="utf-8") == "# someone else's nodes\n"

    elsewhere = tmp_path / "not-comfyui"
    elsewhere.mkdir()
    (elsewhere / "main.py").write_text("print('hello')\n", encoding="utf-8")
    result = _cli("install", "comfyui", elsewhere)
    assert result.exit_code == 2 and "does not look like comfyui's folder" in result.output
    assert not (elsewhere / "custom_nodes").exists()
