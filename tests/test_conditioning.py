"""Text conditioning as web UI computes it (modules/sd_hijack_clip.py, sd_emphasis.py): the expected
tensors are built here by hand from the token ids, weights and chunk layouts web UI's algorithm
gives, and compared with generator.conditioning's output. Tiny in-code CLIP encoders."""

from __future__ import annotations

import pytest
import tiny_models as tm
import torch

from generator.conditioning import PromptEncoder
from generator.step_conditioning import StepConditioning


def _realistic(pipe):
    """Give the final layer norms a learned-looking bias, as real CLIP encoders have: an untrained
    norm makes every hidden state's mean exactly 0, which web UI's mean restoration divides by."""
    gen = torch.Generator().manual_seed(3)
    for enc in (pipe.text_encoder, getattr(pipe, "text_encoder_2", None)):
        if enc is None:
            continue
        for module in enc.modules():
            if isinstance(module, torch.nn.LayerNorm):
                with torch.no_grad():
                    module.bias.copy_(torch.randn(module.bias.shape, generator=gen) * 0.5)
    return pipe


@pytest.fixture(scope="module")
def sd(tmp_path_factory):
    return _realistic(tm.tiny_sd_pipeline(tmp_path_factory.mktemp("cond_sd")))


@pytest.fixture(scope="module")
def sdxl(tmp_path_factory):
    return _realistic(tm.tiny_sdxl_pipeline(tmp_path_factory.mktemp("cond_sdxl")))


