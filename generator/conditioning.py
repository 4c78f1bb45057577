"""Text conditioning as Stable Diffusion web UI computes it, for diffusers pipelines.

What web UI 1.10 does (modules/sd_hijack_clip.py) and so guard does:
- a prompt is split into attention runs (generator.prompt_syntax), each run tokenized on its own;
- tokens fill 75-token chunks, each encoded as `<start> 75 tokens <end>` (77): prompts are never
  truncated. When a chunk fills up and its last comma is at most 20 tokens back, the words after
  that comma move to the next chunk; `BREAK` ends the chunk; a textual-inversion embedding's
  vectors stay together in one chunk;
- each chunk's hidden states are multiplied by the tokens' weights and rescaled to the chunk's
  original mean (web UI's default emphasis, "Original");
- all texts of one prompt schedule (prompt editing) are encoded as one batch and padded to the same
  number of chunks with empty chunks, as web UI batches them;
- SD 1.x: the last hidden state (clip skip N: the Nth from last, through the final layer norm);
  SD 2.x: the last hidden state of diffusers' penultimate-layer encoder, clip skip ignored as web UI
  ignores it for OpenCLIP; SDXL: the penultimate hidden states of both encoders side by side, and
  the pooled vector from the first chunk of the second one; an empty SDXL negative prompt is zeros.

generator.step_conditioning switches between a schedule's entries during sampling.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from generator.errors import GenerationError
from generator.prompt_syntax import BREAK, parse_attention, prompt_schedule

CHUNK = 75  # tokens per chunk, without the start and end tokens
COMMA_BACKTRACK = 20  # web UI's comma_padding_backtrack default
NEGLIGIBLE_MEAN = 1e-6  # a hidden-state mean below this share of the mean magnitude is rounding


@dataclass
class Chunk:
    tokens: list[int] = field(default_factory=list)
    multipliers: list[float] = field(default_factory=list)


class TextSide:
    """One tokenizer and text encoder, and which of its hidden states web UI uses."""

    def __init__(self, tokenizer: Any, encoder: Any, *, sdxl: bool, pooled: bool) -> None:
        self.tokenizer, self.encoder = tokenizer, encoder
        self.sdxl, self.pooled = sdxl, pooled
        self.comma = tokenizer.get_vocab().get(",</w>")
        self.start, self.end = tokenizer.bos_token_id, tokenizer.eos_token_id
        pad = tokenizer.pad_token_id
        self.pad = self.end if pad is None else pad
        self.groups = self._embedding_groups()

    def _embedding_groups(self) -> dict[int, list[int]]:
        """Token id of a textual-inversion embedding -> the ids of all its vectors.

        diffusers loads an n-vector embedding as the tokens `name`, `name_1`, … `name_{n-1}`;
        the prompt names only the first, and all n go in, side by side, as web UI puts them.
        """
        added = self.tokenizer.get_added_vocab()
        special = set(self.tokenizer.all_special_tokens)
        out = {}
        for name, ident in added.items():
            if name in special:
                continue
            ids = [ident]
            while f"{name}_{len(ids)}" in added:
                ids.append(added[f"{name}_{len(ids)}"])
            out[ident] = ids
        return out

    def _expand(self, tokens: list[int]) -> list[int]:
        """Write out every multi-vector embedding named by its first token only."""
        out: list[int] = []
        position = 0
        while position < len(tokens):
            group = self.groups.get(tokens[position], [tokens[position]])
            out += group
            n = len(group)
            position += n if tokens[position : position + n] == group else 1
        return out

    def empty_chunk(self) -> Chunk:
        return Chunk([self.start] + [self.end] * (CHUNK + 1), [1.0] * (CHUNK + 2))

    def tokenize_line(self, line: str) -> list[Chunk]:
        """web UI's FrozenCLIPEmbedderWithCustomWordsBase.tokenize_line, step for step."""
        parsed = parse_attention(line)
        texts = [text for text, _ in parsed]
        tokenized = self.tokenizer(
            texts, truncation=False, add_special_tokens=False, verbose=False
        )["input_ids"]
        if self.groups:
            tokenized = [self._expand(tokens) for tokens in tokenized]
        chunks: list[Chunk] = []
        chunk = Chunk()
        last_comma = -1

        def next_chunk() -> None:
            nonlocal chunk, last_comma
            missing = CHUNK - len(chunk.tokens)
            chunk.tokens += [self.end] * missing
            chunk.multipliers += [1.0] * missing
            chunk.tokens = [self.start, *chunk.tokens, self.end]
            chunk.multipliers = [1.0, *chunk.multipliers, 1.0]
            last_comma = -1
            chunks.append(chunk)
            chunk = Chunk()

        for tokens, (text, weight) in zip(tokenized, parsed, strict=True):
            if (text, weight) == BREAK:
                next_chunk()
                continue
            position = 0
            while position < len(tokens):
                token = tokens[position]
                if token == self.comma:
                    last_comma = len(chunk.tokens)
                elif (
                    COMMA_BACKTRACK
                    and len(chunk.tokens) == CHUNK
                    and last_comma != -1
                    and len(chunk.tokens) - last_comma <= COMMA_BACKTRACK
                ):
                    cut = last_comma + 1
                    moved = chunk.tokens[cut:], chunk.multipliers[cut:]
                    chunk.tokens, chunk.multipliers = chunk.tokens[:cut], chunk.multipliers[:cut]
                    next_chunk()
                    chunk.tokens, chunk.multipliers = list(moved[0]), list(moved[1])
                if len(chunk.tokens) == CHUNK:
                    next_chunk()
                n = len(self.groups.get(token, ()))
                if not n:
                    chunk.tokens.append(token)
                    chunk.multipliers.append(weight)
                    position += 1
                    continue
                if len(chunk.tokens) + n > CHUNK:
                    next_chunk()
                chunk.tokens += tokens[position : position + n]
                chunk.multipliers += [weight] * n
                position += n
        if chunk.tokens or not chunks:
            next_chunk()
        return chunks

    def encode(
        self, batch: list[list[Chunk]], clip_skip: int, repeats: list[int] | None = None
    ) -> tuple[Any, Any]:
        """Hidden states (texts, 77 x chunks, dim) and, for a pooled side, the first chunk's
        pooled vectors. `repeats`: how often each text stands in web UI's batch (for the mean)."""
        import torch

        device = self.encoder.device
        count = max(len(chunks) for chunks in batch)
        zs, pooled = [], None
        for i in range(count):
            rows = [chunks[i] if i < len(chunks) else self.empty_chunk() for chunks in batch]
            ids = torch.tensor([r.tokens for r in rows], dtype=torch.long, device=device)
            if self.end != self.pad:  # OpenCLIP pads after the first end token
                for r, row in enumerate(rows):
                    ids[r, row.tokens.index(self.end) + 1 :] = self.pad
            z, p = self._forward(ids, clip_skip)
            if i == 0:
                pooled = p
            weights = torch.tensor([r.multipliers for r in rows], dtype=z.dtype, device=z.device)
            counts = None
            if repeats is not None and any(n > 1 for n in repeats):
                counts = torch.tensor(repeats, dtype=z.dtype, device=z.device)
            zs.append(emphasize(z, weights, counts))
        return torch.cat(zs, dim=1), pooled

    def _forward(self, ids: Any, clip_skip: int) -> tuple[Any, Any]:
        skip = clip_skip > 1 and self.end == self.pad
        # hidden states only when used: asking for them costs time in transformers 5
        out = self.encoder(ids, output_hidden_states=self.sdxl or skip)
        if self.sdxl:
            z = out.hidden_states[-2]
        elif skip:  # OpenAI CLIP (SD 1.x) only, as web UI
            # transformers 5's CLIPTextModel holds the norm itself; 4.x under .text_model
            norm = getattr(self.encoder, "final_layer_norm", None)
            norm = norm or self.encoder.text_model.final_layer_norm
            z = norm(out.hidden_states[-clip_skip])
        else:
            z = out.last_hidden_state
        return z, (out.text_embeds if self.pooled else None)


