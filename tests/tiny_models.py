"""Tiny random-weight diffusers pipelines built in code, so tests never download a model.

They have the real architectures (UNet2DConditionModel, AutoencoderKL with an 8x VAE like Stable
Diffusion, CLIP text encoders, a byte-level CLIP tokenizer) at a few thousand parameters per block.
Their images are noise-like, but every code path (schedulers, LoRA, textual inversion, img2img,
inpainting, single-file loading, SDXL micro-conditioning) runs for real.

Also here: export to a single-file Stable Diffusion (LDM layout) checkpoint, and writers for a
LoRA file and a textual-inversion embedding, as web UI users have them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

# The test machine's cores are shared; one thread per process avoids oversubscription stalls
# that make tiny models 50x slower, and keeps results bit-stable.
torch.set_num_threads(1)

TEXT_DIM = 32
VOCAB_SIZE = 1000
# A few whole-word merges so prompts in tests encode to a handful of tokens.
_WORDS = ("blue", "bird", "red", "cat", "field", "flowers", "lowres")


def _byte_chars() -> list[str]:
    """The 256 printable stand-ins byte-level BPE uses for raw bytes (GPT-2/CLIP convention)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    out = {b: chr(b) for b in keep}
    extra = 0
    for b in range(256):
        if b not in out:
            out[b] = chr(256 + extra)
            extra += 1
    return [out[b] for b in range(256)]


def write_tokenizer_files(folder: Path) -> tuple[Path, Path]:
    """vocab.json + merges.txt of a tiny CLIP byte-level BPE vocabulary."""
    folder.mkdir(parents=True, exist_ok=True)
    chars = _byte_chars()
    vocab = chars + [c + "</w>" for c in chars]
    merges: list[tuple[str, str]] = []
    for word in _WORDS:
        current = word[0]
        for i, ch in enumerate(word[1:], start=1):
            piece = ch + "</w>" if i == len(word) - 1 else ch
            merges.append((current, piece))
            current += piece
            vocab.append(current)
    vocab = [*list(dict.fromkeys(vocab)), "<|startoftext|>", "<|endoftext|>"]
    vocab_file, merges_file = folder / "vocab.json", folder / "merges.txt"
    vocab_file.write_text(json.dumps({t: i for i, t in enumerate(vocab)}), encoding="utf-8")
    lines = ["#version: 0.2", *(f"{a} {b}" for a, b in dict.fromkeys(merges))]
    merges_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return vocab_file, merges_file


def tiny_tokenizer(folder: Path) -> Any:
    from transformers import CLIPTokenizer

    vocab_file, merges_file = write_tokenizer_files(folder)
    return CLIPTokenizer(str(vocab_file), str(merges_file), model_max_length=77)


def _text_config(tokenizer: Any, hidden: int = TEXT_DIM) -> Any:
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=VOCAB_SIZE,
        hidden_size=hidden,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        layer_norm_eps=1e-5,
        hidden_act="gelu",
        projection_dim=hidden,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def _vae(scaling_factor: float = 0.18215) -> Any:
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 16, 16),
        layers_per_block=1,
        norm_num_groups=4,
        sample_size=64,
        scaling_factor=scaling_factor,
    )


def _sd_scheduler() -> Any:
    from diffusers import PNDMScheduler

    # Stable Diffusion 1.5's own scheduler config
    return PNDMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        skip_prk_steps=True,
        steps_offset=1,
        set_alpha_to_one=False,
        timestep_spacing="leading",
    )


def tiny_sd_pipeline(tmp: Path, seed: int = 0, in_channels: int = 4) -> Any:
    """A Stable Diffusion 1.x-shaped StableDiffusionPipeline (in_channels=9: an inpainting model)."""
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    torch.manual_seed(seed)
    tokenizer = tiny_tokenizer(tmp / "tokenizer_src")
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=in_channels,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=TEXT_DIM,
        attention_head_dim=8,
        norm_num_groups=8,
    )
    text_encoder = CLIPTextModel(_text_config(tokenizer))
    return StableDiffusionPipeline(
        vae=_vae(),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=_sd_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    ).to(torch.float32)


