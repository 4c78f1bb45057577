"""Stable Diffusion web UI's prompt syntax, parsed exactly as web UI 1.10 parses it.

- attention: `(word)` x1.1, `((word))` x1.21, `(word:1.3)`, `[word]` /1.1, `\\(` a literal `(`;
- `BREAK` (upper case, a word of its own) starts a new 75-token chunk;
- prompt editing `[from:to:when]`, `[to:when]`, `[from::when]`: `when` is a step number, or a
  fraction of the steps when written with a `.`;
- alternation `[a|b|c]`: one option per step, in turn;
- a trailing `:weight` scales the prompt's guidance (web UI's composable-diffusion weight).

Hand-written because no maintained library reads this syntax the same way: compel has its own
(`word++`, `.blend()`), and sd_embed reads attention only (no editing, alternation, `BREAK` or
comma backtracking). The behaviour, down to web UI's quirks (an unparseable prompt is kept
verbatim; `[a|b]` shows `a` on the first two steps), is fixed by tests built from the doctests in
web UI's modules/prompt_parser.py. The editing grammar is written for lark, the parser web UI uses.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from generator.errors import GenerationError

BREAK = ("BREAK", -1.0)  # the marker parse_attention puts where a BREAK was

# web UI's attention tokens, in the order it tries them: escapes, brackets, `:weight)`, text, `:`
_ATTENTION = re.compile(
    r"""
    \\[()\[\]\\]? |                     # an escape (a lone backslash is kept as text)
    (?P<open>[(\[]) |
    :\s*(?P<weight>[+-]?[.\d]+)\s*\) |   # `(text:1.3)` closes with its weight
    (?P<close>[)\]]) |
    [^\\()\[\]:]+ |
    :
    """,
    re.VERBOSE,
)
_BREAK = re.compile(r"\s*\bBREAK\b\s*", re.S)
_ROUND, _SQUARE = 1.1, 1 / 1.1


def _weight(raw: str, prompt: str) -> float:
    try:
        return float(raw)
    except ValueError:  # web UI fails here too ('(a:1.2.3)'); say where
        raise GenerationError(
            f"prompt '{prompt[:80]}': '(…:{raw})' has a weight that is not a number"
        ) from None


def parse_attention(text: str) -> list[tuple[str, float]]:
    """Split a prompt into (text, weight) runs, merging neighbours of equal weight.

    `BREAK` appears as the pair BREAK (`("BREAK", -1.0)`). Unclosed brackets still weigh what
    they enclose, as in web UI: `(unbalanced` -> [("unbalanced", 1.1)].
    """
    runs: list[list[Any]] = []
    round_open: list[int] = []
    square_open: list[int] = []

    def scale(start: int, factor: float) -> None:
        for run in runs[start:]:
            run[1] *= factor

    for m in _ATTENTION.finditer(text):
        piece = m.group(0)
        if piece.startswith("\\"):
            runs.append([piece[1:], 1.0])
        elif m.group("open") == "(":
            round_open.append(len(runs))
        elif m.group("open") == "[":
            square_open.append(len(runs))
        elif m.group("weight") is not None and round_open:
            scale(round_open.pop(), _weight(m.group("weight"), text))
        elif m.group("close") == ")" and round_open:
            scale(round_open.pop(), _ROUND)
        elif m.group("close") == "]" and square_open:
            scale(square_open.pop(), _SQUARE)
        else:
            for i, part in enumerate(_BREAK.split(piece)):
                if i:
                    runs.append(list(BREAK))
                runs.append([part, 1.0])
    for start in round_open:
        scale(start, _ROUND)
    for start in square_open:
        scale(start, _SQUARE)
    if not runs:
        runs = [["", 1.0]]
    merged: list[list[Any]] = [runs[0]]
    for run in runs[1:]:
        if run[1] == merged[-1][1]:
            merged[-1][0] += run[0]
        else:
            merged.append(run)
    return [(str(t), float(w)) for t, w in merged]


# ---- prompt editing and alternation -------------------------------------------------------------
# The language web UI's schedule parser accepts. Stray brackets are allowed at the top level only;
# a prompt that does not parse is used verbatim for every step.
_GRAMMAR = r"""
!start: (text | /[][():]/+)*
text: (emphasis | edit | alternation | words | SPACE)*
!emphasis: "(" text ")"
        | "(" text ":" text ")"
        | "[" text "]"
