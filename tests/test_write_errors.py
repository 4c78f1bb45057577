"""Write errors are errors: a full disk or a folder guard may not write gives exit 2 and one line
naming the path, and a process killed while saving leaves neither a ledger record for a file that
was never written nor a temp file that stays."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from guard.cli import main
from guard.errors import GuardError
from guard.ledger import Ledger
from guard.media.atomic_write import save_atomic
from tests.helpers import art, write

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str | Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def _read_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a read-only folder does to guard (tests run as root here, where chmod stops nothing)."""

    def refuse(*args, dir=None, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(dir))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)


def _disk_full(monkeypatch: pytest.MonkeyPatch) -> None:
    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)


FAILURES = {"read-only": _read_only, "disk full": _disk_full}


@pytest.mark.parametrize("failure", FAILURES)
def test_save_atomic_turns_write_failures_into_guard_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    FAILURES[failure](monkeypatch)
    target = tmp_path / "out.png"
    with pytest.raises(GuardError) as err:
        save_atomic(target, b"data")
    assert str(target) in str(err.value)
    assert list(tmp_path.iterdir()) == []


def _commands(tmp_path: Path) -> dict[str, tuple[list[str | Path], Path]]:
    (tmp_path / "in").mkdir()
    pic = write(art(), tmp_path / "in" / "pic.png")
    out = tmp_path / "out"
    out.mkdir()
    return {
        "sign": (["sign", pic, "--out-dir", out], out / "pic.signed.png"),
        "sign-no-watermark": (
            ["sign", pic, "-o", out / "x.png", "--no-watermark"],
            out / "x.png",
        ),
        "keys export-ca": (["keys", "export-ca", "-o", out / "ca.pem"], out / "ca.pem"),
        "ledger export": (["ledger", "export", out / "l.jsonl"], out / "l.jsonl"),
        "watermark embed": (["watermark", "embed", pic, "-o", out / "wm.png"], out / "wm.png"),
    }


@pytest.mark.parametrize("failure", FAILURES)
@pytest.mark.parametrize(
    "name", ["sign", "sign-no-watermark", "keys export-ca", "ledger export", "watermark embed"]
)
def test_commands_report_write_failures_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: str, name: str
) -> None:
    run("keys", "init")  # the identity exists before the disk goes bad
    args, target = _commands(tmp_path)[name]
    with monkeypatch.context() as failing:  # undone alone: the test's own GUARD_HOME stays
        FAILURES[failure](failing)
        code, _, err = run(*args)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("guard: error:"), err
    assert str(target) in lines[0]
    assert not target.exists()
    with Ledger() as ledger:
        assert len(ledger) == 0  # no record for a file that was never written
    assert list((tmp_path / "out").iterdir()) == []  # and no temp file


@pytest.mark.parametrize("failure", FAILURES)
def test_keys_trust_reports_write_failures_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    from guard import config
    from tests.helpers import make_chain

    _, _, ca = make_chain(tmp_path)
    config.trust_dir().mkdir(parents=True)
    FAILURES[failure](monkeypatch)
    code, _, err = run("keys", "trust", ca)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert str(config.trust_dir()) in err
    assert list(config.trust_dir().iterdir()) == []  # no half-written CA file


def test_an_unwritable_guard_home_is_one_line(tmp_path: Path, monkeypatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    monkeypatch.setenv("GUARD_HOME", str(blocker / "home"))
    pic = write(art(), tmp_path / "pic.png")
    for args in (["keys", "init"], ["sign", pic], ["ledger", "export", tmp_path / "x.jsonl"]):
        code, _, err = run(*args)
        assert code == 2, (args, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("guard: error:"), (args, err)
        assert str(blocker) in lines[0], (args, err)


def test_an_unusable_out_dir_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    pic = write(art(), tmp_path / "pic.png")
    code, _, err = run("sign", pic, "--out-dir", blocker / "sub")
    assert code == 2 and len(err.strip().splitlines()) == 1 and str(blocker) in err


_KILLED_SIGN = """
import importlib, os, signal, sys
atomic_write = importlib.import_module("guard.media.atomic_write")
ledger = importlib.import_module("guard.ledger.store")
from guard.publishing import sign
point = sys.argv[1]
if point == "during-save":
    def die(src, dst):  # the temp file is complete, the final name not yet there
        os.kill(os.getpid(), signal.SIGKILL)
    atomic_write.os.link = die
else:
    def die(self, *a, **k):  # the file is in place, the ledger not yet told
        os.kill(os.getpid(), signal.SIGKILL)
    ledger.Ledger.commit = die
sign(sys.argv[2], sys.argv[3])
"""


@pytest.mark.parametrize("point", ["during-save", "after-save"])
def test_a_process_killed_while_saving_leaves_a_consistent_ledger(
    tmp_path: Path, point: str
) -> None:
    pic = write(art(), tmp_path / "pic.png")
    out = tmp_path / "out" / "pic.signed.png"
    out.parent.mkdir()
    run("keys", "init")
    proc = subprocess.run(
        [sys.executable, "-c", _KILLED_SIGN, point, str(pic), str(out)],
        cwd=ROOT,
        env=os.environ.copy(),
        capture_output=True,
        text=True,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    with Ledger() as ledger:
        records = list(ledger)
        if point == "during-save":
            assert not out.exists()
            assert records == []  # no record for a file that was never written
        else:
            assert out.exists()
            [record] = records  # the file is there: its record is committed on the next open
            assert record.file_name == out.name
    if point == "during-save":
        leftovers = list(out.parent.iterdir())
        assert leftovers and all(p.name.endswith(".tmp") for p in leftovers)
        save_atomic(out.parent / "next.png", b"x")  # the next run cleans up
        assert [p.name for p in out.parent.iterdir()] == ["next.png"]


def test_stale_temp_files_are_looked_for_once_per_folder(tmp_path: Path, monkeypatch) -> None:
    """Saving many files into one folder (scan --copy-clean, a big sign batch) must not list the
    folder again for every file: that is quadratic in the folder's size."""
    import pathlib

    listed: list[Path] = []
    real = pathlib.Path.iterdir

    def counting(self):
        listed.append(self)
        return real(self)

    monkeypatch.setattr(pathlib.Path, "iterdir", counting)
    for i in range(20):
        save_atomic(tmp_path / f"{i}.bin", b"x")
    assert listed.count(tmp_path) == 1


@pytest.mark.parametrize("failure", FAILURES)
def test_a_scan_report_that_cannot_be_written_is_one_line_and_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    """The report's parts and its merge go through the one atomic writer: a full disk is a
    GuardError naming the report (exit 2 in the CLI, not a traceback), and no torn file."""
    import guard

    data = tmp_path / "data"
    data.mkdir()
    for i in range(2):
        art(64, 64, seed=i).save(data / f"{i}.png")
    report = tmp_path / "report.parquet"
    with monkeypatch.context() as patch:
        FAILURES[failure](patch)
        with pytest.raises(GuardError) as err:
            list(guard.scan([data], report=report, workers=0, watermark=False))
    assert "report.parquet" in str(err.value)
    assert not report.exists()
    assert not [p for p in tmp_path.rglob("*.tmp")]  # no temp file left behind
    rows = list(guard.scan([data], report=report, workers=0, watermark=False))
    assert len(rows) == 2 and report.exists()  # the disk has room again: the scan completes
