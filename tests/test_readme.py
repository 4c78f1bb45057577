"""The README's command blocks work when pasted as they are into a fresh shell after set-up."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv"


def shell_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```sh\n(.*?)```", text, flags=re.S)


def test_readme_has_the_two_setup_commands() -> None:
    commands = [
        line.split("#")[0].strip() for block in shell_blocks() for line in block.splitlines()
    ]
    assert "make demo" in commands and "make test" in commands


@pytest.mark.slow
def test_command_blocks_run_in_a_fresh_shell(tmp_path: Path) -> None:
    """A fresh shell has no activated venv: the `guard` lines must still run (exit 0)."""
    if not (VENV / "bin" / "guard").exists():
        pytest.skip("needs the project's .venv (make setup)")
    (tmp_path / "samples").mkdir()
    shutil.copy(ROOT / "samples" / "artwork.png", tmp_path / "samples" / "artwork.png")
    (tmp_path / ".venv").symlink_to(VENV)
    (tmp_path / "out").mkdir()
    venv_bin = str(VENV / "bin")
    path = os.pathsep.join(
        p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != venv_bin
    )
    env = {**os.environ, "PATH": path, "GUARD_HOME": str(tmp_path / "home")}
    env.pop("VIRTUAL_ENV", None)
    ran = 0
    for block in shell_blocks():
        if block.lstrip().startswith("make"):
            continue  # the set-up commands themselves; CI runs `make test`
        result = subprocess.run(
            ["bash", "-e", "-c", block], cwd=tmp_path, env=env, capture_output=True, text=True
        )
        assert result.returncode == 0, (block, result.stderr[-2000:])
        ran += 1
    assert ran >= 1
    assert (tmp_path / "out" / "artwork.signed.png").exists()
