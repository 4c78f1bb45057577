"""Whether web UI's Python environment holds what guard needs.

web UI pins its own packages (requirements_versions.txt: Pillow 9.5.0, diffusers, kornia...)
and reinstalls those pins at every start when they do not match (modules/launch_utils.py
`requirements_met`), so guard's own requirements can end up unmet after guard was installed.
The extension prints these problems on the console at start and shows them in its tab.
"""

from __future__ import annotations

import importlib.metadata


def problems(distribution: str = "guard") -> list[str]:
    """One line per requirement of guard's that the running environment does not meet."""
    try:
        requires = importlib.metadata.requires(distribution) or []
    except importlib.metadata.PackageNotFoundError:
        return [f"{distribution} is importable but not installed as a package; cannot check"]
    try:
        from packaging.requirements import InvalidRequirement, Requirement
    except ImportError:  # web UI's launcher imports packaging; a bare env may lack it
        return []
    out = []
    for line in requires:
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue  # an extra's requirement (serve, scale, dev), or not for this platform
        try:
            have = importlib.metadata.version(req.name)
        except importlib.metadata.PackageNotFoundError:
            out.append(f"{req.name} is not installed (guard needs {req})")
            continue
        if req.specifier and not req.specifier.contains(have, prereleases=True):
            out.append(f"{req.name} {have} is installed, guard needs {req}")
    return out
