"""Every test runs with its own GUARD_HOME, so no test ever reads or writes a real user's keys or ledger."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# one PostgreSQL server per session, shared by every test file that asks for one, and the
# resolver tests' signer world and loopback rule (plugins, not imports: `import tests.conftest`
# outside pytest, as test_offline does, has no tests/ on the path)
pytest_plugins = ["pg_support", "resolver_support"]

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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """AVIF's tests need an AVIF encoder: Pillow 11.2 or later (the lock's), or web UI's
    pillow-avif-plugin. On web UI's own Pillow 9.5 without the plugin they are skipped, and say
    so, rather than failing (guard itself then refuses AVIF in words: tests/test_imageio.py)."""
    from PIL import Image

    Image.init()
    if "AVIF" in Image.SAVE:
        return
    skip = pytest.mark.skip(reason=f"this Pillow ({Image.__version__}) cannot write AVIF")
    for item in items:
        if "avif" in item.nodeid.lower():
            item.add_marker(skip)
