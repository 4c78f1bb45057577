"""Property: verify never crashes. Every mutated signed file gives a Verdict or a GuardError.

Mutations of signed PNG, JPEG and WebP files and of a `.c2pa` sidecar: bit flips, overwritten
runs, deletions, insertions, truncation, duplicated slices, half of them aimed at the manifest
store (where a parser has the most structure to get wrong). GUARD_FUZZ_EXAMPLES sets the number
of cases (default 120, which runs in the suite in well under a minute); docs/benchmarks.md has
a longer run:

    GUARD_FUZZ_EXAMPLES=3000 .venv/bin/python -m pytest -q tests/test_verify_fuzz.py \
        --hypothesis-show-statistics
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import guard
from guard.errors import GuardError
from guard.provenance.c2pa_io import STORE_UUID
from guard.verdict import Verdict, verify_bytes
from tests.helpers import art, write

EXAMPLES = int(os.environ.get("GUARD_FUZZ_EXAMPLES", "120"))


@dataclass(frozen=True)
class Sample:
    name: str
    data: bytes = field(repr=False)
    sidecar: bytes | None = field(default=None, repr=False)


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> list[Sample]:
    """Signed (and watermarked) files, made once under their own GUARD_HOME."""
    folder = tmp_path_factory.mktemp("fuzz")
    out = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GUARD_HOME", str(folder / "home"))
        for fmt, ext in (("PNG", ".png"), ("JPEG", ".jpg"), ("WEBP", ".webp")):
            p = guard.sign(write(art(), folder / f"a{ext}", fmt), author="Ada").path
            out.append(Sample(p.name, p.read_bytes()))
        p = guard.sign(write(art(seed=1), folder / "s.png"), sidecar=True, watermark=False)
        assert p.sidecar_path is not None
        out.append(Sample(p.path.name, p.path.read_bytes(), p.sidecar_path.read_bytes()))
    return out


MUTATIONS = ("flip", "overwrite", "delete", "insert", "truncate", "duplicate")


@st.composite
def mutation(draw: st.DrawFn) -> tuple[str, float, bool, int, bytes]:
    kind = draw(st.sampled_from(MUTATIONS))
    at = draw(st.floats(0, 1, exclude_max=True))
    near_store = draw(st.booleans())
    size = draw(st.integers(1, 64))
    payload = draw(st.binary(min_size=1, max_size=16))
    return kind, at, near_store, size, payload


def mutate(data: bytes, m: tuple[str, float, bool, int, bytes]) -> bytes:
    kind, at, near_store, size, payload = m
    if not data:
        return data
    start = data.find(STORE_UUID)
    if near_store and start >= 0:  # within 4 KB of the store's description box
        lo, hi = max(0, start - 64), min(len(data), start + 4096)
        pos = lo + int(at * (hi - lo))
    else:
        pos = int(at * len(data))
    out = bytearray(data)
    if kind == "flip":
        out[pos] ^= 1 << (size % 8)
    elif kind == "overwrite":
        out[pos : pos + len(payload)] = payload
    elif kind == "delete":
        del out[pos : pos + size]
    elif kind == "insert":
        out[pos:pos] = payload
    elif kind == "truncate":
        del out[pos:]
    else:
        out[pos:pos] = out[max(0, pos - size) : pos]
    return bytes(out)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    which=st.integers(0, 3),
    mutations=st.lists(mutation(), min_size=1, max_size=3),
    in_sidecar=st.booleans(),
    watermark=st.booleans(),
)
def test_verify_gives_a_verdict_or_a_guard_error_for_any_mutation(
    samples: list[Sample], which: int, mutations: list, in_sidecar: bool, watermark: bool
) -> None:
    sample = samples[which]
    data, sidecar = sample.data, sample.sidecar
    for m in mutations:
        if sidecar is not None and in_sidecar:
            sidecar = mutate(sidecar, m)
        else:
            data = mutate(data, m)
    try:
        v = verify_bytes(data, name=sample.name, sidecar=sidecar, watermark=watermark)
    except GuardError as exc:
        event("input error")
        assert str(exc).startswith(sample.name)  # a one-line message naming the file
        return
    event(f"verdict: {v.state}")
    assert isinstance(v, Verdict)
    assert v.state in ("trusted", "valid", "invalid", "absent")
    json.dumps(v.to_dict())  # the --json output is always serialisable
    assert v.summary()[0].startswith(sample.name)
    if data != sample.data and v.state in ("trusted", "valid"):
        # a changed byte may only pass where the manifest does not cover it (its own padding)
        assert data.find(STORE_UUID) >= 0 or sidecar is not None


def test_the_unmutated_samples_verify(samples: list[Sample]) -> None:
    """The property above is only meaningful if the starting points are good files."""
    for s in samples:
        v = verify_bytes(s.data, name=s.name, sidecar=s.sidecar, watermark=False)
        assert v.state in ("trusted", "valid"), (s.name, v.c2pa.failures)
