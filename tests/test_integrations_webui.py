"""The web UI / Forge extension, driven the way web UI drives it, end to end on real files.

No web UI runs here. The extension's files are loaded as web UI loads a script (modules/
script_loading.py `load_module`: spec_from_file_location(basename, path)) against a stand-in for
the names they import, with web UI's documented signatures:

- modules.script_callbacks: ImageSaveParams(image, p, filename, pnginfo), on_before_image_saved,
  on_image_saved, on_ui_settings, on_ui_tabs, and the runners images.py calls
  (before_image_saved_callback / image_saved_callback: each callback called with `params`, an
  exception reported and swallowed, as `report_exception` does);
- modules.shared: `opts` (Options: data, data_labels, add_option, __getattr__ falling back to
  the option's default) and OptionInfo(default, label, component, component_args, ...,
  section=...);
- gradio, for the settings test only: Checkbox, Textbox and Radio markers (gradio is not
  installed here; the tab's gradio layout, `build_tab`, is not called by any test).

`save_image` below is a replica of the part of web UI's `modules/images.py` that writes a file:
`save_image` from `params = script_callbacks.ImageSaveParams(image, p, fullfn, pnginfo)` to
`script_callbacks.image_saved_callback(params)`, and `save_image_with_geninfo` whole (Forge
dfdcbab, modules/images.py lines 568-625 and 707-777, which match AUTOMATIC1111 v1.10's except
where `variant` says). `webui_read_info` is web UI's `read_info_from_image` for these formats.
"""

from __future__ import annotations

import gzip
import importlib.machinery
import importlib.util
import io
import os
import runpy
import sys
import types
from pathlib import Path
from typing import Any

import piexif
import piexif.helper
import pytest
from click.testing import CliRunner
from helpers import art, webui_read_info
from PIL import Image, PngImagePlugin

from guard.integrations import install as integrations
from guard.integrations.webui import saving
from guard.ledger import Ledger
from guard.media import jpeg_segments, png_chunks
from guard.verdict import verify
from guard.webui.infotext import GENERATION_ASSERTION, read_file

EXTENSION = Path(__file__).resolve().parents[1] / "guard/integrations/webui/extension"
INFOTEXT = (
    "a red fox in the snow, <lora:fur:0.8>, «hiver» 雪\n"
    "Negative prompt: blurry, lowres\n"
    "Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1234, "
    "Size: 512x512, Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Version: v1.10.1"
)


# ---- the stand-in for web UI's modules ----------------------------------------------------
class ImageSaveParams:  # modules/script_callbacks.py, as written there
    def __init__(self, image, p, filename, pnginfo):
        self.image = image
        self.p = p
        self.filename = filename
        self.pnginfo = pnginfo


class OptionInfo:  # modules/options.py: the constructor's signature, and info()
    def __init__(
        self,
        default=None,
        label="",
        component=None,
        component_args=None,
        onchange=None,
        section=None,
        refresh=None,
        comment_before="",
        comment_after="",
        infotext=None,
        restrict_api=False,
        category_id=None,
    ):
        self.default = default
        self.label = label
        self.component = component
        self.component_args = component_args
        self.section = section
        self.comment_after = comment_after

    def info(self, info):
        self.comment_after += f"<span class='info'>({info})</span>"
        return self


class Options:  # modules/options.py: data, data_labels, add_option, __getattr__
    def __init__(self, **data):
        self.__dict__["data"] = dict(data)
        self.__dict__["data_labels"] = {}

    def __getattr__(self, item):
        if item in self.data:
            return self.data[item]
        if item in self.data_labels:
            return self.data_labels[item].default
        raise AttributeError(item)

    def __setattr__(self, key, value):
        self.data[key] = value

    def add_option(self, key, info):
        self.data_labels[key] = info
        if key not in self.data:
            self.data[key] = info.default