def tiny_sdxl_pipeline(tmp: Path, seed: int = 0, refiner: bool = False) -> Any:
    """A StableDiffusionXLPipeline (or, refiner=True, an SDXL-refiner-shaped img2img pipeline)."""
    from diffusers import (
        EulerDiscreteScheduler,
        StableDiffusionXLImg2ImgPipeline,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    tokenizer = tiny_tokenizer(tmp / "tokenizer_src")
    time_dim = 8
    # the two text encoders differ in width, as CLIP-L and OpenCLIP-bigG do (768 / 1280); diffusers'
    # single-file loader tells them apart by that
    dim_2 = 2 * TEXT_DIM
    # SDXL conditions on 6 size numbers (base) or 5 with an aesthetic score (refiner)
    n_time = 5 if refiner else 6
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(32, 64),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=time_dim,
        transformer_layers_per_block=(1, 1),
        projection_class_embeddings_input_dim=n_time * time_dim + dim_2,
        cross_attention_dim=dim_2 if refiner else TEXT_DIM + dim_2,
        norm_num_groups=8,
    )
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        steps_offset=1,
        timestep_spacing="leading",
    )
    text_encoder_2 = CLIPTextModelWithProjection(_text_config(tokenizer, dim_2))
    tokenizer_2 = tiny_tokenizer(tmp / "tokenizer_2_src")
    if refiner:
        return StableDiffusionXLImg2ImgPipeline(
            vae=_vae(0.13025),
            text_encoder=None,
            text_encoder_2=text_encoder_2,
            tokenizer=None,
            tokenizer_2=tokenizer_2,
            unet=unet,
            scheduler=scheduler,
            requires_aesthetics_score=True,
            force_zeros_for_empty_prompt=False,
        ).to(torch.float32)
    return StableDiffusionXLPipeline(
        vae=_vae(0.13025),
        text_encoder=CLIPTextModel(_text_config(tokenizer)),
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        unet=unet,
        scheduler=scheduler,
        force_zeros_for_empty_prompt=True,
    ).to(torch.float32)


def save_tiny_sd(folder: Path, **kwargs: Any) -> Path:
    """Build a tiny SD pipeline and save it as a diffusers folder (safetensors)."""
    pipe = tiny_sd_pipeline(folder.parent / f"{folder.name}_src", **kwargs)
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


# ---- single-file (original Stable Diffusion / LDM layout) export ---------------------------------
_RESNET_TO_LDM = (
    ("norm1", "in_layers.0"),
    ("conv1", "in_layers.2"),
    ("norm2", "out_layers.0"),
    ("conv2", "out_layers.3"),
    ("time_emb_proj", "emb_layers.1"),
    ("conv_shortcut", "skip_connection"),
)
_VAE_ATTN_TO_LDM = (
    ("group_norm.", "norm."),
    ("to_q.", "q."),
    ("to_k.", "k."),
    ("to_v.", "v."),
    ("to_out.0.", "proj_out."),
)


def _rename(rest: str, table: tuple[tuple[str, str], ...]) -> str:
    for new, old in table:
        if rest.startswith(new):
            return old + rest[len(new) :]
    return rest


def _unet_to_ldm(state: dict[str, torch.Tensor], config: Any) -> dict[str, torch.Tensor]:
    """Inverse of diffusers' convert_ldm_unet_checkpoint, for any block count and layers_per_block."""
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING

    fixed = {
        **DIFFUSERS_TO_LDM_MAPPING["unet"]["layers"],
        **DIFFUSERS_TO_LDM_MAPPING["unet"]["addition_embed_type"],
    }
    per = config.layers_per_block + 1
    up_has_attention = ["CrossAttn" in t for t in config.up_block_types]
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        parts = key.split(".")
        if key in fixed:
            new = fixed[key]
        elif parts[0] == "down_blocks":
            b = int(parts[1])
            if parts[2] == "downsamplers":
                new = f"input_blocks.{(b + 1) * per}.0.op." + ".".join(parts[5:])
            else:
                j, rest = int(parts[3]), ".".join(parts[4:])
                index = b * per + j + 1
                if parts[2] == "resnets":
                    new = f"input_blocks.{index}.0.{_rename(rest, _RESNET_TO_LDM)}"
                else:
                    new = f"input_blocks.{index}.1.{rest}"
        elif parts[0] == "mid_block":
            j, rest = int(parts[2]), ".".join(parts[3:])
            if parts[1] == "resnets":
                new = f"middle_block.{2 * j}.{_rename(rest, _RESNET_TO_LDM)}"
            else:
                new = f"middle_block.1.{rest}"
        elif parts[0] == "up_blocks":
            b = int(parts[1])
            if parts[2] == "upsamplers":
                slot = 2 if up_has_attention[b] else 1
                new = f"output_blocks.{b * per + per - 1}.{slot}.conv." + ".".join(parts[5:])
            else:
                j, rest = int(parts[3]), ".".join(parts[4:])
                index = b * per + j
                if parts[2] == "resnets":
                    new = f"output_blocks.{index}.0.{_rename(rest, _RESNET_TO_LDM)}"
                else:
                    new = f"output_blocks.{index}.1.{rest}"
        else:
            raise KeyError(f"no LDM name for UNet key {key}")
        out["model.diffusion_model." + new] = value
    return out


