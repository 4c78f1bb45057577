"""web UI's prompt syntax: the examples are the doctests of web UI 1.10's modules/prompt_parser.py
(parse_prompt_attention, get_learned_conditioning_prompt_schedules), with web UI's outputs."""

from __future__ import annotations

import pytest

from generator.errors import GenerationError
from generator.prompt_syntax import (
    BREAK,
    entry_at,
    parse_attention,
    prompt_schedule,
    split_prompt_weight,
)


def att(text):
    return [[t, w] for t, w in parse_attention(text)]


# ---- parse_prompt_attention doctests --------------------------------------------------------------
def test_attention_doctests():
    assert att("normal text") == [["normal text", 1.0]]
    assert att("an (important) word") == [["an ", 1.0], ["important", 1.1], [" word", 1.0]]
    assert att("(unbalanced") == [["unbalanced", 1.1]]
    assert att("\\(literal\\]") == [["(literal]", 1.0]]
    assert att("(unnecessary)(parens)") == [["unnecessaryparens", 1.1]]
    assert att("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).") == [
        ["a ", 1.0],
        ["house", 1.5730000000000004],
        [" ", 1.1],
        ["on", 1.0],
        [" a ", 1.1],
        ["hill", 0.55],
        [", sun, ", 1.1],
        ["sky", 1.4641000000000006],
        [".", 1.1],
    ]


def test_attention_weights_brackets_and_escapes():
    assert att("((word))") == [["word", 1.1 * 1.1]]
    assert att("(word:1.3)") == [["word", 1.3]]
    assert att("(word : 1.3 )") == [["word ", 1.3]]  # web UI 1.10 allows spaces around the weight
    assert att("[word]") == [["word", 1 / 1.1]]
    assert att("[[word]]") == [["word", 1 / 1.1 / 1.1]]
    assert att("a \\(b\\) c") == [["a (b) c", 1.0]]
    assert att("a \\\\ b") == [["a \\ b", 1.0]]
    assert att("word:1.3)") == [["word:1.3)", 1.0]]  # no open bracket: literal
    assert att("") == [["", 1.0]]
    with pytest.raises(GenerationError, match="not a number"):
        parse_attention("(a:1.2.3)")  # web UI fails on this too


def test_break_splits_and_is_not_weighted_text():
    assert parse_attention("a cat BREAK a dog") == [("a cat", 1.0), BREAK, ("a dog", 1.0)]
    # inside brackets BREAK is weighted like any word, and web UI then encodes it as text
    assert parse_attention("(a BREAK b)")[1] == ("BREAK", -1.1)
    assert parse_attention("BREAKFAST") == [("BREAKFAST", 1.0)]
    assert parse_attention("a break b") == [("a break b", 1.0)]


# ---- get_learned_conditioning_prompt_schedules doctests -----------------------------------------
def g(prompt, steps=10, hires=None):
    return [[end, text] for end, text in prompt_schedule(prompt, steps, hires)]


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("test", [[10, "test"]]),
        ("a [b:3]", [[3, "a "], [10, "a b"]]),
        ("a [b: 3]", [[3, "a "], [10, "a b"]]),
        ("a [[[b]]:2]", [[2, "a "], [10, "a [[b]]"]]),
        ("[(a:2):3]", [[3, ""], [10, "(a:2)"]]),
        ("a [b : c : 1] d", [[1, "a b  d"], [10, "a  c  d"]]),
        ("a[b:[c:d:2]:1]e", [[1, "abe"], [2, "ace"], [10, "ade"]]),
        ("a [unbalanced", [[10, "a [unbalanced"]]),
        ("a [b:.5] c", [[5, "a  c"], [10, "a b c"]]),
        ("((a][:b:c [d:3]", [[3, "((a][:b:c "], [10, "((a][:b:c d"]]),
        (
            "[a|(b:1.1)]",
            [[i, "a" if i % 2 else "(b:1.1)"] for i in range(1, 11)],
        ),
        ("[fe|]male", [[i, "female" if i % 2 else "male"] for i in range(1, 11)]),
        ("[fe|||]male", [[i, "female" if i % 4 == 1 else "male"] for i in range(1, 11)]),
    ],
)
def test_schedule_doctests(prompt, expected):
    assert g(prompt) == expected


def test_unparseable_prompt_is_kept_verbatim():
    # web UI's doctest for this prompt ("not handling this right now") is stale: its parser fails
    # on it and keeps the prompt as written, which is what guard does too
    assert g("a [{b|d{:.5] c") == [[10, "a [{b|d{:.5] c"]]


def test_hires_pass_schedule_doctests():
    assert g("a [b:.5] c", 10, 10) == [[10, "a b c"]]
    assert g("a [b:1.5] c", 10, 10) == [[5, "a  c"], [10, "a b c"]]
    # an integer step counts on from the first pass: step 13 is the hires pass's step 3
    assert g("a [b:13] c", 10, 10) == [[3, "a  c"], [10, "a b c"]]


def test_the_fantasy_landscape_example():
    """The worked example at the top of web UI's prompt_parser.py (100 steps)."""
    prompt = (
        "fantasy landscape with a [mountain:lake:0.25] and [an oak:a christmas tree:0.75]"
        "[ in foreground::0.6][ in background:0.25] [shoddy:masterful:0.5]"
    )
    assert g(prompt, 100) == [
        [25, "fantasy landscape with a mountain and an oak in foreground shoddy"],
        [50, "fantasy landscape with a lake and an oak in foreground in background shoddy"],
        [60, "fantasy landscape with a lake and an oak in foreground in background masterful"],
        [75, "fantasy landscape with a lake and an oak in background masterful"],
        [100, "fantasy landscape with a lake and a christmas tree in background masterful"],
    ]


def test_entry_at_counts_steps_from_zero_like_web_ui():
    ends = [end for end, _ in prompt_schedule("a [b:3]", 10)]
    assert [entry_at(ends, step) for step in range(10)] == [0, 0, 0, 0, 1, 1, 1, 1, 1, 1]
    ends = [end for end, _ in prompt_schedule("[a|b]", 4)]
    # web UI: step 0 and 1 use the first entry ('a'), then one entry per step
    assert [entry_at(ends, step) for step in range(4)] == [0, 0, 1, 2]


def test_prompt_weight_and_and():
    assert split_prompt_weight("a cat :1.2") == ("a cat", 1.2)
    assert split_prompt_weight("a (cat:1.2)") == ("a (cat:1.2)", 1.0)
    assert split_prompt_weight("a cat") == ("a cat", 1.0)
    assert split_prompt_weight("the ANDES, sANDy") == ("the ANDES, sANDy", 1.0)
    with pytest.raises(GenerationError, match="AND"):
        split_prompt_weight("a cat AND a dog")
