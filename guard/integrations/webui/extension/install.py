"""Install guard into web UI's own Python environment.

web UI (and Forge) run each extension's install.py at start, before loading extensions, as
`python install.py` with PYTHONPATH set to web UI's folder (modules/launch_utils.py,
run_extension_installer), so web UI's `launch` module is importable here; extensions install
what they need with `launch.is_installed` and `launch.run_pip`, as this one does.

What is installed: $GUARD_PIP_REQUIREMENT when set (a wheel, a checkout, a URL: anything `pip
install` takes); for an extension linked with `guard integrations install webui PATH --link`
from a guard checkout, that checkout (editable). Nothing is taken from the package index by
name: the project called `guard` there is another one.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import launch  # web UI's launch.py

MIN_PYTHON = (3, 10)  # guard's requires-python: web UI runs 3.10.6
HERE = Path(__file__).resolve().parent  # through the link, for a --link install


def guard_is_installed() -> bool:
    """guard, this one: a package named guard that has guard/integrations/webui."""
    if not launch.is_installed("guard"):
        return False
    spec = importlib.util.find_spec("guard")  # finds the package without importing it
    folders = spec.submodule_search_locations if spec is not None else None
    return any((Path(f) / "integrations" / "webui").is_dir() for f in folders or [])


def requirement() -> str | None:
    given = os.environ.get("GUARD_PIP_REQUIREMENT", "").strip()
    if given:
        return f'"{given}"'
    for parent in HERE.parents:
        if (parent / "pyproject.toml").is_file() and (parent / "guard" / "integrations").is_dir():
            return f'-e "{parent}"'
    return None


def main() -> None:
    if sys.version_info < MIN_PYTHON:
        print(
            "guard: not installed: guard needs Python "
            f"{'.'.join(map(str, MIN_PYTHON))} or newer, and this web UI runs Python "
            f"{'.'.join(map(str, sys.version_info[:3]))}; the guard extension stays inactive "
            "(web UI itself is unaffected). Run web UI with Python 3.10.6, as it recommends.",
            file=sys.stderr,
        )
        return
    if guard_is_installed() and not os.environ.get("GUARD_PIP_REQUIREMENT"):
        return
    wanted = requirement()
    if wanted is None:
        print(
            "guard: not installed in web UI's Python: set GUARD_PIP_REQUIREMENT to guard's "
            "source (a checkout folder or a wheel) and restart web UI, or run "
            f'"{sys.executable}" -m pip install /path/to/guard; the guard extension stays '
            "inactive until then (the package named guard on PyPI is another project)",
            file=sys.stderr,
        )
        return
    launch.run_pip(f"install {wanted}", "guard (watermark and C2PA signing)")


main()