def emphasize(z: Any, weights: Any, counts: Any = None) -> Any:
    """web UI's "Original" emphasis: scale each token's vector, then restore the original mean.

    The mean is over web UI's whole batch: `counts` says how many times each row stands in it (a
    prompt alternating `[a|b]` over 20 steps is 20 texts, 2 of them different; guard encodes the 2).
    A mean that is zero up to rounding (untrained encoders, whose final layer norm centres every
    token) has nothing to restore: web UI would divide one rounding error by another, and so scale
    the whole conditioning by an arbitrary factor. Real CLIP encoders have a mean far from zero.
    """

    def mean(x: Any) -> Any:
        if counts is None:
            return x.mean()
        return (x.mean(dim=(1, 2)) * counts).sum() / counts.sum()

    original = mean(z)
    negligible = NEGLIGIBLE_MEAN * z.abs().mean()
    z = z * weights.unsqueeze(-1)
    scaled = mean(z)
    if abs(original) <= negligible or abs(scaled) <= negligible:
        return z
    return z * (original / scaled)


@dataclass
class Encoded:
    """One prompt schedule, encoded: entry k is used up to step `ends[k]`."""

    ends: list[int]
    embeds: Any  # (entries, tokens, dim)
    pooled: Any = None  # (entries, dim), SDXL

    @property
    def length(self) -> int:
        return int(self.embeds.shape[1])