class WebUI:
    """sys.modules entries for `modules`, `modules.script_callbacks`, `modules.shared`."""

    CATEGORIES = ("ui_tabs", "ui_settings", "before_image_saved", "image_saved")

    def __init__(self, monkeypatch: pytest.MonkeyPatch, **opts: Any) -> None:
        self.reported: list[str] = []  # what report_exception would have printed
        self.callbacks: dict[str, list[Any]] = {c: [] for c in self.CATEGORIES}
        callbacks = types.ModuleType("modules.script_callbacks")
        callbacks.ImageSaveParams = ImageSaveParams
        for category in self.CATEGORIES:
            setattr(callbacks, f"on_{category}", self._register(category))
        callbacks.before_image_saved_callback = self._runner("before_image_saved")
        callbacks.image_saved_callback = self._runner("image_saved")
        shared = types.ModuleType("modules.shared")
        shared.opts = Options(
            enable_pnginfo=True,
            jpeg_quality=80,
            webp_lossless=False,
            save_images_replace_action="Replace",
            outdir_samples="",
            outdir_extras_samples="outputs/extras-images",
            **opts,
        )
        shared.OptionInfo = OptionInfo
        package = types.ModuleType("modules")
        package.__path__ = []
        package.script_callbacks = callbacks
        package.shared = shared
        self.script_callbacks, self.shared, self.package = callbacks, shared, package
        self.monkeypatch = monkeypatch
        for name, module in (
            ("modules", package),
            ("modules.script_callbacks", callbacks),
            ("modules.shared", shared),
        ):
            monkeypatch.setitem(sys.modules, name, module)

    @property
    def opts(self) -> Options:
        return self.shared.opts

    def _register(self, category: str):
        def register(callback, *, name=None):
            self.callbacks[category].append(callback)

        return register

    def _runner(self, category: str):
        def run(params):
            for callback in self.callbacks[category]:
                try:
                    callback(params)
                except Exception as exc:  # report_exception: logged, the save goes on
                    self.reported.append(f"{category}: {exc!r}")

        return run

    def add_module(self, name: str, module: types.ModuleType) -> None:
        setattr(self.package, name, module)
        self.monkeypatch.setitem(sys.modules, f"modules.{name}", module)

    def load_extension(self) -> types.ModuleType:
        """modules/script_loading.py load_module, on the extension's script."""
        path = EXTENSION / "scripts" / "guard.py"
        spec = importlib.util.spec_from_file_location(os.path.basename(path), path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    # ---- modules/images.py, the part that writes the file -------------------------------------
    def save_image_with_geninfo(
        self,
        image,
        geninfo,
        filename,
        extension=None,
        existing_pnginfo=None,
        pnginfo_section_name="parameters",
    ):
        opts = self.opts
        if extension is None:
            extension = os.path.splitext(filename)[1]
        image_format = Image.registered_extensions()[extension]
        if extension.lower() == ".png":
            existing_pnginfo = existing_pnginfo or {}
            if opts.enable_pnginfo:
                existing_pnginfo[pnginfo_section_name] = geninfo
            if opts.enable_pnginfo:
                pnginfo_data = PngImagePlugin.PngInfo()
                for k, v in (existing_pnginfo or {}).items():
                    pnginfo_data.add_text(k, str(v))
            else:
                pnginfo_data = None
            image.save(
                filename, format=image_format, quality=opts.jpeg_quality, pnginfo=pnginfo_data
            )
        elif extension.lower() in (".jpg", ".jpeg", ".webp"):
            if image.mode == "RGBA":
                image = image.convert("RGB")
            elif image.mode == "I;16":
                image = image.point(lambda p: p * 0.0038910505836576).convert(
                    "RGB" if extension.lower() == ".webp" else "L"
                )
            image.save(
                filename,
                format=image_format,
                quality=opts.jpeg_quality,
                lossless=opts.webp_lossless,
            )
            if opts.enable_pnginfo and geninfo is not None:
                exif_bytes = piexif.dump(
                    {
                        "Exif": {
                            piexif.ExifIFD.UserComment: piexif.helper.UserComment.dump(
                                geninfo or "", encoding="unicode"
                            )
                        },
                    }
                )
                piexif.insert(exif_bytes, filename)
        elif extension.lower() == ".avif":
            if opts.enable_pnginfo and geninfo is not None:
                exif_bytes = piexif.dump(
                    {
                        "Exif": {
                            piexif.ExifIFD.UserComment: piexif.helper.UserComment.dump(
                                geninfo or "", encoding="unicode"
                            )
                        },
                    }
                )
            else:
                exif_bytes = None
            image.save(filename, format=image_format, quality=opts.jpeg_quality, exif=exif_bytes)
        else:
            image.save(filename, format=image_format, quality=opts.jpeg_quality)

    def save_image(
        self,
        image,
        fullfn,
        info=None,
        p=None,
        existing_info=None,
        pnginfo_section_name="parameters",
        variant="forge",
    ):
        """save_image from the callbacks on. variant="a1111": v1.10's `_atomically_save_image`
        returns nothing, so `already_saved_as` is the name asked for even when "Add number
        suffix" wrote `-1`; Forge returns the name it used (its "Chasing save issues", #2331)."""
        script_callbacks, opts = self.script_callbacks, self.opts
        pnginfo = existing_info or {}
        if info is not None:
            pnginfo[pnginfo_section_name] = info

        params = script_callbacks.ImageSaveParams(image, p, str(fullfn), pnginfo)
        stealth = sys.modules.get("modules.stealth_infotext")
        if stealth is not None and opts.enable_pnginfo:  # Forge only
            stealth.add_stealth_pnginfo(params)
        script_callbacks.before_image_saved_callback(params)

        image = params.image
        fullfn = params.filename
        info = params.pnginfo.get(pnginfo_section_name, None)

        def _atomically_save_image(image_to_save, filename_without_extension, extension):
            temp_file_path = f"{filename_without_extension}.tmp"
            self.save_image_with_geninfo(
                image_to_save,
                info,
                temp_file_path,
                extension,
                existing_pnginfo=params.pnginfo,
                pnginfo_section_name=pnginfo_section_name,
            )
            filename = filename_without_extension + extension
            without_extension = filename_without_extension
            if opts.save_images_replace_action != "Replace":
                n = 0
                while os.path.exists(filename):
                    n += 1
                    without_extension = f"{filename_without_extension}-{n}"
                    filename = without_extension + extension
            os.replace(temp_file_path, filename)
            return without_extension

        fullfn_without_extension, extension = os.path.splitext(params.filename)
        written = _atomically_save_image(image, fullfn_without_extension, extension)
        if variant == "forge":
            fullfn = written + extension
        image.already_saved_as = fullfn
        script_callbacks.image_saved_callback(params)
        return written + extension


class Processing:
    """The fields of `p` (modules/processing.py StableDiffusionProcessing) the save reads."""

    def __init__(self, tmp: Path, **fields: Any) -> None:
        self.outpath_samples = str(tmp / "txt2img-images")
        self.outpath_grids = str(tmp / "txt2img-grids")
        self.prompt = "a red fox in the snow, <lora:fur:0.8>, «hiver» 雪"
        self.negative_prompt = "blurry, lowres"
        self.prompts = [self.prompt, self.prompt]
        self.negative_prompts = [self.negative_prompt] * 2
        self.all_prompts, self.all_negative_prompts = self.prompts, self.negative_prompts
        self.seed = 1234
        self.seeds = self.all_seeds = [1234, 1235]
        self.sampler_name, self.scheduler = "DPM++ 2M", "Karras"
        self.steps, self.cfg_scale = 20, 7.0
        self.width = self.height = 512
        self.sd_model_name, self.sd_model_hash = "v1-5-pruned-emaonly", "6ce0161689"
        self.batch_index = 0
        self.comments: dict[str, int] = {}
        self.__dict__.update(fields)
        for folder in (self.outpath_samples, self.outpath_grids):
            Path(folder).mkdir(parents=True, exist_ok=True)

    def comment(self, text):  # processing.py: self.comments[text] = 1
        self.comments[text] = 1


@pytest.fixture
def webui(monkeypatch: pytest.MonkeyPatch) -> WebUI:
    monkeypatch.setenv("GUARD_WEBUI_QUIET", "1")
    saving.RECENT.clear()
    return WebUI(monkeypatch)


def snapshot(webui: WebUI) -> dict[str, bytes]:
    """An image_saved callback registered before guard's: the file exactly as web UI wrote it."""
    written: dict[str, bytes] = {}

    def keep(params):
        path = getattr(params.image, "already_saved_as", None) or params.filename
        written[Path(path).name] = Path(path).read_bytes()

    webui.script_callbacks.on_image_saved(keep)
    return written


def text_chunks(data: bytes) -> list[bytes]:
    return png_chunks.text_chunks(data)


def exif_of(data: bytes) -> bytes:
    with Image.open(io.BytesIO(data)) as im:
        return im.info["exif"]


def generation_of(path: Path) -> dict[str, Any]:
    return verify(path).c2pa.assertions[GENERATION_ASSERTION]


def pixels(data: bytes) -> bytes:
    with Image.open(io.BytesIO(data)) as im:
        return im.convert("RGB").tobytes()


# ---- every format web UI writes ------------------------------------------------------------
@pytest.mark.parametrize("ext", ["png", "jpg", "webp", "avif"])
def test_a_saved_image_is_marked_then_written_by_webui_then_signed_in_place(webui, tmp_path, ext):
    before = snapshot(webui)
    ext_module = webui.load_extension()
    assert webui.callbacks["before_image_saved"] == [ext_module.on_before_image_saved]
    assert webui.callbacks["image_saved"][1] == ext_module.on_image_saved
    p = Processing(tmp_path, batch_index=1)
    image = art(512, 512, seed=3)
    path = Path(p.outpath_samples) / f"00007-1235.{ext}"

    text = INFOTEXT.replace("Seed: 1234", "Seed: 1235")  # image 1 of the batch
    written = webui.save_image(image, path, text, p)

    assert Path(written) == path and not webui.reported and not p.comments
    unsigned, signed = before[path.name], path.read_bytes()
    # the pixels were marked before web UI wrote them, and the image web UI keeps is that one
    assert image.already_saved_as == str(path)
    # signed in place: the same pixels, web UI's infotext bytes as web UI wrote them
    assert pixels(signed) == pixels(unsigned)
    if ext == "png":
        assert text_chunks(signed) == text_chunks(unsigned)
        assert [png_chunks.keyword(c) for c in text_chunks(signed)] == ["parameters"]
    else:
        assert exif_of(signed) == exif_of(unsigned)
    if ext == "jpg":
        kept = jpeg_segments.segments(unsigned)
        assert all(s.raw in signed for s in kept if s.is_app)
    with Image.open(path) as im:
        assert webui_read_info(im) == text  # web UI's PNG Info reads it as before
    info, where = read_file(path)
    assert info is not None and info.to_text() == text
    assert where == ("PNG text chunk" if ext == "png" else "EXIF UserComment")

    outcome = saving.RECENT[0]
    assert outcome.state == "signed", outcome.message
    verdict = verify(path).to_dict()
    assert verdict["c2pa"]["state"] == "trusted"
    assert verdict["watermark"]["found"] and verdict["watermark"]["id"] == outcome.watermark_id
    assert verdict["digital_source_type"].endswith("/trainedAlgorithmicMedia")
    generation = generation_of(path)
    assert generation["model"] == "v1-5-pruned-emaonly" and generation["model_hash"] == "6ce0161689"
    assert (generation["sampler"], generation["schedule_type"]) == ("DPM++ 2M", "Karras")
    assert generation["seed"] == 1235 and generation["batch_index"] == 1  # p.seeds[p.batch_index]
    assert generation["infotext"] == text
    assert generation["generator"] == "Stable Diffusion web UI"
    with Ledger() as ledger:
        record = ledger.get(outcome.watermark_id)
    assert record is not None and record.file_name == path.name
    assert record.sha256 == __import__("hashlib").sha256(signed).hexdigest()
    if ext == "avif":
        assert any("no XMP written" in n for n in outcome.notes)


def test_other_text_chunks_stay_byte_identical(webui, tmp_path):
    before = snapshot(webui)
    webui.load_extension()
    p = Processing(tmp_path)
    path = Path(p.outpath_samples) / "00001-1234.png"
    extra = {"workflow": '{"nodes": []}', "Comment": "ünïcode, kept"}
    webui.save_image(art(512, 512), path, INFOTEXT, p, existing_info=dict(extra))
    assert text_chunks(path.read_bytes()) == text_chunks(before[path.name])
    with Image.open(path) as im:
        assert {k: im.info[k] for k in extra} == extra


def test_an_rgba_png_keeps_its_alpha_and_a_jpeg_drops_it_as_webui_does(webui, tmp_path):
    webui.load_extension()
    p = Processing(tmp_path)
    image = art(512, 512, mode="RGBA")
    alpha = image.getchannel("A").tobytes()
    webui.save_image(image, Path(p.outpath_samples) / "a.png", INFOTEXT, p)
    with Image.open(Path(p.outpath_samples) / "a.png") as im:
        assert im.mode == "RGBA" and im.getchannel("A").tobytes() == alpha
    webui.save_image(art(512, 512, mode="RGBA"), Path(p.outpath_samples) / "b.jpg", INFOTEXT, p)
    assert verify(Path(p.outpath_samples) / "b.jpg").to_dict()["watermark"]["found"]


def test_img2img_and_inpaint_name_their_inputs(webui, tmp_path):
    webui.load_extension()
    init = art(512, 512, seed=9)
    mask = Image.new("L", (512, 512), 0)
    p = Processing(tmp_path, init_images=[init], image_mask=mask, denoising_strength=0.6)
    path = Path(p.outpath_samples) / "00002-1234.png"
    webui.save_image(art(512, 512, seed=4), path, INFOTEXT, p)
    report = verify(path).to_dict()
    assert report["digital_source_type"].endswith("/compositeWithTrainedAlgorithmicMedia")
    titles = {i["title"]: i["relationship"] for i in report["c2pa"]["ingredients"]}
    assert titles == {"init image": "parentOf", "mask": "inputTo"}
    assert generation_of(path)["task"] == "inpaint"


# ---- which images ---------------------------------------------------------------------------
def test_grids_and_intermediate_copies_are_left_alone_unless_asked(webui, tmp_path):
    webui.load_extension()
    p = Processing(tmp_path)
    grid = Path(p.outpath_grids) / "grid-0003.png"
    before_hires = Path(p.outpath_samples) / "00003-1234-before-highres-fix.png"
    webui.save_image(art(512, 512), grid, INFOTEXT, p)
    webui.save_image(art(512, 512), before_hires, INFOTEXT, p)
    for path in (grid, before_hires):
        assert verify(path).to_dict()["c2pa"]["state"] == "absent"
        assert not verify(path).to_dict()["watermark"]["found"]
    assert [o.state for o in saving.RECENT] == ["skipped", "skipped"]

    webui.opts.guard_sign_grids = True
    webui.save_image(art(512, 512), grid, INFOTEXT, p)
    report = verify(grid).to_dict()
    assert report["c2pa"]["state"] == "trusted" and report["watermark"]["found"]
    assert generation_of(grid)["saved_as"] == "grid"


def test_init_images_are_the_users_and_never_signed(webui, tmp_path):
    webui.opts.guard_sign_grids = True
    webui.load_extension()
    p = Processing(tmp_path, init_images=[art(512, 512)], init_img_hash="ab12cd")
    path = tmp_path / "init-images" / "ab12cd.png"
    path.parent.mkdir()
    webui.save_image(art(512, 512), path, None, p)
    assert verify(path).to_dict()["c2pa"]["state"] == "absent"


def test_extras_outputs_are_signed_with_the_source_generation(webui, tmp_path):
    before = snapshot(webui)
    webui.load_extension()
    path = tmp_path / "extras-images" / "00000.png"
    path.parent.mkdir()
    steps = "Postprocess upscale by: 2, Postprocess upscaler: R-ESRGAN 4x+"
    # postprocessing.py: save_image(pp.image, ..., info=infotext, pnginfo_section_name=
    # "postprocessing", existing_info=existing_pnginfo) with the source's parameters in it
    webui.save_image(
        art(1024, 1024),
        path,
        steps,
        None,
        existing_info={"parameters": INFOTEXT},
        pnginfo_section_name="postprocessing",
    )
    assert text_chunks(path.read_bytes()) == text_chunks(before[path.name])
    report = verify(path).to_dict()
    assert report["c2pa"]["state"] == "trusted" and report["watermark"]["found"]
    assert report["digital_source_type"].endswith("/trainedAlgorithmicMedia")
    generation = generation_of(path)
    assert generation["postprocessing"] == steps and generation["seed"] == 1234


def test_resaving_a_marked_image_does_not_mark_it_twice(webui, tmp_path):
    webui.load_extension()
    p = Processing(tmp_path)
    first = Path(p.outpath_samples) / "00004-1234.png"
    webui.save_image(art(512, 512), first, INFOTEXT, p)
    original_id = saving.RECENT[0].watermark_id
    # the gallery's Save button (ui_common.save_files): the picture again, p = the job's JSON
    with Image.open(first) as im:
        again = im.convert("RGB")
    # image 0 of a gallery without a grid: save_files sets batch_index = image_index - 1
    job = types.SimpleNamespace(
        index_of_first_image=0, batch_index=-1, sd_model_name="v1-5-pruned-emaonly", seed=1
    )
    saved = tmp_path / "log" / "00000-1234.png"
    saved.parent.mkdir()
    webui.save_image(again, saved, INFOTEXT, job)
    report = verify(saved).to_dict()
    assert report["c2pa"]["state"] == "trusted"
    assert report["watermark"]["id"] == original_id
    assert generation_of(saved)["seed"] == 1234  # from the infotext
    with Ledger() as ledger:
        assert ledger.get(original_id).file_name == first.name  # the original's record stays


def test_guard_off_leaves_webui_files_as_webui_writes_them(webui, tmp_path):
    before = snapshot(webui)
    webui.opts.guard_enabled = False
    webui.load_extension()
    p = Processing(tmp_path)
    path = Path(p.outpath_samples) / "00005-1234.jpg"
    webui.save_image(art(512, 512), path, INFOTEXT, p)
    assert path.read_bytes() == before[path.name]


def test_without_webuis_infotext_the_manifest_names_no_prompt(webui, tmp_path):
    webui.opts.enable_pnginfo = False  # "Write infotext to metadata of the generated image"
    webui.load_extension()
    p = Processing(tmp_path)
    path = Path(p.outpath_samples) / "00015-1234.png"
    webui.save_image(art(512, 512), path, INFOTEXT, p)
    assert text_chunks(path.read_bytes()) == []  # web UI wrote none
    generation = generation_of(path)
    assert not {"prompt", "negative_prompt", "infotext"} & set(generation)
    assert (generation["model"], generation["sampler"], generation["seed"]) == (
        "v1-5-pruned-emaonly",
        "DPM++ 2M",
        1234,
    )


# ---- failures never break the save ---------------------------------------------------------
def test_a_failing_sign_leaves_webuis_file_and_says_why(webui, tmp_path, monkeypatch, capsys):
    home = tmp_path / "not-a-folder"
    home.write_text("a file where GUARD_HOME's folder should be")
    monkeypatch.setenv("GUARD_HOME", str(home))
    monkeypatch.setenv("GUARD_LEDGER", str(tmp_path / "ledger.sqlite3"))
    before = snapshot(webui)
    webui.load_extension()
    p = Processing(tmp_path)
    path = Path(p.outpath_samples) / "00006-1234.png"
    webui.save_image(art(512, 512), path, INFOTEXT, p)
    assert path.read_bytes() == before[path.name]  # saved, exactly as web UI wrote it
    assert not webui.reported  # nothing reached web UI's report_exception
    outcome = saving.RECENT[0]
    assert outcome.failed and "was saved but not signed" in outcome.message
    assert "not-a-folder" in outcome.message
    assert outcome.message in capsys.readouterr().err  # the console
    assert outcome.message in p.comments  # the UI: the job's comments under the gallery


def test_an_identity_folder_without_keys_is_named(webui, tmp_path):
    before = snapshot(webui)
    webui.opts.guard_identity_dir = str(tmp_path / "keys")
    webui.load_extension()
    p = Processing(tmp_path)
    path = Path(p.outpath_samples) / "00008-1234.webp"
    webui.save_image(art(512, 512), path, INFOTEXT, p)
    assert path.read_bytes() == before[path.name]
    assert "no signing identity there" in saving.RECENT[0].message
    assert "Identity folder" in saving.RECENT[0].message


def test_an_identity_folder_signs_and_its_ca_is_trusted_in_the_tab(webui, tmp_path, monkeypatch):
    from guard.identity.local_ca import init_local
    from guard.integrations.webui import tab
    from guard.integrations.webui.settings import Settings

    other = tmp_path / "org-home"
    monkeypatch.setenv("GUARD_HOME", str(other))
    init_local(name="studio", quiet=True)
    monkeypatch.setenv("GUARD_HOME", str(tmp_path / "user-home"))
    webui.opts.guard_identity_dir = str(other / "identity")
    webui.opts.guard_author = "Studio Nine"
    webui.load_extension()
    p = Processing(tmp_path)
    path = Path(p.outpath_samples) / "00009-1234.png"
    webui.save_image(art(512, 512), path, INFOTEXT, p)
    assert saving.RECENT[0].state == "signed"
    assert verify(path).to_dict()["c2pa"]["state"] == "valid"  # not trusted by default
    answer = tab.verify_card(path, Settings.from_opts(webui.opts))
    assert answer["card"]["state"] == "trusted" and "studio" in answer["card"]["signer"]["name"]


def test_a1111_number_suffix_never_signs_an_older_file(webui, tmp_path):
    """v1.10 writes `name-1.png` when `name.png` exists but reports `name.png`: guard must not
    sign the older file in its place."""
    webui.opts.save_images_replace_action = "Add number suffix"
    webui.load_extension()
    p = Processing(tmp_path)
    path = Path(p.outpath_samples) / "00010-1234.png"
    art(512, 512, seed=7).save(path)
    os.utime(path, (1_000_000_000, 1_000_000_000))
    old = path.read_bytes()
    webui.save_image(art(512, 512), path, INFOTEXT, p, variant="a1111")
    assert path.read_bytes() == old
    assert "older than this save" in saving.RECENT[0].message
    # Forge reports the name it used: the new file is signed
    webui.save_image(art(512, 512), path, INFOTEXT, p, variant="forge")
    assert path.read_bytes() == old
    assert verify(path.with_name("00010-1234-2.png")).to_dict()["c2pa"]["state"] == "trusted"


def test_an_image_too_small_for_the_mark_is_signed_without_one(webui, tmp_path):
    webui.load_extension()
    p = Processing(tmp_path, width=128, height=128)
    path = Path(p.outpath_samples) / "small.png"
    webui.save_image(art(128, 128), path, INFOTEXT, p)
    outcome = saving.RECENT[0]
    assert outcome.state == "signed" and outcome.watermark_id is None
    assert verify(path).to_dict()["c2pa"]["state"] == "trusted"


# ---- Forge ----------------------------------------------------------------------------------
def forge_stealth(mode: str) -> types.ModuleType:
    """modules/stealth_infotext.py (Forge c4b6fcce): add_stealth_pnginfo and add_data."""
    module = types.ModuleType("modules.stealth_infotext")

    def prepare_data(params, mode="Alpha", compressed=True):
        signature = (
            f"stealth_{'png' if mode == 'Alpha' else 'rgb'}{'info' if not compressed else 'comp'}"
        )
        binary_signature = "".join(format(byte, "08b") for byte in signature.encode("utf-8"))
        param = params.encode("utf-8") if not compressed else gzip.compress(bytes(params, "utf-8"))
        binary_param = "".join(format(byte, "08b") for byte in param)
        binary_param_len = format(len(binary_param), "032b")
        return binary_signature + binary_param_len + binary_param

    def add_data(params, mode="Alpha", compressed=True):
        binary_data = prepare_data(params.pnginfo["parameters"], mode, compressed)
        if mode == "Alpha":
            params.image.putalpha(255)
        width, height = params.image.size
        pix = params.image.load()
        index = 0
        end_write = False
        for x in range(width):
            for y in range(height):
                if index >= len(binary_data):
                    end_write = True
                    break
                values = pix[x, y]
                if mode == "Alpha":
                    r, g, b, a = values
                else:
                    r, g, b = values
                if mode == "Alpha":
                    a = (a & ~1) | int(binary_data[index])
                    index += 1
                else:
                    r = (r & ~1) | int(binary_data[index])
                    if index + 1 < len(binary_data):
                        g = (g & ~1) | int(binary_data[index + 1])
                    if index + 2 < len(binary_data):
                        b = (b & ~1) | int(binary_data[index + 2])
                    index += 3
                pix[x, y] = (r, g, b, a) if mode == "Alpha" else (r, g, b)
            if end_write:
                break

    def add_stealth_pnginfo(params):
        if not params.filename.endswith(".png") or params.pnginfo is None:
            return
        if "parameters" not in params.pnginfo:
            return
        add_data(params, mode, True)

    module.add_stealth_pnginfo = add_stealth_pnginfo
    return module


def stealth_text(image: Image.Image, mode: str) -> str:
    """The infotext Forge's stealth writer left in the pixels' low bits (column by column: the
    alpha bit, or the R, G and B bits), read back as read_info_from_image_stealth reads it."""
    pix, bits = image.load(), []
    width, height = image.size
    for x in range(width):
        for y in range(height):
            values = pix[x, y]
            bits += [values[3] & 1] if mode == "Alpha" else [v & 1 for v in values[:3]]
    text = "".join(map(str, bits))
    signature = "stealth_pngcomp" if mode == "Alpha" else "stealth_rgbcomp"
    head = len(signature) * 8
    assert bytes(int(text[i : i + 8], 2) for i in range(0, head, 8)).decode() == signature
    length = int(text[head : head + 32], 2)
    body = text[head + 32 : head + 32 + length]
    return gzip.decompress(bytes(int(body[i : i + 8], 2) for i in range(0, length, 8))).decode()


@pytest.mark.parametrize("mode", ["Alpha", "RGB"])
def test_forge_stealth_infotext_survives_the_mark(webui, tmp_path, mode):
    stealth = forge_stealth(mode)
    webui.add_module("stealth_infotext", stealth)
    forge = types.ModuleType("modules_forge")
    forge.__spec__ = importlib.machinery.ModuleSpec("modules_forge", None)
    webui.monkeypatch.setitem(sys.modules, "modules_forge", forge)
    extension = webui.load_extension()
    assert extension.HOST == "Stable Diffusion web UI Forge"
    p = Processing(tmp_path)
    path = Path(p.outpath_samples) / "00011-1234.png"
    webui.save_image(art(512, 512), path, INFOTEXT, p)
    with Image.open(path) as im:
        assert stealth_text(im, mode) == INFOTEXT
    report = verify(path).to_dict()
    assert report["c2pa"]["state"] == "trusted" and report["watermark"]["found"]
    assert generation_of(path)["generator"].endswith("Forge")


# ---- settings -------------------------------------------------------------------------------
def test_settings_go_in_a_guard_section(webui, monkeypatch):
    gradio = types.ModuleType("gradio")
    for name in ("Checkbox", "Textbox", "Radio"):
        setattr(gradio, name, type(name, (), {}))
    monkeypatch.setitem(sys.modules, "gradio", gradio)
    webui.load_extension()
    for callback in webui.callbacks["ui_settings"]:  # ui_settings_callback
        callback()
    labels = webui.opts.data_labels
    assert set(labels) == {
        "guard_enabled",
        "guard_sign_grids",
        "guard_author",
        "guard_training",
        "guard_source",
        "guard_watermark_key",
        "guard_identity_dir",
    }
    assert {info.section for info in labels.values()} == {("guard", "guard")}
    assert labels["guard_training"].component is gradio.Radio
    assert labels["guard_training"].component_args == {
        "choices": ["notAllowed", "allowed", "constrained"]
    }
    assert labels["guard_enabled"].component is gradio.Checkbox
    assert webui.opts.guard_training == "notAllowed"


def test_a_bad_setting_is_reported_and_the_image_saved(webui, tmp_path):
    webui.opts.guard_training = "maybe"
    webui.load_extension()
    p = Processing(tmp_path)
    path = Path(p.outpath_samples) / "00012-1234.png"
    webui.save_image(art(512, 512), path, INFOTEXT, p)
    assert path.is_file() and verify(path).to_dict()["c2pa"]["state"] == "absent"
    assert saving.RECENT[0].failed and "AI training and data mining" in saving.RECENT[0].message


def test_a_private_watermark_key_file_is_used(webui, tmp_path):
    key = tmp_path / "wm.key"
    key.write_bytes(b"studio secret\n")
    webui.opts.guard_watermark_key = str(key)
    webui.load_extension()
    p = Processing(tmp_path)
    path = Path(p.outpath_samples) / "00013-1234.png"
    webui.save_image(art(512, 512), path, INFOTEXT, p)
    assert not verify(path).to_dict()["watermark"]["found"]  # not under the public key
    found = verify(path, watermark_key=b"studio secret").to_dict()["watermark"]
    assert found["found"] and found["id"] == saving.RECENT[0].watermark_id


# ---- the tab's library functions ------------------------------------------------------------
def test_verify_shows_guard_serves_card(webui, tmp_path):
    from guard.integrations.webui import tab
    from guard.integrations.webui.settings import Settings

    webui.load_extension()
    p = Processing(tmp_path)
    path = Path(p.outpath_samples) / "00014-1234.png"
    webui.save_image(art(512, 512), path, INFOTEXT, p)
    html = tab.verify_html(tab.upload_path({"path": str(path)}), Settings())
    assert "<h3>Trusted</h3>" in html
    assert "guard&#x27;s watermark found" in html and "AI-generated" in html
    assert "AI training not allowed" in html and 'class="guard-timeline"' in html
    assert "Drop an image" in tab.verify_html(None, Settings())
    assert "Could not verify" in tab.verify_html(str(tmp_path / "missing.png"), Settings())
    assert tab.upload_path(types.SimpleNamespace(name="/x/a.png")) == "/x/a.png"
    assert tab.upload_path("/x/b.png") == "/x/b.png" and tab.upload_path([]) is None
    assert str(path.name) in saving.recent_text()


@pytest.mark.slow
def test_protect_writes_a_signed_protected_png_and_the_comparison(tmp_path, tmp_path_factory):
    import tiny_models as tm

    from guard.integrations.webui import tab
    from guard.integrations.webui.settings import Settings

    model = tm.sd_folder(tmp_path_factory)  # the session's tiny SD folder: only read here
    src = tmp_path / "art.png"
    art(256, 256).save(src)
    ticks: list[tuple[int, int]] = []
    result = tab.protect_image(
        src,
        tmp_path / "outputs" / "guard-protected",
        Settings(),
        strength="low",
        model=str(model),
        on_progress=lambda d, t: ticks.append((d, t)),
    )
    assert result.file.path == tmp_path / "outputs" / "guard-protected" / "art.protected.png"
    assert ticks and ticks[-1][0] == ticks[-1][1]
    assert result.before.size == result.after.size == (256, 256)
    report = verify(result.file.path).to_dict()
    assert report["c2pa"]["state"] == "trusted" and report["training"] == "notAllowed"
    again = tab.protect_image(
        src, tmp_path / "outputs" / "guard-protected", Settings(), strength="low", model=str(model)
    )
    assert again.file.path.name == "art.protected-2.png"
    with pytest.raises(ValueError, match="mode"):
        tab.protect_image(src, tmp_path, Settings(), mode="nope")


def test_environment_problems_name_what_webui_pinned(monkeypatch):
    from guard.integrations.webui import environment

    monkeypatch.setattr(
        environment.importlib.metadata,
        "requires",
        lambda name: ["pillow>=999", "no-such-package-xyz>=1", 'httpx>=0.27; extra == "dev"'],
    )
    found = environment.problems()
    assert len(found) == 2
    assert found[0].startswith("pillow ") and "guard needs pillow>=999" in found[0]
    assert "no-such-package-xyz is not installed" in found[1]


# ---- install / uninstall --------------------------------------------------------------------
def fake_webui(tmp_path: Path) -> Path:
    root = tmp_path / "stable-diffusion-webui"
    (root / "modules").mkdir(parents=True)
    (root / "modules" / "script_callbacks.py").write_text("")
    (root / "webui.py").write_text("")
    (root / "launch.py").write_text("")
    return root


def test_install_copies_the_extension_into_extensions(tmp_path):
    root = fake_webui(tmp_path)
    where = integrations.install("webui", root)
    assert where == root / "extensions" / "guard-webui" and not where.is_symlink()
    for name in ("install.py", "scripts/guard.py", "style.css", integrations.MARKER):
        assert (where / name).is_file(), name
    assert not list(where.rglob("__pycache__"))
    assert integrations.install("webui", root) == where  # again: replaces its own copy
    assert integrations.uninstall("webui", root) == where and not where.exists()


def test_install_link_and_uninstall_via_the_cli(tmp_path):
    from guard.cli import main

    root = fake_webui(tmp_path)
    runner = CliRunner()
    result = runner.invoke(main, ["integrations", "install", "webui", str(root), "--link"])
    assert result.exit_code == 0, result.output
    where = root / "extensions" / "guard-webui"
    assert where.is_symlink() and where.resolve() == EXTENSION.resolve()
    result = runner.invoke(main, ["integrations", "uninstall", "webui", str(root)])
    assert result.exit_code == 0 and not where.exists() and EXTENSION.is_dir()


def test_a_folder_that_is_not_guards_is_refused(tmp_path):
    root = fake_webui(tmp_path)
    theirs = root / "extensions" / "guard-webui"
    theirs.mkdir(parents=True)
    (theirs / "someone-elses.py").write_text("")
    with pytest.raises(integrations.IntegrationError, match="not installed by guard"):
        integrations.install("webui", root)
    with pytest.raises(integrations.IntegrationError, match="not installed by guard"):
        integrations.uninstall("webui", root)
    assert (theirs / "someone-elses.py").is_file()
    with pytest.raises(integrations.IntegrationError, match="does not look like webui"):
        integrations.install("webui", tmp_path / "stable-diffusion-webui" / "modules")


def run_install_script(monkeypatch, installed: bool, script: Path | None = None) -> list:
    calls: list[tuple[str, str]] = []
    launch = types.ModuleType("launch")  # web UI's launch.py: is_installed, run_pip
    launch.is_installed = lambda package: installed
    launch.run_pip = lambda command, desc=None, live=False: calls.append((command, desc))
    monkeypatch.setitem(sys.modules, "launch", launch)
    runpy.run_path(str(script or EXTENSION / "install.py"), run_name="__main__")
    return calls


def test_install_py_installs_guard_into_webuis_environment(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("GUARD_PIP_REQUIREMENT", raising=False)
    assert run_install_script(monkeypatch, installed=True) == []
    # the extension folder sits inside this checkout (a --link install): the checkout, editable
    ((command, desc),) = run_install_script(monkeypatch, installed=False)
    assert command == f'install -e "{EXTENSION.parents[3]}"' and "guard" in desc
    wheel = "/opt/wheels/guard-0.1.0-py3-none-any.whl"
    monkeypatch.setenv("GUARD_PIP_REQUIREMENT", wheel)
    assert run_install_script(monkeypatch, installed=True) == [(f'install "{wheel}"', desc)]
    monkeypatch.delenv("GUARD_PIP_REQUIREMENT")
    # a copied extension has no checkout to point at, and PyPI's "guard" is another project
    copy = integrations.install("webui", fake_webui(tmp_path))
    assert run_install_script(monkeypatch, installed=False, script=copy / "install.py") == []
    assert "set GUARD_PIP_REQUIREMENT" in capsys.readouterr().err
    other = tmp_path / "site-packages" / "guard"
    other.mkdir(parents=True)
    spec = importlib.machinery.ModuleSpec("guard", None, is_package=True)
    spec.submodule_search_locations = [str(other)]
    with monkeypatch.context() as m:
        m.setattr(importlib.util, "find_spec", lambda name: spec)
        assert run_install_script(m, installed=True, script=copy / "install.py") == []
    assert "set GUARD_PIP_REQUIREMENT" in capsys.readouterr().err  # that guard is not this one
    monkeypatch.setattr(sys, "version_info", (3, 9, 18, "final", 0))
    assert run_install_script(monkeypatch, installed=False) == []
    assert "guard needs Python 3.10 or newer, and this web UI runs Python 3.9.18" in (
        capsys.readouterr().err
    )


def test_the_extension_stays_inactive_without_guard(webui, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "guard.integrations.webui", None)  # the import fails
    extension = webui.load_extension()
    assert extension.saving is None
    assert all(not v for v in webui.callbacks.values())
    assert "the extension is inactive" in capsys.readouterr().err


def test_publish_in_place_refuses_what_would_change_the_file(tmp_path):
    from guard.media import imageio
    from guard.provenance.spec import ManifestSpec
    from guard.publishing import publish

    path = tmp_path / "a.png"
    art(512, 512).save(path)
    loaded = imageio.load(path)
    spec = ManifestSpec(source="ai")
    with pytest.raises(ValueError, match="never changes the file's pixels"):
        publish(loaded, path, spec, in_place=True)  # would mark, so re-encode
    with pytest.raises(ValueError, match="not the file that was loaded"):
        other = tmp_path / "b.png"
        art(512, 512).save(other)
        publish(loaded, other, spec, watermark=False, in_place=True)
    with pytest.raises(ValueError, match="writes no text"):
        publish(
            loaded, path, ManifestSpec(text={"parameters": "x"}), watermark=False, in_place=True
        )
    webp = tmp_path / "a.webp"  # a PNG under a .webp name
    webp.write_bytes(path.read_bytes())
    with pytest.raises(ValueError, match="holds a PNG image"):
        publish(imageio.load(webp), webp, spec, watermark=False, in_place=True)
    assert path.read_bytes() == loaded.data  # nothing was written


def test_a_hires_fix_sample_is_signed_with_its_hires_parameters(webui, tmp_path):
    """The hires fix's final image, saved as web UI saves it (processing.py: enable_hr, the
    second pass's size, the infotext's Hires fields), in PNG, JPEG and WebP."""
    webui.load_extension()
    hires = (
        INFOTEXT.replace("Size: 512x512", "Size: 256x256")
        + ", Denoising strength: 0.5, Hires upscale: 2, Hires steps: 10, Hires upscaler: Latent"
    )
    p = Processing(
        tmp_path,
        enable_hr=True,
        hr_scale=2.0,
        hr_second_pass_steps=10,
        hr_upscaler="Latent",
        denoising_strength=0.5,
        width=256,
        height=256,
    )
    for ext in ("png", "jpg", "webp"):
        path = Path(p.outpath_samples) / f"00011-1234.{ext}"
        webui.save_image(art(512, 512, seed=11), path, hires, p)
        assert saving.RECENT[0].state == "signed", saving.RECENT[0].message
        verdict = verify(path).to_dict()
        assert verdict["c2pa"]["state"] == "trusted" and verdict["watermark"]["found"]
        generation = generation_of(path)
        assert generation["hires_upscale"] == 2.0 and generation["hires_steps"] == 10
        assert generation["hires_upscaler"] == "Latent"
        assert generation["denoising_strength"] == 0.5
        info, _ = read_file(path)
        assert info is not None and info.to_text() == hires  # web UI's text, as web UI wrote it
