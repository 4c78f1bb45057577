"""guard.attach / guard.save on a platform's own diffusers pipeline object."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import tiny_models as tm
import torch
from PIL import Image

from guard.pipeline import hooks
from guard.pipeline.record import pending
from guard.pipeline.save import NoPendingProvenanceError, save
from guard.webui.infotext import GENERATION_ASSERTION, read_file


def _watermark_ready() -> bool:
    import guard.watermark

    return hasattr(guard.watermark, "embed")


needs_watermark = pytest.mark.skipif(not _watermark_ready(), reason="guard.watermark not built yet")


@pytest.fixture
def sd(tmp_path):
    pipe = tm.tiny_sd_pipeline(tmp_path / "src")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def call(pipe, size=64, **kw):
    args = {"prompt": "a red fox", "num_inference_steps": 2, "height": size, "width": size}
    args.update(kw)
    return pipe(**args)


def verdict(path, watermark=False):
    from guard.verdict import verify

    return verify(path, watermark=watermark)


def test_attached_pipeline_returns_the_usual_output(sd, tmp_path):
    cls = type(sd)
    plain = call(sd, generator=torch.Generator().manual_seed(1)).images[0]
    assert hooks.attach(sd, watermark=False) is sd
    assert isinstance(sd, cls) and type(sd).__name__ == cls.__name__
    out = call(sd, generator=torch.Generator().manual_seed(1))
    assert type(out).__name__ == "StableDiffusionPipelineOutput"
    assert np.array_equal(np.asarray(out.images[0]), np.asarray(plain))  # no watermark asked
    tuple_out = call(sd, generator=torch.Generator().manual_seed(1), return_dict=False)
    assert isinstance(tuple_out, tuple) and pending(tuple_out[0][0]) is not None
    # saving the pipeline is unaffected (same class name in its config)
    sd.save_pretrained(tmp_path / "saved")
    assert (
        '"_class_name": "StableDiffusionPipeline"'
        in (tmp_path / "saved" / "model_index.json").read_text()
    )
    hooks.detach(sd)
    assert type(sd) is cls
    assert pending(call(sd).images[0]) is None


def test_save_writes_the_call_parameters_signed(sd, tmp_path):
    hooks.attach(
        sd, watermark=False, training="constrained", model="my-model", model_hash="0123456789"
    )
    gens = [torch.Generator().manual_seed(s) for s in (7, 8)]
    out = call(
        sd, negative_prompt="blurry", guidance_scale=6.0, generator=gens, num_images_per_prompt=2
    )
    result = save(out.images[1], tmp_path / "fox.png")
    assert result.path == tmp_path / "fox.png"
    info, _ = read_file(result.path)
    assert info.prompt == "a red fox" and info.negative_prompt == "blurry"
    assert info.get("Seed") == 8 and info.get("Steps") == 2 and info.get("CFG scale") == 6.0
    assert info.params["Model"] == "my-model" and info.params["Model hash"] == "0123456789"
    # web UI's names for the pipeline's PNDM scheduler, not its class name
    assert (info.params["Sampler"], info.params["Schedule type"]) == ("PLMS", "Automatic")
    v = verdict(result.path)
    assert v.state == "trusted"
    assert v.digital_source_type.endswith("trainedAlgorithmicMedia")
    assert v.training == "constrained"
    assert "my-model" in v.c2pa.actions[0]["software_agent"]
    data = v.c2pa.assertions[GENERATION_ASSERTION]
    assert data["seed"] == 8 and data["pipeline"] == "StableDiffusionPipeline"
    # pixels are written as the pipeline returned them
    assert np.array_equal(
        np.asarray(Image.open(result.path).convert("RGB")), np.asarray(out.images[1])
    )


def test_one_generator_for_a_batch_records_batch_position(sd, tmp_path):
    hooks.attach(sd, watermark=False)
    out = call(sd, generator=torch.Generator().manual_seed(3), num_images_per_prompt=2)
    info, _ = read_file(save(out.images[1], tmp_path / "b.png").path)
    assert info.params["Seed"] == "3"
    assert (info.params["Batch size"], info.params["Batch pos"]) == ("2", "1")


def test_hook_records_web_ui_sampler_and_schedule_names(sd, tmp_path):
    from diffusers import DPMSolverMultistepScheduler

    from generator.samplers import make_scheduler

    hooks.attach(sd, watermark=False)
    config = dict(sd.scheduler.config)
    sd.scheduler = DPMSolverMultistepScheduler.from_config(config, use_karras_sigmas=True)
    info, _ = read_file(save(call(sd).images[0], tmp_path / "karras.png").path)
    assert (info.params["Sampler"], info.params["Schedule type"]) == ("DPM++ 2M", "Karras")
    # a scheduler guard built says exactly what was chosen
    sd.scheduler = make_scheduler("DPM++ 2M SDE", config)
    path = save(call(sd).images[0], tmp_path / "sde.png").path
    info, _ = read_file(path)
    assert (info.params["Sampler"], info.params["Schedule type"]) == ("DPM++ 2M SDE", "Exponential")
    data = verdict(path).c2pa.assertions[GENERATION_ASSERTION]
    assert data["sampler"] == "DPM++ 2M SDE" and data["schedule_type"] == "Exponential"
    assert data["scheduler"] == "DPMSolverMultistepScheduler"


def test_hook_seeds_every_image_when_the_caller_passes_no_generator(sd, tmp_path):
    hooks.attach(sd, watermark=False)
    unet_inputs: list[torch.Tensor] = []  # the latents of every UNet call (CFG-doubled)
    handle = sd.unet.register_forward_pre_hook(
        lambda _, args, kw: unet_inputs.append((args[0] if args else kw["sample"]).clone()),
        with_kwargs=True,
    )
    out = call(sd, prompt=["a red fox", "a blue bird"], num_images_per_prompt=2)
    batch_noise = unet_inputs[0]
    seeds = [pending(im).spec.assertions[0].data["seed"] for im in out.images]
    assert seeds == [seeds[0] + k for k in range(4)]  # one seed per image, as web UI numbers them
    info, _ = read_file(save(out.images[3], tmp_path / "seeded.png").path)
    assert info.get("Seed") == seeds[3] and "Batch pos" not in info.params
    assert info.prompt == "a blue bird"
    # the recorded seed reproduces the image on its own: exactly the same starting noise ...
    hooks.detach(sd)
    unet_inputs.clear()
    again = call(sd, prompt="a blue bird", generator=torch.Generator().manual_seed(seeds[3]))
    handle.remove()
    assert torch.equal(batch_noise[3], unet_inputs[0][0])
    # ... and the same picture, up to float rounding: a batch runs the UNet on 8 latents, a
    # single image on 2, and the kernels sum in another order (about 2e-6 here), which can flip
    # a pixel's 8-bit rounding by one level, in plain diffusers as much as with the hook
    regenerated = np.asarray(again.images[0], np.int16)
    diff = np.abs(regenerated - np.asarray(out.images[3], np.int16))
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01
    neighbour = np.abs(regenerated - np.asarray(out.images[2], np.int16))  # same prompt, seed - 1
    assert neighbour.max() > 10


def test_pipelines_derived_with_from_pipe_stay_attached(sd, tmp_path):
    from diffusers import StableDiffusionImg2ImgPipeline

    hooks.attach(sd, watermark=False, training="allowed", model="my-model")
    img2img = StableDiffusionImg2ImgPipeline.from_pipe(sd)
    assert img2img._guard is not None and img2img._guard.model == "my-model"
    init = Image.new("RGB", (64, 64), (40, 90, 160))
    out = img2img(prompt="a fox", image=init, strength=0.5, num_inference_steps=4)
    result = save(out.images[0], tmp_path / "derived.png")
    v = verdict(result.path)
    assert v.training == "allowed" and "c2pa.edited" in [a["action"] for a in v.c2pa.actions]
    # a pipeline derived from one that is not attached stays plain
    hooks.detach(sd)
    plain = StableDiffusionImg2ImgPipeline.from_pipe(sd)
    assert getattr(plain, "_guard", None) is None


def test_controlnet_control_image_is_an_input_not_a_parent(sd, tmp_path):
    from diffusers import ControlNetModel, StableDiffusionControlNetPipeline

    hooks.attach(sd, watermark=False)
    pipe = StableDiffusionControlNetPipeline.from_pipe(
        sd, controlnet=ControlNetModel.from_unet(sd.unet)
    )
    assert pipe._guard is not None  # derived with from_pipe: attached too
    pose = Image.new("RGB", (64, 64), (255, 85, 0))
    out = pipe(prompt="a dancer", image=pose, num_inference_steps=2, height=64, width=64)
    v = verdict(save(out.images[0], tmp_path / "cn.png").path)
    assert "c2pa.created" in [a["action"] for a in v.c2pa.actions]  # text-to-image, not an edit
    assert [(i["relationship"], i["title"]) for i in v.c2pa.ingredients] == [
        ("inputTo", "control image 0")
    ]


def test_hook_and_generate_share_one_generation_record(sd, tmp_path):
    hooks.attach(sd, watermark=False)
    out = call(sd, generator=torch.Generator().manual_seed(5))
    data = pending(out.images[0]).spec.assertions[0].data
    for key in ("prompt", "steps", "sampler", "schedule_type", "cfg_scale", "seed", "width"):
        assert key in data, key
    assert data["task"] == "txt2img" and data["infotext"].startswith("a red fox\nSteps: 2")


def test_provenance_survives_copy_and_convert(sd, tmp_path):
    hooks.attach(sd, watermark=False)
    image = call(sd).images[0]
    assert pending(image.copy().convert("RGB")) is not None
    save(image.copy(), tmp_path / "copy.png")


def test_save_refuses_images_without_provenance(tmp_path):
    with pytest.raises(NoPendingProvenanceError, match=r"guard\.attach"):
        save(Image.new("RGB", (64, 64)), tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_img2img_and_inpaint_inputs_become_ingredients(sd, tmp_path):
    from diffusers import StableDiffusionImg2ImgPipeline, StableDiffusionInpaintPipeline

    init = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    img2img = hooks.attach(StableDiffusionImg2ImgPipeline.from_pipe(sd), watermark=False)
    out = img2img(prompt="a fox", image=init, strength=0.5, num_inference_steps=4)
    v = verdict(save(out.images[0], tmp_path / "i2i.png").path)
    assert "c2pa.edited" in [a["action"] for a in v.c2pa.actions]
    assert [i["relationship"] for i in v.c2pa.ingredients] == ["parentOf"]
    assert read_file(tmp_path / "i2i.png")[0].params["Denoising strength"] == "0.5"

    mask = Image.new("L", (64, 64), 0)
    inpaint = hooks.attach(StableDiffusionInpaintPipeline.from_pipe(sd), watermark=False)
    out = inpaint(prompt="a fox", image=init, mask_image=mask, num_inference_steps=2)
    v = verdict(save(out.images[0], tmp_path / "inpaint.png").path)
    assert sorted(i["relationship"] for i in v.c2pa.ingredients) == ["inputTo", "parentOf"]
    assert v.digital_source_type.endswith("compositeWithTrainedAlgorithmicMedia")


def test_sdxl_gets_guard_watermarker_in_its_post_process_step(tmp_path):
    pipe = tm.tiny_sdxl_pipeline(tmp_path / "src")
    stability = pipe.watermark
    hooks.attach(pipe)
    assert isinstance(pipe.watermark, hooks.GuardWatermarker)
    assert pipe.watermark.inner is stability  # Stability's own mark is kept, applied first
    hooks.detach(pipe)
    assert pipe.watermark is stability


def test_guard_core_hook_imports_no_torch_or_diffusers():
    code = (
        "import sys, guard, guard.pipeline.hooks, guard.pipeline.save; guard.attach; guard.save; "
        "bad = [m for m in ('torch', 'diffusers', 'generator') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ---- with the watermark ------------------------------------------------------------------------
@needs_watermark
def test_hook_watermarks_once_and_save_records_it(sd, tmp_path):
    hooks.attach(sd)
    out = call(sd, size=256, generator=torch.Generator().manual_seed(2))
    p = pending(out.images[0])
    assert p.watermark_id is not None
    result = save(out.images[0], tmp_path / "wm.png")
    assert result.watermark_id == p.watermark_id
    # publish did not mark the pixels a second time
    assert np.array_equal(
        np.asarray(Image.open(result.path).convert("RGB")), np.asarray(out.images[0])
    )
    v = verdict(result.path, watermark=True)
    assert v.state == "trusted" and v.watermark.found
    assert v.watermark.id == p.watermark_id
    assert v.ledger is not None


@needs_watermark
def test_sdxl_watermark_applied_inside_the_pipeline(tmp_path):
    pipe = tm.tiny_sdxl_pipeline(tmp_path / "src")
    pipe.set_progress_bar_config(disable=True)
    hooks.attach(pipe)
    out = call(pipe, size=256, generator=torch.Generator().manual_seed(4))
    p = pending(out.images[0])
    assert p.watermark_id is not None
    result = save(out.images[0], tmp_path / "xl.png")
    v = verdict(result.path, watermark=True)
    assert v.watermark.found and v.watermark.id == p.watermark_id


@needs_watermark
def test_guard_watermarker_tensor_round_trip():
    from guard import watermark

    marker = hooks.GuardWatermarker()
    # smooth picture-like content (the watermark hides in texture; flat noise is not a picture)
    y, x = np.mgrid[0:256, 0:256].astype(np.float32) / 256
    rng = np.random.default_rng(0)
    pics = []
    for k in range(2):
        rgb = np.stack([np.sin(9 * x + k), np.cos(7 * y), x * y * 2 - 1]) * 0.7
        pics.append(rgb + rng.normal(0, 0.03, rgb.shape))
    images = torch.from_numpy(np.clip(np.stack(pics), -1, 1).astype(np.float32))
    out = marker.apply_watermark(images)
    assert out.shape == images.shape and out.dtype == images.dtype
    assert float(out.min()) >= -1 and float(out.max()) <= 1
    ids = marker.take()
    assert len(ids) == 2 and all(ids) and ids[0] != ids[1]
    first = ((out[0].permute(1, 2, 0).numpy() / 2 + 0.5) * 255).round().astype(np.uint8)
    found = watermark.detect(Image.fromarray(first))
    assert found.found and found.payload.hex() == ids[0]


@needs_watermark
def test_too_small_for_the_watermark_is_said_once(sd, tmp_path):
    hooks.attach(sd)
    image = call(sd).images[0]  # 64 px: below the watermark's minimum
    result = save(image, tmp_path / "small.png")
    assert result.watermark_id is None
    assert len([n for n in result.notes if "not watermarked" in n]) == 1
    assert verdict(result.path).state == "trusted"
