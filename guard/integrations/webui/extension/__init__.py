"""guard's web UI / Forge extension (package data). web UI never imports this file: it loads
scripts/guard.py itself and runs install.py. It is here so that importlib.resources gives the
folder's real path to `guard integrations install`, as a regular package."""
