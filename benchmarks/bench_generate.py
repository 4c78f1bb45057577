"""Time guard adds per generated image, against the plain PNG save a generator would do anyway.

    /work/venv/bin/python benchmarks/bench_generate.py [--repeat 15] [--sizes 512,1024]
    /work/venv/bin/python benchmarks/bench_generate.py --unet-step   # + SD 1.5 step time
    /work/venv/bin/python benchmarks/bench_generate.py --controlnet  # + what ControlNet adds
    /work/venv/bin/python benchmarks/bench_generate.py --prompts     # + web UI prompt syntax

"plain" is what web UI does: PIL PNG save with the `parameters` text chunk. "guard" is
`guard.publish` exactly as `guard generate` calls it: watermark embed, text + XMP metadata,
C2PA signature with the generation assertion, ledger record, atomic save. The columns in
between split that cost. Images are natural photos (../shared/datasets/cset14 when present,
else scikit-image's samples) resized to each size, since PNG and watermark cost depend on content.

--unet-step times one denoising step of a randomly initialised UNet with Stable Diffusion 1.5's
exact architecture (same FLOPs as the real model; no weights are downloaded) at 512x512 with CFG,
to put the overhead next to a real-size generation on this machine.

--controlnet times what one ControlNet unit adds per image: drawing a pose JSON and fitting it to
512x512, the Canny preprocessor on a photo, and one CFG step of a ControlNet with SD 1.5's
ControlNet architecture (ControlNetModel.from_unet of the UNet above, random weights, same FLOPs as
control_v11p_sd15_openpose) next to the UNet step it runs beside.

--prompts times what web UI's prompt syntax costs per image against diffusers' own prompt encoding
(one truncated 77-token chunk each for prompt and negative prompt), with a text encoder of SD 1.5's
exact CLIP ViT-L/14 architecture (random weights, same FLOPs) and a word-level CLIP tokenizer over
the benchmark's words (real CLIP vocabularies cannot be downloaded here; token counts match a word
per token, close to CLIP's for these plain English prompts).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image, PngImagePlugin

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "cset14"
INFOTEXT = (
    "a blue bird, flying over a field of flowers\nNegative prompt: lowres\n"
    "Steps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 1478966807, Size: {s}x{s}, "
    "Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Version: guard v0.1.0"
)


def photo(size: int) -> Image.Image:
    files = sorted(SHARED.glob("*.png")) if SHARED.is_dir() else []
    if files:
        im = Image.open(max(files, key=lambda p: Image.open(p).size[0] * Image.open(p).size[1]))
    else:
        from skimage import data

        im = Image.fromarray(data.astronaut())
    return im.convert("RGB").resize((size, size), Image.Resampling.LANCZOS)


def timed_together(fns: list, repeat: int, pick=statistics.median) -> list[float]:
    """Median ms of each function, run in turn so machine-load drift hits them all alike."""
    for fn in fns:
        fn()  # warm-up: imports, first-use setup
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            t = time.perf_counter()
            fn()
            times[i].append(time.perf_counter() - t)
    return [pick(t) * 1000 for t in times]


def unet_step_seconds() -> float:
    """One CFG denoising step (batch 2) of SD 1.5's UNet architecture at 512x512 (64x64 latents)."""
    import torch
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel(
        sample_size=64,
        cross_attention_dim=768,
        attention_head_dim=8,
        block_out_channels=(320, 640, 1280, 1280),
        layers_per_block=2,
    ).eval()
    latents = torch.randn(2, 4, 64, 64)
    text = torch.randn(2, 77, 768)
    with torch.inference_mode():
        unet(latents, 999, text)
        t = time.perf_counter()
        unet(latents, 999, text)
    return time.perf_counter() - t


def controlnet_costs() -> dict[str, float]:
    """Seconds: pose JSON -> 512x512 control picture, Canny at 512, UNet and ControlNet steps."""
    import torch
    from diffusers import ControlNetModel, UNet2DConditionModel

    from generator import control
    from generator.pose import Pose

    body = [(256, 80), (256, 140), (206, 140), (186, 220), (176, 300), (306, 140), (326, 220),
            (336, 300), (226, 300), (226, 400), (226, 490), (286, 300), (286, 400), (286, 490),
            (246, 70), (266, 70), (236, 76), (276, 76)]  # fmt: skip
    pose = Pose(
        {
            "people": [{"pose_keypoints_2d": [v for x, y in body for v in (x, y, 1.0)]}],
            "canvas_width": 512,
            "canvas_height": 768,
        }
    )
    picture = photo(768)

    def best(fn, n: int = 5) -> float:
        times = []
        for _ in range(n):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return min(times)

    out = {
        "pose": best(lambda: control.crop_and_resize(pose.render(), 512, 512)),
        "canny": best(lambda: control.crop_and_resize(control.canny(picture), 512, 512)),
    }
    unet = UNet2DConditionModel(
        sample_size=64,
        cross_attention_dim=768,
        attention_head_dim=8,
        block_out_channels=(320, 640, 1280, 1280),
        layers_per_block=2,
    ).eval()
    net = ControlNetModel.from_unet(unet).eval()
    latents = torch.randn(2, 4, 64, 64)
    text = torch.randn(2, 77, 768)
    cond = torch.rand(2, 3, 512, 512)
    with torch.inference_mode():
        down, mid = net(latents, 999, text, cond, return_dict=False)  # warm-up
        out["controlnet_step"] = best(lambda: net(latents, 999, text, cond), 2)
        unet(latents, 999, text)
        out["unet_step"] = best(lambda: unet(latents, 999, text), 2)
        out["unet_step_with_residuals"] = best(
            lambda: unet(
                latents,
                999,
                text,
                down_block_additional_residuals=down,
                mid_block_additional_residual=mid,
            ),
            2,
        )
    return out