def _vae_to_ldm(state: dict[str, torch.Tensor], config: Any) -> dict[str, torch.Tensor]:
    """Inverse of diffusers' convert_ldm_vae_checkpoint."""
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING

    fixed = DIFFUSERS_TO_LDM_MAPPING["vae"]
    n_up = len(config.up_block_types)
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        parts = key.split(".")
        side = parts[0]
        if key in fixed:
            new = fixed[key]
        elif parts[1] in ("down_blocks", "up_blocks"):
            b = int(parts[2])
            ldm_b = b if parts[1] == "down_blocks" else n_up - 1 - b
            word = "down" if parts[1] == "down_blocks" else "up"
            if parts[3] in ("downsamplers", "upsamplers"):
                new = f"{side}.{word}.{ldm_b}.{word}sample." + ".".join(parts[5:])
            else:
                rest = ".".join(parts[5:]).replace("conv_shortcut", "nin_shortcut")
                new = f"{side}.{word}.{ldm_b}.block.{parts[4]}.{rest}"
        elif parts[1] == "mid_block":
            rest = ".".join(parts[4:])
            if parts[2] == "resnets":
                rest = rest.replace("conv_shortcut", "nin_shortcut")
                new = f"{side}.mid.block_{int(parts[3]) + 1}.{rest}"
            else:
                new = f"{side}.mid.attn_1.{_rename(rest, _VAE_ATTN_TO_LDM)}"
                if value.ndim == 2:  # LDM keeps attention projections as 1x1 convolutions
                    value = value[:, :, None, None]
        else:
            raise KeyError(f"no LDM name for VAE key {key}")
        out["first_stage_model." + new] = value
    return out


def _clip_to_ldm(model: Any, prefix: str) -> dict[str, torch.Tensor]:
    """OpenAI CLIP text encoder as SD 1.x ('cond_stage_model.transformer.') or SDXL stores it."""
    out = {}
    for key, value in model.state_dict().items():
        full = key if key.startswith("text_model.") else "text_model." + key
        out[prefix + full] = value
    return out


_OPENCLIP_LAYER = (
    (".self_attn.out_proj.", ".attn.out_proj."),
    (".layer_norm1.", ".ln_1."),
    (".layer_norm2.", ".ln_2."),
    (".mlp.fc1.", ".mlp.c_fc."),
    (".mlp.fc2.", ".mlp.c_proj."),
)


def _openclip_to_ldm(model: Any, prefix: str) -> dict[str, torch.Tensor]:
    """SDXL's second text encoder in OpenCLIP layout (fused q/k/v, transposed projection)."""
    state = {
        (k if k.startswith(("text_model.", "text_projection")) else "text_model." + k): v
        for k, v in model.state_dict().items()
    }
    fixed = {
        "text_model.embeddings.position_embedding.weight": "positional_embedding",
        "text_model.embeddings.token_embedding.weight": "token_embedding.weight",
        "text_model.final_layer_norm.weight": "ln_final.weight",
        "text_model.final_layer_norm.bias": "ln_final.bias",
    }
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key in fixed:
            out[prefix + fixed[key]] = value
        elif key == "text_projection.weight":
            out[prefix + "text_projection"] = value.T.contiguous()
        elif key.startswith("text_model.encoder.layers."):
            if "_proj." in key and ".self_attn." in key and "out_proj" not in key:
                continue  # fused below
            new = key.replace("text_model.encoder.layers.", "transformer.resblocks.")
            for old_part, new_part in _OPENCLIP_LAYER:
                new = new.replace(old_part, new_part)
            out[prefix + new] = value
    for i in range(model.config.num_hidden_layers):
        base = f"text_model.encoder.layers.{i}.self_attn."
        for kind in ("weight", "bias"):
            fused = torch.cat([state[f"{base}{p}_proj.{kind}"] for p in "qkv"])
            out[f"{prefix}transformer.resblocks.{i}.attn.in_proj_{kind}"] = fused
    return out


def save_single_file(pipe: Any, path: Path) -> Path:
    """Write an SD 1.x or SDXL pipeline as one checkpoint in the original (LDM) layout.

    This is the layout of the .safetensors/.ckpt files people download for web UI; diffusers reads
    it back with `from_single_file(path, config=<diffusers folder>)`.
    """
    from safetensors.torch import save_file

    state: dict[str, torch.Tensor] = {}
    state.update(_unet_to_ldm(pipe.unet.state_dict(), pipe.unet.config))
    state.update(_vae_to_ldm(pipe.vae.state_dict(), pipe.vae.config))
    if getattr(pipe, "text_encoder_2", None) is not None:
        state.update(_clip_to_ldm(pipe.text_encoder, "conditioner.embedders.0.transformer."))
        state.update(_openclip_to_ldm(pipe.text_encoder_2, "conditioner.embedders.1.model."))
    else:
        state.update(_clip_to_ldm(pipe.text_encoder, "cond_stage_model.transformer."))
    state = {k: v.detach().contiguous().clone() for k, v in state.items()}
    if path.suffix == ".ckpt":
        torch.save({"state_dict": state}, path)
    else:
        save_file(state, str(path))
    return path


