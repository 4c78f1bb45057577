"""Put a host's plug-in in place, and take it out again.

Each plug-in ships as package data inside guard. Installing copies it into the host's folder for
plug-ins (or, with `link`, points a symlink at the installed package's copy, for development), as
a folder named `FOLDER`; uninstalling removes exactly that folder or link, and refuses anything
guard did not put there (a folder without guard's marker file).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from guard.errors import GuardError

MARKER = ".guard-integration"  # written into every installed copy: what uninstall may remove


@dataclass(frozen=True)
class Target:
    name: str  # "webui", "comfyui"
    package: str  # the package holding the plug-in's files (package data)
    plugins: str  # the host's folder for plug-ins, relative to the host's root
    folder: str  # the plug-in's folder name inside it
    host_files: tuple[str, ...]  # files that show PATH is that host's root


TARGETS: dict[str, Target] = {}


def register(target: Target) -> None:
    TARGETS[target.name] = target


class IntegrationError(GuardError):
    """The host folder is not what it should be, or the plug-in is not guard's."""


def _target(name: str) -> Target:
    _load_targets()
    if name not in TARGETS:
        raise IntegrationError(f"unknown host {name!r}; use one of {', '.join(sorted(TARGETS))}")
    return TARGETS[name]


def _load_targets() -> None:
    """Each host's module registers its target when imported."""
    import importlib

    for host in ("webui", "comfyui"):
        try:
            importlib.import_module(f"guard.integrations.{host}")
        except ModuleNotFoundError as exc:
            if exc.name != f"guard.integrations.{host}":
                raise


def source(name: str) -> Path:
    """Where the plug-in's files are inside the installed guard package (its folder, whether
    or not it holds an `__init__.py`: `resources.files` of a namespace package is no path)."""
    import importlib

    module = importlib.import_module(_target(name).package)
    return Path(next(iter(module.__path__)))


def _destination(target: Target, host: Path) -> Path:
    host = Path(host).expanduser()
    if not host.is_dir():
        raise IntegrationError(f"{host}: no such folder")
    if not any((host / f).exists() for f in target.host_files):
        raise IntegrationError(
            f"{host}: does not look like {target.name}'s folder "
            f"(none of {', '.join(target.host_files)} is there)"
        )
    return host / target.plugins / target.folder


def install(name: str, host: str | os.PathLike[str], *, link: bool = False) -> Path:
    """Copy (or link) the plug-in into the host; returns where it now is. An earlier guard
    install is replaced; anything else in its place is refused."""
    target = _target(name)
    dest = _destination(target, Path(host))
    src = source(name)
    if dest.is_symlink() or dest.exists():
        _remove(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if link:
        dest.symlink_to(src, target_is_directory=True)
        return dest
    tmp = dest.with_name(f".{dest.name}.installing")
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(src, tmp, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (tmp / MARKER).write_text("installed by guard integrations install\n", encoding="utf-8")
    os.replace(tmp, dest)
    return dest


def uninstall(name: str, host: str | os.PathLike[str]) -> Path:
    target = _target(name)
    dest = _destination(target, Path(host))
    if not (dest.is_symlink() or dest.exists()):
        raise IntegrationError(f"{dest}: guard's {name} plug-in is not installed there")
    _remove(dest)
    return dest


def _remove(dest: Path) -> None:
    if dest.is_symlink():
        dest.unlink()
        return
    if not (dest / MARKER).exists():
        raise IntegrationError(
            f"{dest}: exists but was not installed by guard (no {MARKER} in it); remove it yourself"
        )
    shutil.rmtree(dest)