class PromptEncoder:
    """Encodes prompts for one pipeline (its tokenizers, text encoders, LoRAs and embeddings)."""

    def __init__(self, pipe: Any, clip_skip: int = 1) -> None:
        self.sdxl = hasattr(pipe, "text_encoder_2")
        self.clip_skip = clip_skip
        self.sides: list[TextSide] = []
        if getattr(pipe, "text_encoder", None) is not None:
            self.sides.append(
                TextSide(pipe.tokenizer, pipe.text_encoder, sdxl=self.sdxl, pooled=False)
            )
        if self.sdxl and getattr(pipe, "text_encoder_2", None) is not None:
            self.sides.append(
                TextSide(pipe.tokenizer_2, pipe.text_encoder_2, sdxl=True, pooled=True)
            )
        if not self.sides:
            raise GenerationError("this pipeline has no text encoder to read a prompt with")
        self._empty: Any = None

    def encode(self, texts: list[str], negative: bool = False) -> tuple[Any, Any]:
        """Hidden states and pooled vectors of texts encoded as one batch, as web UI batches a
        prompt's schedule: the emphasis mean is taken over the whole batch, repeats included."""
        import torch

        unique = list(dict.fromkeys(texts))  # each text once; the mean still counts repeats
        repeats = [texts.count(t) for t in unique]
        parts, pooled = [], None
        with torch.no_grad():
            for side in self.sides:
                chunks = [side.tokenize_line(t) for t in unique]
                z, p = side.encode(chunks, self.clip_skip, repeats)
                parts.append(z)
                pooled = p if p is not None else pooled
        if len({z.shape[1] for z in parts}) > 1:
            raise GenerationError(
                "the two text encoders split the prompt into different numbers of chunks "
                "(an embedding loaded into one of them only?)"
            )
        z = torch.cat(parts, dim=-1)
        if self.sdxl and negative and all(t == "" for t in texts):
            z, pooled = z * 0, (pooled * 0 if pooled is not None else None)
        order = [unique.index(t) for t in texts]
        return z[order], (pooled[order] if pooled is not None else None)

    def schedule(
        self, prompt: str, steps: int, hires_steps: int | None = None, negative: bool = False
    ) -> Encoded:
        """A prompt with editing/alternation -> its conditioning for every sampling step."""
        entries = prompt_schedule(prompt, steps, hires_steps)
        z, pooled = self.encode([text for _, text in entries], negative)
        return Encoded([end for end, _ in entries], z, pooled)

    def empty(self) -> Any:
        """The empty prompt's hidden states: web UI's padding chunk (one chunk, 77 tokens)."""
        if self._empty is None:
            self._empty = self.encode([""])[0][:1]
        return self._empty