# ---- LoRA and textual inversion files ------------------------------------------------------------
def save_lora(pipe: Any, path: Path, rank: int = 4, seed: int = 1, scale: float = 0.5) -> Path:
    """A LoRA on the UNet's attention projections in kohya/web UI format (lora_unet_* keys).

    lora_up is random (not zero) so the LoRA visibly changes the output.
    """
    from safetensors.torch import save_file

    gen = torch.Generator().manual_seed(seed)
    tensors: dict[str, torch.Tensor] = {}
    for name, module in pipe.unet.named_modules():
        if not isinstance(module, torch.nn.Linear):
            continue
        if not name.endswith(("attn1.to_q", "attn1.to_k", "attn1.to_v", "attn2.to_q")):
            continue
        base = "lora_unet_" + name.replace(".", "_")
        down = torch.randn(rank, module.in_features, generator=gen) * scale
        up = torch.randn(module.out_features, rank, generator=gen) * scale
        tensors[f"{base}.lora_down.weight"] = down
        tensors[f"{base}.lora_up.weight"] = up
        tensors[f"{base}.alpha"] = torch.tensor(float(rank))
    save_file(tensors, str(path), metadata={"ss_network_module": "networks.lora"})
    return path


def save_embedding(path: Path, vectors: int = 2, dim: int = TEXT_DIM, seed: int = 2) -> Path:
    """A textual-inversion embedding as web UI users have them (EasyNegative.safetensors style)."""
    from safetensors.torch import save_file

    gen = torch.Generator().manual_seed(seed)
    emb = torch.randn(vectors, dim, generator=gen)
    if path.suffix == ".pt":  # web UI's own training output format
        torch.save({"string_to_param": {"*": emb}, "name": path.stem}, path)
    else:
        save_file({"emb_params": emb}, str(path))
    return path


# ---- saved models, built once per test session -------------------------------------------------
_SAVED: dict[str, Path] = {}


def _once(name: str, factory: Any, build: Any) -> Path:
    """Build a saved model once per session (under pytest's tmp_path_factory) and reuse it."""
    if name not in _SAVED or not _SAVED[name].exists():
        root = factory.mktemp(name)
        _SAVED[name] = build(root)
    return _SAVED[name]


def sd_folder(factory: Any) -> Path:
    """A tiny SD 1.x model saved as a diffusers folder."""

    def build(root: Path) -> Path:
        pipe = tiny_sd_pipeline(root / "src")
        pipe.save_pretrained(root / "tiny-sd", safe_serialization=True)
        return root / "tiny-sd"

    return _once("tiny-sd", factory, build)


def sd_single_file(factory: Any, suffix: str = ".safetensors") -> Path:
    """The same weights as sd_folder(), as one web UI-style checkpoint file."""

    def build(root: Path) -> Path:
        from diffusers import StableDiffusionPipeline

        pipe = StableDiffusionPipeline.from_pretrained(sd_folder(factory))
        return save_single_file(pipe, root / f"tiny-sd-single{suffix}")

    return _once(f"tiny-sd-single{suffix}", factory, build)


def sdxl_single_file(factory: Any) -> Path:
    """The same weights as sdxl_folder(), as one SDXL checkpoint file (OpenCLIP layout and all)."""

    def build(root: Path) -> Path:
        from diffusers import StableDiffusionXLPipeline

        pipe = StableDiffusionXLPipeline.from_pretrained(sdxl_folder(factory))
        return save_single_file(pipe, root / "tiny-sdxl-single.safetensors")

    return _once("tiny-sdxl-single", factory, build)


def sdxl_folder(factory: Any, refiner: bool = False) -> Path:
    name = "tiny-sdxl-refiner" if refiner else "tiny-sdxl"

    def build(root: Path) -> Path:
        pipe = tiny_sdxl_pipeline(root / "src", refiner=refiner)
        pipe.save_pretrained(root / name, safe_serialization=True)
        return root / name

    return _once(name, factory, build)


def save_vae_single_file(path: Path, seed: int = 7) -> Path:
    """A differently initialised VAE as web UI users download them (LDM keys, no prefix)."""
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    vae = _vae()
    state = _vae_to_ldm(vae.state_dict(), vae.config)
    prefix = "first_stage_model."
    save_file({k[len(prefix) :]: v.contiguous() for k, v in state.items()}, str(path))
    return path


def save_vae_folder(path: Path, seed: int = 8) -> Path:
    torch.manual_seed(seed)
    _vae().save_pretrained(path, safe_serialization=True)
    return path
