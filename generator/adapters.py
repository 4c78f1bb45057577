"""LoRAs and textual-inversion embeddings for one run, as web UI applies them.

`<lora:name:w>` tags in a prompt set weights and are removed before encoding; LoRAs and embeddings
are unloaded after each run so one loaded model can serve many requests.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from generator.errors import GenerationError
from generator.logs import diffusers_warnings
from generator.models import LoadedModel
from guard.webui.infotext import format_number


def prompt_for_encoder(prompt: str, lora_names: set[str]) -> str:
    """web UI's `<lora:name:w>` tags are instructions, not words: strip them before encoding."""
    from guard.webui.infotext import strip_lora_tags

    check_lora_tags(prompt, lora_names)
    return strip_lora_tags(prompt)


def check_lora_tags(prompt: str, lora_names: set[str]) -> None:
    """A tag naming a LoRA that was not given with --lora is an error rather than silently
    ignored; it needs no model, so validate() asks before one loads."""
    from guard.webui.infotext import lora_tags

    missing = [name for name, _ in lora_tags(prompt) if name not in lora_names]
    if missing:
        raise GenerationError(
            f"the prompt asks for LoRA '{missing[0]}' but no --lora file named {missing[0]}.* "
            "was given; add --lora path/to/" + missing[0] + ".safetensors"
        )


def prompt_with_tags(prompt: str, tags: list[tuple[str, float]]) -> str:
    """The prompt as web UI would show it: with a `<lora:name:weight>` tag per LoRA."""
    from guard.webui.infotext import lora_tags

    present = {name for name, _ in lora_tags(prompt)}
    extra = [f"<lora:{n}:{format_number(float(w))}>" for n, w in tags if n not in present]
    return " ".join([prompt, *extra]) if extra else prompt


class Adapters:
    """Load LoRAs and embeddings for one run and remove them after, so runs don't leak."""

    def __init__(
        self,
        model: LoadedModel,
        prompt: str,
        loras: list[tuple[Path, float]],
        embeddings: list[tuple[Path, str | None]],
    ) -> None:
        self.model = model
        self.loras = loras
        self.embeddings = embeddings
        self.lora_tags: list[tuple[str, float]] = []
        self.lora_hashes: dict[str, str] = {}
        self.ti_hashes: dict[str, str] = {}
        self.lora_names: set[str] = set()
        self._tokens: list[str] = []
        # weights given in the prompt's tags override a --lora without an explicit weight
        from guard.webui.infotext import lora_tags

        self._tag_weights = dict(lora_tags(prompt))

    def __enter__(self) -> Adapters:
        try:
            self._load_loras()
            self._load_embeddings()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        pipe = self.model.pipe
        if self.lora_names:
            pipe.unload_lora_weights()
        if self._tokens:
            if self.model.family == "sdxl":
                for enc, tok in (
                    (pipe.text_encoder, pipe.tokenizer),
                    (pipe.text_encoder_2, pipe.tokenizer_2),
                ):
                    pipe.unload_textual_inversion(self._tokens, tokenizer=tok, text_encoder=enc)
            else:
                pipe.unload_textual_inversion(self._tokens)

    def _load_loras(self) -> None:
        from generator.hashes import lora_hash

        pipe = self.model.pipe
        names, weights = [], []
        for i, (path, weight) in enumerate(self.loras):
            name = path.stem
            if name in self.lora_names:
                raise GenerationError(f"--lora {path}: a LoRA named {name} is already loaded")
            if weight == 1.0 and name in self._tag_weights:
                weight = self._tag_weights[name]
            adapter = f"lora{i}_" + re.sub(r"\W", "_", name)
            try:
                with diffusers_warnings() as warned:
                    pipe.load_lora_weights(str(path), adapter_name=adapter)
                unexpected = [w for w in warned if "unexpected keys" in w]
                if unexpected:
                    pipe.delete_adapters(adapter)
                    raise ValueError("its layers do not match this model's")
            except Exception as exc:
                raise GenerationError(
                    f"--lora {path}: cannot be applied to {self.model.name} "
                    f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]}). Check that the "
                    f"LoRA was made for this model family ({self.model.family.upper()})."
                ) from exc
            self.lora_names.add(name)
            names.append(adapter)
            weights.append(weight)
            self.lora_tags.append((name, weight))
            self.lora_hashes[name] = lora_hash(path)
        if names:
            pipe.set_adapters(names, adapter_weights=weights)

    def _load_embeddings(self) -> None:
        from generator.hashes import embedding_hash

        pipe = self.model.pipe
        for path, token in self.embeddings:
            token = token or path.stem
            # multi-vector embeddings add token, token_1, ...; remember all of them to unload
            before = added_tokens(pipe)
            try:
                if self.model.family == "sdxl":
                    self._load_sdxl_embedding(path, token)
                else:
                    pipe.load_textual_inversion(str(path), token=token)
            except GenerationError:
                raise
            except Exception as exc:
                raise GenerationError(
                    f"--embedding {path}: cannot be loaded into {self.model.name} "
                    f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]}). Check that it "
                    f"was trained for this model family ({self.model.family.upper()}) and that "
                    f"the token '{token}' is not already a word the model knows."
                ) from exc
            self._tokens.extend(t for t in added_tokens(pipe) if t not in before)
            self.ti_hashes[token] = embedding_hash(path)

    def _load_sdxl_embedding(self, path: Path, token: str) -> None:
        """SDXL embeddings hold one tensor per text encoder ('clip_l', 'clip_g')."""
        from generator.checkpoints import read_state_dict

        state = read_state_dict(path)
        if "clip_l" not in state or "clip_g" not in state:
            raise GenerationError(
                f"--embedding {path}: is not an SDXL embedding (it has no clip_l/clip_g "
                "tensors); use an embedding made for SDXL"
            )
        pipe = self.model.pipe
        pipe.load_textual_inversion(
            state["clip_l"], token=token, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer
        )
        pipe.load_textual_inversion(
            state["clip_g"],
            token=token,
            text_encoder=pipe.text_encoder_2,
            tokenizer=pipe.tokenizer_2,
        )


def added_tokens(pipe: Any) -> set[str]:
    tokens = set(pipe.tokenizer.get_added_vocab())
    if getattr(pipe, "tokenizer_2", None) is not None:
        tokens |= set(pipe.tokenizer_2.get_added_vocab())
    return tokens
