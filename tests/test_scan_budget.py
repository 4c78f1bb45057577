"""guard scan's time budget per file: an image whose check runs past it is `unverifiable`, its
worker process is killed and replaced, the other images in flight are retried, and the scan
goes on. Timing here is loose on purpose: a plain image takes a fraction of a second, the
budget is several, and an image that stalls never finishes at all."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

import guard
from guard.scan import local
from guard.scan.budget import DEFAULT_FILE_TIMEOUT
from guard.scan.policy import Found, Policy
from guard.scan.row import Decision
from tests.helpers import art, write

pytestmark = pytest.mark.slow  # each waits out a 5 s budget
BUDGET = 5.0

STALL = {"X-Robots-Tag": "noai"}  # signals robots_noai: the check never finishes
RETRIED = {"Content-Usage": "train-ai=n"}  # aipref_train_ai_n: its first attempt never finishes
CRASH = {"tdm-reservation": "1"}  # tdm_reserved: kills its worker


@dataclass(frozen=True)
class Stalling(Policy):
    """The strict policy, except in how long deciding takes. The policy travels to every worker
    process inside the scan's settings, so this is how a test reaches the per-image check there:
    an image with the STALL signal never finishes; one with RETRIED never finishes its first
    attempt (so it can only be answered if it is run again); one with CRASH kills its worker.
    Each attempt is written to `log` as "what pid"."""

    log: str = ""

    def decide(self, found: Iterable[Found]) -> tuple[Decision, list[str], list[str]]:
        found = list(found)
        codes = {f.code for f in found}
        if "robots_noai" in codes:
            self._note("stall")
            time.sleep(600)
        if "aipref_train_ai_n" in codes:
            if "retried" in self._attempts():
                self._note("retried")
            else:
                self._note("retried")
                time.sleep(600)
        if "tdm_reserved" in codes:
            self._note("crash")
            os._exit(1)
        return super().decide(found)

    def _note(self, what: str) -> None:
        with open(self.log, "a") as f:
            f.write(f"{what} {os.getpid()}\n")

    def _attempts(self) -> list[str]:
        try:
            return [line.split()[0] for line in Path(self.log).read_text().splitlines()]
        except FileNotFoundError:
            return []


def _pids(log: Path, what: str) -> list[int]:
    return [
        int(pid) for w, pid in (line.split() for line in log.read_text().splitlines()) if w == what
    ]


def _gone(pid: int) -> bool:
    """The process has exited (a zombie not yet reaped by its parent counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def _data(folder: Path, metas: list[dict[str, str] | None]) -> list[Path]:
    folder.mkdir()
    paths = []
    for i, meta in enumerate(metas):
        path = write(art(96, 64, seed=i), folder / f"{i}.png")
        if meta is not None:
            (folder / f"{i}.json").write_text(json.dumps(meta))
        paths.append(path)
    return paths


needs_proc = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")


@needs_proc
def test_an_image_past_the_budget_is_unverifiable_and_the_scan_goes_on(tmp_path: Path) -> None:
    paths = _data(tmp_path / "data", [STALL, RETRIED, None, None])
    log = tmp_path / "attempts.log"
    policy = Stalling("strict", log=str(log))
    rows = list(
        guard.scan(
            [tmp_path / "data"], workers=2, watermark=False, policy=policy, file_timeout=BUDGET
        )
    )
    assert [r.path for r in rows] == [str(p) for p in paths]  # every image, in input order

    stalled, retried, *plain = rows
    assert stalled.decision == "unverifiable" and stalled.signals == ["scan_error"]
    assert "ran out of time" in stalled.reasons[0] and f"{BUDGET:g} s" in stalled.reasons[0]
    assert stalled.error == stalled.reasons[0]
    [stalled_pid] = _pids(log, "stall")  # not tried again: it is the one that ran out of time
    for _ in range(100):  # its worker was killed (loose: the parent reaps it when it gets to it)
        if _gone(stalled_pid):
            break
        time.sleep(0.1)
    assert _gone(stalled_pid)

    # in flight in another worker when the pool went down: run again, and answered for real
    assert retried.decision == "opted_out" and retried.signals == ["aipref_train_ai_n"]
    first, second = _pids(log, "retried")
    assert first != second
    assert [r.decision for r in plain] == ["allowed", "allowed"]


def test_the_budget_holds_for_images_retried_alone_after_a_crash(tmp_path: Path) -> None:
    """A worker died: the images in flight are retried one at a time. One of them that stalls
    must run out of time there too, not hold the queue forever."""
    _data(tmp_path / "data", [None, CRASH, STALL, None])
    log = tmp_path / "attempts.log"
    policy = Stalling("strict", log=str(log))
    rows = list(
        guard.scan(
            [tmp_path / "data"], workers=1, watermark=False, policy=policy, file_timeout=BUDGET
        )
    )
    assert [Path(r.path).name for r in rows] == ["0.png", "1.png", "2.png", "3.png"]
    first, crashed, stalled, last = rows
    assert first.decision == last.decision == "allowed"
    assert crashed.decision == "unverifiable" and "worker process died" in crashed.reasons[0]
    assert len(_pids(log, "crash")) == 2  # it killed its worker, then again when run alone
    assert stalled.decision == "unverifiable" and "ran out of time" in stalled.reasons[0]


def test_file_timeout_is_one_setting_from_the_cli_to_the_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from guard.cli import main
    from guard.scan.api import settings_for

    _data(tmp_path / "data", [None])
    seen: list[float | None] = []
    real = local.scan_units

    def spy(units, settings, **kw):
        seen.append(settings.file_timeout)
        return real(units, settings, **kw)

    monkeypatch.setattr(local, "scan_units", spy)
    base = ["scan", str(tmp_path / "data"), "--workers", "0", "--no-watermark", "--fresh"]
    base += ["--report", str(tmp_path / "r.parquet")]
    runner = CliRunner()
    for extra in ([], ["--file-timeout", "7.5"], ["--file-timeout", "0"]):
        result = runner.invoke(main, base + extra)
        assert result.exit_code == 0, result.output
    assert seen == [DEFAULT_FILE_TIMEOUT, 7.5, None]  # 0: no limit
    bad = runner.invoke(main, [*base, "--file-timeout", "-1"])
    assert bad.exit_code == 2 and "--file-timeout" in bad.output
    assert "--file-timeout" in runner.invoke(main, ["scan", "--help"]).output

    assert settings_for().file_timeout == DEFAULT_FILE_TIMEOUT == 60
    assert settings_for(file_timeout=None).file_timeout is None
    with pytest.raises(ValueError, match="file_timeout"):
        settings_for(file_timeout=0)


@needs_proc
def test_a_scan_stopped_early_does_not_wait_for_an_image_that_never_ends(tmp_path: Path) -> None:
    _data(tmp_path / "data", [None, STALL, None])
    log = tmp_path / "attempts.log"
    policy = Stalling("strict", log=str(log))
    scan = guard.scan([tmp_path / "data"], workers=2, watermark=False, policy=policy)
    assert Path(next(scan).path).name == "0.png"
    for _ in range(300):  # loose: until the stalling image has begun in its worker
        if log.exists() and _pids(log, "stall"):
            break
        time.sleep(0.1)
    [stalled_pid] = _pids(log, "stall")
    scan.close()  # the default budget (60 s) is far off: only stopping the workers ends it
    for _ in range(100):
        if _gone(stalled_pid):
            break
        time.sleep(0.1)
    assert _gone(stalled_pid)
