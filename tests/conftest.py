"""Every test runs with its own GUARD_HOME, so no test ever reads or writes a real user's keys or ledger."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# one PostgreSQL server per session, shared by every test file that asks for one (a plugin, not
# an import: `import tests.conftest` outside pytest, as test_offline does, has no tests/ on the path)
pytest_plugins = ["pg_support"]

# Before anything imports huggingface_hub, transformers or diffusers: they read these once, at
# import, so setting them later (per test) leaves the first importer online with retries.
OFFLINE = (
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "HF_DATASETS_OFFLINE",
    "DIFFUSERS_OFFLINE",
    "HF_HUB_DISABLE_TELEMETRY",
)
for _name in OFFLINE:
    os.environ[_name] = "1"

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(autouse=True)
def guard_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path_factory.mktemp("guard_home")
    monkeypatch.setenv("GUARD_HOME", str(home))
    monkeypatch.delenv("GUARD_LEDGER", raising=False)
    return home


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip("../shared is not present")
    return SHARED