edit: "[" [text ":"] text ":" [SPACE] NUMBER [SPACE] "]"
alternation: "[" text ("|" [text])+ "]"
SPACE: /\s+/
words: /([^\\\[\]():|]|\\.)+/
%import common.SIGNED_NUMBER -> NUMBER
"""


@lru_cache(maxsize=1)
def _parser() -> Any:
    import lark

    return lark.Lark(_GRAMMAR)


def prompt_schedule(
    prompt: str, steps: int, hires_steps: int | None = None
) -> list[tuple[int, str]]:
    """[(last step, prompt text)] for a prompt with editing/alternation, as web UI computes it.

    `steps` counts sampling steps (web UI doubles them for second-order samplers). For the hires
    fix's second pass give the first pass's steps and `hires_steps`: then integer `when`s count on
    from the first pass and fractions above 1 reach into the second (`[a:b:1.5]` switches halfway
    through the hires pass), web UI's default since 1.8.
    """
    import lark

    if hires_steps is None:
        int_offset, frac_offset, total = 0, 0.0, steps
    else:
        int_offset, frac_offset, total = steps, 1.0, hires_steps
    try:
        tree = _parser().parse(prompt)
    except lark.exceptions.LarkError:
        return [(total, prompt)]

    switch_at: dict[int, int] = {}  # id(edit node) -> step
    boundaries = {total}
    for node in tree.iter_subtrees():
        if node.data == "edit":
            raw = str(node.children[-2])
            value = float(raw)
            value = (value - frac_offset) * total if "." in raw else value - int_offset
            when = min(total, int(value))
            switch_at[id(node)] = when
            if when >= 1:
                boundaries.add(when)
        elif node.data == "alternation":
            boundaries.update(range(1, total + 1))
    return [(step, _render(tree, step, switch_at)) for step in sorted(boundaries)]


def _render(node: Any, step: int, switch_at: dict[int, int]) -> str:
    import lark

    if node is None:
        return ""
    if isinstance(node, lark.Token):
        return str(node)
    if node.data == "edit":
        before, after = node.children[0], node.children[1]
        return _render(before if step <= switch_at[id(node)] else after, step, switch_at)
    if node.data == "alternation":
        options = node.children
        return _render(options[(step - 1) % len(options)], step, switch_at)
    return "".join(_render(child, step, switch_at) for child in node.children)


def entry_at(ends: list[int], step: int) -> int:
    """Index of the schedule entry used at sampling step `step` (0-based, as web UI counts).

    web UI switches after the step *numbered* `when` has run: `[a:b:3]` uses `a` for steps 0-3.
    """
    for index, end in enumerate(ends):
        if step <= end:
            return index
    return len(ends) - 1


# ---- the whole prompt -----------------------------------------------------------------------------
_AND = re.compile(r"\bAND\b")
_PROMPT_WEIGHT = re.compile(r"^((?:\s|.)*?)(?:\s*:\s*([-+]?(?:\d+\.?|\d*\.\d+)))?\s*$")


def split_prompt_weight(prompt: str) -> tuple[str, float]:
    """A positive prompt and its composable-diffusion weight: 'a cat :1.2' -> ('a cat', 1.2).

    web UI multiplies the prompt's guidance by that weight; `AND` (several weighted prompts at once)
    needs one model call per sub-prompt, which diffusers' pipelines cannot do, so it is refused
    rather than read as a word.
    """
    if _AND.search(prompt):
        raise GenerationError(
            "the prompt uses AND, web UI's composable diffusion (several prompts blended at each "
            "step), which guard does not support; write 'and' in lower case to mean the word"
        )
    m = _PROMPT_WEIGHT.search(prompt)
    if m is None:
        return prompt, 1.0
    text, weight = m.groups()
    return text, float(weight) if weight is not None else 1.0
