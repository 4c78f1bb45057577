"""web UI's "Clip skip" for SD 1.x/2.x: the prompt read from an earlier CLIP layer.

web UI takes hidden layer -N (N = Clip skip; 1 is the last layer) and applies the encoder's final
layer norm. diffusers' own `clip_skip` argument does the same, but reaches the norm through
`text_encoder.text_model`, which transformers 5's CLIPTextModel no longer has; so guard encodes
the prompts here and hands the pipeline `prompt_embeds`. The web UI prompt encoder (issue 10,
prompt syntax) takes `clip_skip` itself; this is the path for plain prompts.
"""

from __future__ import annotations

from typing import Any


def _encode(pipe: Any, texts: list[str], clip_skip: int) -> Any:
    import torch

    tokens = pipe.tokenizer(
        texts,
        padding="max_length",
        max_length=pipe.tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    )
    encoder = pipe.text_encoder
    with torch.no_grad():
        out = encoder(tokens.input_ids.to(encoder.device), output_hidden_states=True)
        hidden = out.hidden_states[-clip_skip]
        norm = getattr(encoder, "final_layer_norm", None) or encoder.text_model.final_layer_norm
        return norm(hidden).to(dtype=encoder.dtype)


def clip_skip_embeddings(pipe: Any, args: dict[str, Any], clip_skip: int) -> dict[str, Any]:
    """Replace `prompt`/`negative_prompt` in a pipeline call's arguments by their embeddings."""
    prompts = list(args.pop("prompt"))
    negatives = list(args.pop("negative_prompt"))
    return {
        "prompt_embeds": _encode(pipe, prompts, clip_skip),
        "negative_prompt_embeds": _encode(pipe, negatives, clip_skip),
    }
