"""guard installs into web UI's and Forge's Python (3.10.6): nothing in its code may need a newer
Python than pyproject's requires-python says. No 3.10 interpreter is available here, so this is
a static check (vermin reads the language features and standard-library names each module uses);
the suite itself runs on the locked 3.11."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]


def _oldest() -> str:
    spec = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert spec.startswith(">="), spec
    return spec[2:]


def _vermin(*paths: Path | str) -> subprocess.CompletedProcess[str]:
    args = ["-t=" + _oldest() + "-", "--violations", "--no-tips", "--eval-annotations"]
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, vermin; sys.exit(vermin.main())",
            *args,
            *map(str, paths),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )


def test_requires_python_lets_guard_into_web_uis_python():
    assert tuple(int(p) for p in _oldest().split(".")) <= (3, 10)


def test_no_module_needs_a_newer_python_than_requires_python():
    run = _vermin("guard", "generator")
    assert run.returncode == 0, run.stdout + run.stderr


def test_the_check_sees_a_newer_name(tmp_path):
    module = tmp_path / "new.py"
    module.write_text("import datetime as dt\nnow = dt.datetime.now(dt.UTC)\n")
    run = _vermin(module)
    assert run.returncode != 0 and "datetime.UTC" in run.stdout
