"""`guard verify` on many files runs on the scan's worker pool (guard.verify_many): each file gets
the verdict `guard.verify` gives it alone, or its error, in the order given; the CLI's text, JSON
and exit codes are those of one-by-one verify."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import guard
from guard.cli import main
from guard.errors import GuardError
from guard.ledger import Ledger
from guard.scan.batch import verify_many
from guard.scan.forkserver import auto_workers
from tests.helpers import art, write


@pytest.fixture
def mixed(tmp_path: Path) -> list[Path]:
    """Signed (C2PA + mark + ledger record), marked only, unmarked, and a broken file, in an
    order that is not the folder's sorted one."""
    from guard.watermark import embed

    d = tmp_path / "mixed"
    d.mkdir()
    guard.sign(write(art(320, 320, seed=1), tmp_path / "src.png"), d / "b_signed.png")
    write(embed(art(320, 320, seed=2), bytes.fromhex("00112233445566ff")), d / "d_marked.png")
    write(art(320, 320, seed=3), d / "a_plain.jpg", quality=90)
    (d / "c_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not a picture" * 20)
    return [d / "d_marked.png", d / "c_broken.png", d / "b_signed.png", d / "a_plain.jpg"]


def _alone(path: Path, **options) -> dict | str:
    try:
        return guard.verify(path, **options).to_dict()
    except GuardError as exc:
        return f"{type(exc).__name__}: {exc}"


def _answers(results) -> list[tuple[str, dict | str]]:
    return [
        (str(p), f"{type(r).__name__}: {r}" if isinstance(r, Exception) else r.to_dict())
        for p, r in results
    ]


def test_the_pool_gives_each_file_its_own_verdict_in_input_order(mixed: list[Path]) -> None:
    alone = [(str(p), _alone(p)) for p in mixed]
    states = [
        a if isinstance(a, str) else (a["c2pa"]["state"], a["watermark"]["found"]) for _, a in alone
    ]
    assert states[0] == ("absent", True) and states[2] == ("trusted", True)
    assert states[3] == ("absent", False) and "not an image" in str(states[1])
    assert alone[2][1]["ledger"]["match"] is True  # the signed file's record, through its mark
    assert _answers(verify_many(mixed, workers=2)) == alone
    # without the watermark check too (the signed file's pixels are then never decoded)
    quick = [(str(p), _alone(p, watermark=False)) for p in mixed]
    assert _answers(verify_many(mixed, watermark=False, workers=2)) == quick


def test_a_ledger_that_cannot_be_opened_fails_before_any_file(mixed, tmp_path: Path) -> None:
    bad = tmp_path / "bad.sqlite3"
    bad.write_bytes(b"not a database" * 100)
    with pytest.raises(GuardError, match="not a usable guard ledger"):
        next(verify_many(mixed, ledger=bad, workers=2))
    with Ledger() as book:  # an open ledger is used as it is, in this process
        [(_, v)] = list(verify_many(mixed[2:3], ledger=book, workers=0))
        assert not isinstance(v, Exception) and v.ledger is not None and v.ledger.verified


def test_the_cli_prints_the_same_verdicts_in_order_with_its_exit_codes(mixed) -> None:
    runner = CliRunner()
    args = ["verify", *map(str, mixed), "--json", "--workers", "2"]
    result = runner.invoke(main, args)
    assert result.exit_code == 2  # the broken file
    out = json.loads(result.stdout)
    assert [e["file"] for e in out] == [str(p) for p in mixed]
    assert set(out[1]) == {"file", "error"} and "not an image" in out[1]["error"]
    expected = [json.loads(json.dumps(_alone(p), default=str)) for p in (mixed[0], *mixed[2:])]
    assert [out[0], *out[2:]] == expected
    assert "guard: error:" not in result.stderr  # with --json the error is its entry only
    # text: one report per file, in order; the error on stderr
    text = runner.invoke(main, ["verify", *map(str, mixed), "--workers", "2", "--no-watermark"])
    assert text.exit_code == 2
    heads = [line.split(":")[0] for line in text.stdout.splitlines() if not line.startswith(" ")]
    assert heads == [str(mixed[0]), str(mixed[2]), str(mixed[3])]
    assert text.stderr.count("guard: error:") == 1 and str(mixed[1]) in text.stderr
    # exit 0: every file trusted or valid; 1: some file without credentials
    quick = ["--no-watermark", "--workers", "2"]
    assert runner.invoke(main, ["verify", str(mixed[2]), str(mixed[2]), *quick]).exit_code == 0
    assert runner.invoke(main, ["verify", str(mixed[2]), str(mixed[3]), *quick]).exit_code == 1
    # a folder is walked in sorted order and verified the same way
    folder = runner.invoke(main, ["verify", str(mixed[0].parent), "--json", "--no-watermark"])
    assert [Path(e["file"]).name for e in json.loads(folder.stdout)] == sorted(
        p.name for p in mixed
    )


def test_small_batches_stay_in_this_process() -> None:
    assert auto_workers(1, True) == auto_workers(7, True) == auto_workers(399, False) == 0
    assert auto_workers(8, True) >= 1 and auto_workers(400, False) >= 1


@pytest.mark.parametrize("watermark", [True, False])
def test_the_forkserver_preload_leaves_a_worker_nothing_heavy_to_import(
    mixed: list[Path], watermark: bool
) -> None:
    """Workers are forked from a server that imported `forkserver.preload(...)`; a module a
    worker's first file still imports (the detector, OpenCV, exiv2, the C2PA SDK, the ledger)
    would be paid again by every worker before its first answer. Checked in a fresh interpreter:
    after the preload, verifying a signed, a marked and a plain file imports none of them."""
    import subprocess
    import sys

    files = [str(p) for p in mixed if "broken" not in p.name]
    script = (
        "import importlib, sys\n"
        "from guard.scan import forkserver\n"
        f"for m in forkserver.preload({watermark}): importlib.import_module(m)\n"
        "before = set(sys.modules)\n"
        "from guard.verdict import verify\n"
        f"for f in {files!r}: verify(f, watermark={watermark})\n"
        "print(' '.join(sorted(set(sys.modules) - before)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout.split()
    heavy = ("guard.watermark", "guard.ledger", "guard.verdict", "guard.provenance", "cv2")
    heavy += ("pywt", "pyexiv2", "c2pa", "sqlite3", "scipy", "skimage", "reedsolo")
    assert not [m for m in out if m.split(".")[0] in heavy or m.startswith(heavy)]
    assert any(m.startswith("PIL.") for m in out)  # the run did read the files (Pillow's plugins)
