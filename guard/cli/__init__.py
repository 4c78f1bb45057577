"""The `guard` command: a thin click layer over the library API.

Subcommands live one per module and are imported only when invoked, so `guard verify --help`
never pays for torch or diffusers.
"""

from __future__ import annotations

import importlib

import click

# command name -> module under guard.cli that defines `command`
COMMANDS: dict[str, str] = {
    "sign": "sign",
    "verify": "verify",
    "keys": "keys",
    "watermark": "watermark",
    "ledger": "ledger",
    "generate": "generate",
    "info": "info",
    "protect": "protect",
    "scan": "scan",
    "serve": "serve",
    "integrations": "integrations",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name in COMMANDS if self._module(name) is not None]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        module = self._module(name)
        return getattr(module, "command", None) if module else None

    @staticmethod
    def _module(name: str):
        if name not in COMMANDS:
            return None
        try:
            return importlib.import_module(f"guard.cli.{COMMANDS[name]}")
        except ModuleNotFoundError as exc:
            if exc.name == f"guard.cli.{COMMANDS[name]}":
                return None  # command not built yet
            raise


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="guard", prog_name="guard")
def main() -> None:
    """Sign, watermark, verify and protect images; generate signed images with diffusers."""
