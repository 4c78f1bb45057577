"""`guard scan`: the training-data gatekeeper (see docs/scan.md).

    sources   folders, path lists, WebDataset shards -> units (resume grain) -> items
    image     the per-image function: bytes in, ScanRow out (signals from guard's readers)
    policy    signals -> decision (strict, permissive, a TOML/YAML file)
    local     process pool engine;  ray_engine  Ray Data engine (optional extra)
    report    Parquet report, resume, summary;  chart  the summary as a PNG
    api       guard.scan(), guard.scan_dataset()

`guard.scan` is both this package and the library function: importing a submodule makes
Python bind the package to the name `guard.scan`, so the package itself is callable and calls
`guard.scan.api.scan`. Nothing heavy is imported here (pyarrow and Ray load on use).
"""

from __future__ import annotations

import sys
import types
from typing import Any


class _CallablePackage(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from guard.scan.api import scan

        return scan(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
