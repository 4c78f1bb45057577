"""Tests never reach the network: the hub libraries see offline mode from their first import."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OFFLINE = (
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "HF_DATASETS_OFFLINE",
    "DIFFUSERS_OFFLINE",
)


def test_huggingface_hub_in_this_run_is_offline() -> None:
    import huggingface_hub.constants

    assert huggingface_hub.constants.HF_HUB_OFFLINE is True
    for name in OFFLINE:
        assert os.environ[name] == "1", name


def test_conftest_sets_offline_before_the_hub_is_imported() -> None:
    """Importing conftest first (as pytest does) must be enough, even in a clean environment."""
    env = {k: v for k, v in os.environ.items() if k not in OFFLINE}
    code = "import tests.conftest\nimport huggingface_hub.constants as c\nprint(c.HF_HUB_OFFLINE)\n"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "True"
