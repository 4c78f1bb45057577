"""The environment is declared and locked: every third-party module guard imports comes from a
package pyproject.toml names (scipy once arrived only through torchsde), and requirements.lock
pins every declared package, with hashes, to a version inside its range."""

from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
# imported only where a user has installed them, behind a clear message (ControlNet preprocessors)
OPTIONAL_AT_RUN_TIME = {"controlnet_aux"}
# what a benchmark takes from a host's own environment, never from guard's lock: gradio is web
# UI's (benchmarks/webui_tab.py runs in a side venv with web UI's pins, as its docstring says)
TEST_OPTIONAL: set[str] = {"gradio"}


def _requirements(extras: bool) -> list[Requirement]:
    out = [Requirement(r) for r in PROJECT["dependencies"]]
    if extras:
        for group in PROJECT["optional-dependencies"].values():
            out += [Requirement(r) for r in group]
    return [r for r in out if canonicalize_name(r.name) != "guard"]


def _imported_top_level_modules(folders: tuple[str, ...] = ("guard", "generator")) -> set[str]:
    found: set[str] = set()
    for folder in folders:
        for path in (ROOT / folder).rglob("*.py"):
            parts = path.relative_to(ROOT).parts  # guard/integrations/HOST/extension/**
            if parts[:2] == ("guard", "integrations") and parts[3:4] in (
                ("extension",),
                ("nodes",),
            ):
                continue  # plug-ins run inside web UI / ComfyUI and import the host's modules
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    found.update(a.name.split(".")[0] for a in node.names)
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    found.add(node.module.split(".")[0])
    local = {"guard", "generator", "__future__", "tests", "tiny_models", "helpers", "conftest"}
    local |= {p.stem for p in (ROOT / "benchmarks").glob("*.py")}
    local |= {p.stem for p in (ROOT / "tests").glob("*.py")}
    return found - set(sys.stdlib_module_names) - local


def test_every_imported_package_is_declared():
    declared = {canonicalize_name(r.name) for r in _requirements(extras=True)}
    providers = packages_distributions()
    undeclared = {}
    for module in sorted(_imported_top_level_modules() - OPTIONAL_AT_RUN_TIME):
        dists = {canonicalize_name(d) for d in providers.get(module, [module])}
        if not dists & declared:
            undeclared[module] = sorted(dists)
    assert undeclared == {}


def test_every_package_the_tests_and_benchmarks_import_is_a_dev_dependency():
    """A test-only import (scikit-image) once fell out of the dev extras: every machine that
    had it from before stayed green, and a fresh clone failed at collection."""
    declared = {canonicalize_name(r.name) for r in _requirements(extras=True)}
    providers = packages_distributions()
    undeclared = {}
    imported = _imported_top_level_modules(("tests", "benchmarks"))
    for module in sorted(imported - OPTIONAL_AT_RUN_TIME - TEST_OPTIONAL):
        dists = {canonicalize_name(d) for d in providers.get(module, [module])}
        if not dists & declared:
            undeclared[module] = sorted(dists)
    assert undeclared == {}


def _lock() -> dict[str, tuple[str, int]]:
    """name -> (version, number of hashes), from requirements.lock."""
    text = (ROOT / "requirements.lock").read_text(encoding="utf-8")
    out = {}
    for entry in re.split(r"\n(?=[a-z0-9])", text):
        m = re.match(r"([A-Za-z0-9._-]+)==([^\s;\\]+)", entry)
        if m:
            out[canonicalize_name(m[1])] = (m[2], entry.count("--hash=sha256:"))
    return out


def test_the_lock_pins_every_declared_package_inside_its_range_with_hashes():
    lock = _lock()
    assert len(lock) > 50
    assert all(hashes for _, hashes in lock.values())
    for req in _requirements(extras=True):
        if req.marker is not None and not req.marker.evaluate():
            continue
        name = canonicalize_name(req.name)
        assert name in lock, f"{req.name} is declared but not in requirements.lock (make lock)"
        assert req.specifier.contains(lock[name][0], prereleases=True), (str(req), lock[name])


def test_the_set_up_installs_the_lock_with_hashes_and_nothing_else():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "--require-hashes --no-deps -r $(LOCK)" in makefile
    assert "--no-deps --no-build-isolation -e ." in makefile