def ids(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


def row(tok, body, weights=None):
    """One 77-token chunk: start, the tokens, end tokens to the end (SD 1.x pads with end)."""
    tokens = [tok.bos_token_id, *body] + [tok.eos_token_id] * (76 - len(body))
    mult = [1.0, *(weights or [1.0] * len(body))] + [1.0] * (76 - len(body))
    return tokens, mult


def encode_rows(encoder, rows, weights=None):
    """last_hidden_state of token rows, times weights, mean restored over the whole batch."""
    with torch.no_grad():
        z = encoder(torch.tensor(rows)).last_hidden_state
    if weights is None:
        return z
    w = torch.tensor(weights)[..., None]
    scaled = z * w
    return scaled * (z.mean() / scaled.mean())


# ---- attention weights --------------------------------------------------------------------------
def test_weights_multiply_tokens_and_restore_the_chunk_mean(sd):
    tok = sd.tokenizer
    body, weights = [], []
    # web UI tokenizes every attention run on its own: "a ", "blue" x1.5, " bird, ", "red" /1.1, ...
    for text, w in (("a ", 1.0), ("blue", 1.5), (" bird, ", 1.0), ("red", 1 / 1.1), (" cat", 1.0)):
        piece = ids(tok, text)
        body += piece
        weights += [w] * len(piece)
    tokens, mult = row(tok, body, weights)
    expected = encode_rows(sd.text_encoder, [tokens], [mult])

    z, pooled = PromptEncoder(sd).encode(["a (blue:1.5) bird, [red] cat"])
    assert pooled is None
    assert z.shape == (1, 77, tm.TEXT_DIM)
    torch.testing.assert_close(z, expected)
    # and the weighting really changed something
    plain = encode_rows(sd.text_encoder, [tokens])
    assert (z - plain).abs().max() > 1e-3


def test_nested_brackets_and_escapes(sd):
    enc = PromptEncoder(sd)
    tok = sd.tokenizer
    body = ids(tok, "blue")
    tokens, mult = row(tok, body, [1.1 * 1.1] * len(body))
    torch.testing.assert_close(
        enc.encode(["((blue))"])[0], encode_rows(sd.text_encoder, [tokens], [mult])
    )
    # \( is a literal bracket, not emphasis: the same as the plain text's tokens
    tokens, _ = row(tok, ids(tok, "(blue)"))
    torch.testing.assert_close(
        enc.encode(["\\(blue\\)"])[0], encode_rows(sd.text_encoder, [tokens])
    )


def test_the_mean_is_restored_over_the_whole_schedule_batch(sd):
    """web UI encodes a prompt's schedule texts as one batch; the mean spans all of them."""
    tok = sd.tokenizer
    rows, mults = [], []
    for text, w in (("red", 1.3), ("blue", 1.0)):
        tokens, mult = row(tok, ids(tok, text), [w] * len(ids(tok, text)))
        rows.append(tokens)
        mults.append(mult)
    expected = encode_rows(sd.text_encoder, rows, mults)
    z, _ = PromptEncoder(sd).encode(["(red:1.3)", "blue"])
    torch.testing.assert_close(z, expected)
    # encoded alone, the first text comes out differently
    alone, _ = PromptEncoder(sd).encode(["(red:1.3)"])
    assert (alone[0] - z[0]).abs().max() > 1e-4
    # repeated texts (alternation over many steps) count in the mean as often as they appear
    expected = encode_rows(sd.text_encoder, [rows[0], rows[1], rows[1]], [*mults, mults[1]])
    z, _ = PromptEncoder(sd).encode(["(red:1.3)", "blue", "blue"])
    torch.testing.assert_close(z, expected)


# ---- chunks -------------------------------------------------------------------------------------
def test_break_starts_a_new_chunk(sd):
    tok = sd.tokenizer
    first, _ = row(tok, ids(tok, "a blue bird"))
    second, _ = row(tok, ids(tok, "a red cat"))
    z, _ = PromptEncoder(sd).encode(["a blue bird BREAK a red cat"])
    assert z.shape == (1, 154, tm.TEXT_DIM)
    torch.testing.assert_close(z[:, :77], encode_rows(sd.text_encoder, [first]))
    torch.testing.assert_close(z[:, 77:], encode_rows(sd.text_encoder, [second]))


def _chunk_tokens(sd, prompt):
    return [c.tokens for c in PromptEncoder(sd).sides[0].tokenize_line(prompt)]


def test_long_prompt_backs_off_to_a_comma_within_20_tokens(sd):
    tok = sd.tokenizer
    b, c, comma = ids(tok, "b")[0], ids(tok, "c")[0], ids(tok, ",")[0]
    bos, eos = tok.bos_token_id, tok.eos_token_id
    # 70 tokens, a comma, 10 more: the chunk fills 5 tokens after the comma, so those move on
    prompt = " ".join(["b"] * 70) + ", " + " ".join(["c"] * 10)
    assert _chunk_tokens(sd, prompt) == [
        [bos, *[b] * 70, comma, *[eos] * 5],
        [bos, *[c] * 10, *[eos] * 66],
    ]
    # a comma 25 tokens back is too far: the chunk is cut at 75 tokens
    prompt = " ".join(["b"] * 50) + ", " + " ".join(["c"] * 30)
    assert _chunk_tokens(sd, prompt) == [
        [bos, *[b] * 50, comma, *[c] * 24, eos],
        [bos, *[c] * 6, *[eos] * 70],
    ]


def test_a_150_token_prompt_is_two_chunks_nothing_truncated(sd):
    tok = sd.tokenizer
    prompt = " ".join(["b"] * 148) + " red cat"
    chunks = _chunk_tokens(sd, prompt)
    assert len(chunks) == 2
    assert chunks[1][74:77] == [*ids(tok, "red cat"), tok.eos_token_id]
    z, _ = PromptEncoder(sd).encode([prompt])
    other, _ = PromptEncoder(sd).encode([" ".join(["b"] * 148) + " blue bird"])
    assert z.shape == (1, 154, tm.TEXT_DIM)
    torch.testing.assert_close(z[:, :77], other[:, :77])
    assert (z[:, 77:] - other[:, 77:]).abs().max() > 1e-3


def test_an_embedding_stays_whole_in_one_chunk(sd, tmp_path):
    import copy

    pipe = copy.deepcopy(sd)
    pipe.load_textual_inversion(
        str(tm.save_embedding(tmp_path / "emb.safetensors", vectors=3)), token="emb"
    )
    tok = pipe.tokenizer
    group = [tok.convert_tokens_to_ids(t) for t in ("emb", "emb_1", "emb_2")]
    b = ids(tok, "b")[0]
    # 73 tokens then a 3-vector embedding: it does not fit in 75, so all 3 vectors move on
    prompt = " ".join(["b"] * 73) + " emb"
    chunks = [c.tokens for c in PromptEncoder(pipe).sides[0].tokenize_line(prompt)]
    assert chunks[0] == [tok.bos_token_id, *[b] * 73, *[tok.eos_token_id] * 3]
    assert chunks[1][:4] == [tok.bos_token_id, *group]


# ---- prompt and negative prompt of different lengths ----------------------------------------------
def test_negative_is_padded_with_empty_chunks_and_masked_like_separate_calls(sd):
    enc = PromptEncoder(sd)
    cond = enc.schedule(" ".join(["b"] * 100), 10)
    uncond = enc.schedule("lowres", 10, negative=True)
    steps = StepConditioning(enc, cond, uncond, batch=1, counter=lambda i: i)
    args = steps.pipe_args()
    assert (
        args["prompt_embeds"].shape == args["negative_prompt_embeds"].shape == (1, 154, tm.TEXT_DIM)
    )
    # web UI's padding chunk is the empty prompt's encoding
    torch.testing.assert_close(args["negative_prompt_embeds"][:, 77:], enc.encode([""])[0])

    unet = sd.unet
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    t = torch.tensor(500)
    batched_states = torch.cat([args["negative_prompt_embeds"], args["prompt_embeds"]])
    with torch.no_grad():
        with steps.masked_padding(sd):
            batched = unet(x, t, encoder_hidden_states=batched_states).sample
        unmasked = unet(x, t, encoder_hidden_states=batched_states).sample
        negative = unet(x[:1], t, encoder_hidden_states=uncond.embeds).sample
        positive = unet(x[1:], t, encoder_hidden_states=cond.embeds).sample
    torch.testing.assert_close(batched, torch.cat([negative, positive]), atol=1e-5, rtol=1e-4)
    assert (unmasked[:1] - negative).abs().max() > 1e-4  # the mask is what makes them equal


# ---- SDXL -----------------------------------------------------------------------------------------
def test_sdxl_matches_diffusers_for_a_plain_prompt_and_pools_the_first_chunk(sdxl):
    enc = PromptEncoder(sdxl)
    z, pooled = enc.encode(["a blue bird"])
    ref, _, ref_pooled, _ = sdxl.encode_prompt(
        "a blue bird", device="cpu", do_classifier_free_guidance=False
    )
    torch.testing.assert_close(z, ref)
    torch.testing.assert_close(pooled, ref_pooled)

    long_z, long_pooled = enc.encode(["a blue bird BREAK a red cat"])
    assert long_z.shape == (1, 154, tm.TEXT_DIM + 2 * tm.TEXT_DIM)
    torch.testing.assert_close(long_pooled, ref_pooled)  # web UI: zs[0].pooled


def test_sdxl_empty_negative_prompt_is_zeros(sdxl):
    z, pooled = PromptEncoder(sdxl).encode([""], negative=True)
    assert z.shape == (1, 77, 3 * tm.TEXT_DIM)
    assert not z.any() and not pooled.any()
    z, _ = PromptEncoder(sdxl).encode([""])  # the same text as a prompt is encoded
    assert z.any()


def test_clip_skip_takes_an_earlier_layer_through_the_final_norm(sd):
    tok = sd.tokenizer
    tokens, _ = row(tok, ids(tok, "a blue bird"))
    with torch.no_grad():
        out = sd.text_encoder(torch.tensor([tokens]), output_hidden_states=True)
        norm = (
            getattr(sd.text_encoder, "final_layer_norm", None)
            or sd.text_encoder.text_model.final_layer_norm
        )
        expected = norm(out.hidden_states[-2])
    torch.testing.assert_close(PromptEncoder(sd, clip_skip=2).encode(["a blue bird"])[0], expected)


def test_sd2_openclip_padding_and_no_clip_skip(tmp_path):
    """SD 2.x's OpenCLIP tokenizer pads with '!' after the end token; web UI pads the same way
    (id_pad) and ignores Clip skip for OpenCLIP."""
    pipe = _realistic(tm.tiny_sd_pipeline(tmp_path))
    pipe.tokenizer.pad_token = "!"
    tok = pipe.tokenizer
    assert tok.pad_token_id != tok.eos_token_id
    enc = PromptEncoder(pipe)
    ref, _ = pipe.encode_prompt("a blue bird", "cpu", 1, False)
    torch.testing.assert_close(enc.encode(["a blue bird"])[0], ref)  # diffusers pads alike
    torch.testing.assert_close(PromptEncoder(pipe, clip_skip=2).encode(["a blue bird"])[0], ref)
    # a second chunk: start, tokens, end, then pads
    chunks = enc.sides[0].tokenize_line("a blue bird BREAK red")
    body = ids(tok, "red")
    assert chunks[1].tokens == [tok.bos_token_id, *body] + [tok.eos_token_id] * (76 - len(body))
    z, _ = enc.encode(["a blue bird BREAK red"])
    padded = [tok.bos_token_id, *body, tok.eos_token_id] + [tok.pad_token_id] * (75 - len(body))
    torch.testing.assert_close(z[:, 77:], encode_rows(pipe.text_encoder, [padded]))


def test_a_zero_mean_encoding_is_weighted_without_amplifying_rounding():
    """An untrained encoder's final layer norm centres every token, so the chunk's mean is a
    rounding error; restoring it divided one rounding error by another and scaled the whole
    conditioning by an arbitrary factor (seen as a sign flip or a 10^8 blow-up by version)."""
    from generator.conditioning import emphasize

    torch.manual_seed(0)
    z = torch.randn(1, 77, 32, dtype=torch.float64)
    z = z - z.mean(dim=-1, keepdim=True)  # centred per token, as LayerNorm leaves it
    z[0, 0, 0] += 1e-12  # a mean of rounding size, not exactly zero
    weights = torch.ones(1, 77, dtype=torch.float64)
    weights[0, 2] = 1.6
    out = emphasize(z, weights)
    torch.testing.assert_close(out, z * weights.unsqueeze(-1))