PROMPTS = {
    "plain": "a blue bird flying over a field of flowers on a sunny day",
    "weighted": "masterpiece, (best quality:1.2), a blue bird, ((flying)), over a "
    "[dark] field of flowers, (sunny day:0.9), highly detailed, sharp focus, soft light, "
    "bokeh, depth of field, film grain, warm colors, wide angle",
    "long": ", ".join(["a blue bird flying over a field of flowers on a sunny day"] * 11),
    "editing [a:b:0.5]": "a [blue:red:0.5] bird flying over a field of flowers",
    "alternation [a|b] (20 steps)": "a [blue|red] bird flying over a field of flowers",
}
NEGATIVE = "lowres, bad anatomy, blurry, (worst quality:1.4)"


def _word_tokenizer(folder: Path, texts: list[str]):
    """A CLIP BPE tokenizer whose vocabulary holds every word of `texts` whole."""
    import json
    import re

    from transformers import CLIPTokenizer

    keep = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    chars = {b: chr(b) for b in keep}
    extra = 0
    for b in range(256):
        if b not in chars:
            chars[b] = chr(256 + extra)
            extra += 1
    vocab = [chars[b] for b in range(256)] + [chars[b] + "</w>" for b in range(256)]
    merges = []
    for word in sorted({w for t in texts for w in re.findall(r"[a-z]+", t.lower())}):
        current = word[0]
        for i, ch in enumerate(word[1:], start=1):
            piece = ch + "</w>" if i == len(word) - 1 else ch
            merges.append(f"{current} {piece}")
            current += piece
            vocab.append(current)
    vocab = [*dict.fromkeys(vocab), "<|startoftext|>", "<|endoftext|>"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(dict.fromkeys(merges)) + "\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))


def prompt_costs(repeat: int) -> list[tuple[str, int, int, float, float, float]]:
    """Per prompt: (name, tokens, chunks, diffusers ms, guard ms, of which parsing ms), best of
    `repeat` interleaved runs."""
    from types import SimpleNamespace

    import torch
    from transformers import CLIPTextConfig, CLIPTextModel

    from generator.conditioning import PromptEncoder
    from generator.prompt_syntax import parse_attention, prompt_schedule
    from generator.step_conditioning import StepConditioning

    tokenizer = _word_tokenizer(Path(tempfile.mkdtemp()), [*PROMPTS.values(), NEGATIVE])
    config = CLIPTextConfig(  # SD 1.5's text encoder (openai/clip-vit-large-patch14)
        vocab_size=49408,
        hidden_size=768,
        intermediate_size=3072,
        num_hidden_layers=12,
        num_attention_heads=12,
        max_position_embeddings=77,
        hidden_act="quick_gelu",
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    encoder = CLIPTextModel(config).eval()
    pipe = SimpleNamespace(tokenizer=tokenizer, text_encoder=encoder)

    def diffusers_way(prompt: str) -> None:  # what StableDiffusionPipeline.encode_prompt does
        for text in (prompt, NEGATIVE):
            ids = tokenizer(
                text, padding="max_length", max_length=77, truncation=True, return_tensors="pt"
            ).input_ids
            with torch.no_grad():
                encoder(ids)

    def guard_way(prompt: str) -> None:  # what guard generate does once per image batch
        enc = PromptEncoder(pipe)
        cond, uncond = enc.schedule(prompt, 20), enc.schedule(NEGATIVE, 20, negative=True)
        StepConditioning(enc, cond, uncond, 1, lambda i: i)

    def parsing(prompt: str) -> None:
        for _, text in prompt_schedule(prompt, 20):
            parse_attention(text)
        parse_attention(NEGATIVE)

    rows = []
    for name, prompt in PROMPTS.items():
        tokens = len(tokenizer(prompt, add_special_tokens=False).input_ids)
        chunks = PromptEncoder(pipe).encode([prompt])[0].shape[1] // 77
        ms = timed_together(
            [
                lambda p=prompt: diffusers_way(p),
                lambda p=prompt: guard_way(p),
                lambda p=prompt: parsing(p),
            ],
            repeat,
            min,  # best of: other jobs share this machine's cores
        )
        rows.append((name, tokens, chunks, *ms))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--sizes", default="512,1024")
    ap.add_argument("--unet-step", action="store_true", help="also time one SD 1.5 UNet step")
    ap.add_argument(
        "--controlnet", action="store_true", help="also time what one ControlNet unit adds"
    )
    ap.add_argument(
        "--prompts", action="store_true", help="only time web UI prompt syntax vs diffusers"
    )
    args = ap.parse_args()
    if args.prompts:
        import torch

        print(
            f"web UI prompt syntax vs diffusers' prompt encoding, SD 1.5 text encoder, "
            f"best of {args.repeat}, torch threads {torch.get_num_threads()}"
        )
        print()
        print("| prompt (and NEGATIVE) | tokens | chunks | diffusers | guard | of which parsing |")
        print("|---|---|---|---|---|---|")
        rows = prompt_costs(args.repeat)
        for name, tokens, chunks, plain_ms, guard_ms, parse_ms in rows:
            print(
                f"| {name} | {tokens} | {chunks} | {plain_ms:.0f} ms | {guard_ms:.0f} ms "
                f"| {parse_ms:.1f} ms |"
            )
        return

    os.environ["GUARD_HOME"] = tempfile.mkdtemp()
    import guard.watermark as wm
    from guard.identity import Identity
    from guard.ledger import Ledger
    from guard.provenance.spec import Assertion, ManifestSpec
    from guard.publishing import publish

    identity = Identity.default()
    have_watermark = hasattr(wm, "embed")
    work = Path(tempfile.mkdtemp())
    counter = iter(range(10**6))
    rows = []
    with Ledger(work / "ledger.sqlite3") as ledger:
        for size in map(int, args.sizes.split(",")):
            image = photo(size)
            text = INFOTEXT.format(s=size)
            spec = ManifestSpec(
                action="created",
                source="ai",
                software_agent={"name": "v1-5-pruned-emaonly", "version": "6ce0161689"},
                text={"parameters": text},
                assertions=[Assertion("org.guard.generation", {"infotext": text, "seed": 1})],
            )

            def plain(image=image, text=text) -> None:
                meta = PngImagePlugin.PngInfo()
                meta.add_text("parameters", text)
                image.save(work / f"plain-{next(counter)}.png", pnginfo=meta)

            def signed(image=image, spec=spec, mark=True) -> None:
                out = work / f"guard-{next(counter)}.png"
                publish(image, out, spec, identity=identity, watermark=mark, ledger=ledger)

            fns = [plain, lambda: signed(mark=False)]
            if have_watermark:
                fns += [lambda im=image: wm.embed(im, wm.new_payload()), signed]
            plain_ms, sign_ms, *rest = timed_together(fns, args.repeat)
            embed_ms, full_ms = rest if rest else (float("nan"), float("nan"))
            rows.append((size, plain_ms, embed_ms, sign_ms, full_ms, full_ms - plain_ms))

    print(f"guard generation overhead per image (median of {args.repeat}, {os.cpu_count()} CPUs)")
    print()
    print(
        "| size | plain PNG save | watermark embed | publish w/o watermark | publish (all) "
        "| added by guard |"
    )
    print("|---|---|---|---|---|---|")
    for size, plain_ms, embed_ms, sign_ms, full_ms, added in rows:
        print(
            f"| {size}x{size} | {plain_ms:.0f} ms | {embed_ms:.0f} ms | {sign_ms:.0f} ms "
            f"| {full_ms:.0f} ms | {added:.0f} ms |"
        )
    if not have_watermark:
        print("\nguard.watermark is not available: watermark columns are empty", file=sys.stderr)
    if args.unet_step:
        step = unet_step_seconds()
        print()
        print(
            f"SD 1.5 UNet, one CFG step at 512x512 on this CPU: {step:.2f} s "
            f"-> about {20 * step:.0f} s for 20 steps"
        )
        if rows and rows[0][0] == 512:
            print(
                f"guard's share of a 20-step 512x512 generation: {rows[0][5] / (20 * step * 1000):.4%}"
            )

    if args.controlnet:
        c = controlnet_costs()
        # adding the residuals inside the UNet is a few tensor additions: the unit costs its
        # ControlNet forward (the two UNet timings differ only by machine noise)
        added = c["controlnet_step"]
        print()
        print("ControlNet, SD 1.5 architecture, 512x512, CFG (batch 2), best of runs on this CPU:")
        print()
        print("| step | time |")
        print("|---|---|")
        print(f"| pose JSON drawn + fitted to 512x512 | {c['pose'] * 1000:.0f} ms |")
        print(f"| Canny preprocessor (768 px photo) + fit | {c['canny'] * 1000:.0f} ms |")
        print(f"| UNet step | {c['unet_step']:.2f} s |")
        print(f"| ControlNet step | {c['controlnet_step']:.2f} s |")
        print(f"| UNet step taking the residuals | {c['unet_step_with_residuals']:.2f} s |")
        print(
            f"| added per step by one unit | {added:.2f} s ({added / c['unet_step']:.0%} of a "
            "UNet step) |"
        )
        print(f"| added to a 20-step image | {20 * added:.0f} s |")


if __name__ == "__main__":
    main()
