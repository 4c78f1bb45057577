"""`guard integrations install|uninstall HOST PATH`: guard inside web UI, Forge and ComfyUI."""

from __future__ import annotations

from pathlib import Path

import click

from guard.cli._common import handle_errors

_HOSTS = click.Choice(["webui", "comfyui"])


@click.group("integrations")
def command() -> None:
    """Install guard's plug-ins into the tools you generate with.

    webui: the Stable Diffusion web UI / Forge extension (PATH: the web UI folder, which holds
    webui.py). comfyui: the ComfyUI custom nodes (PATH: the ComfyUI folder, which holds
    folder_paths.py and nodes.py).
    """


@command.command("install")
@click.argument("host", type=_HOSTS)
@click.argument("path", type=click.Path(file_okay=False, path_type=Path))
@click.option("--link", is_flag=True, help="Link instead of copying (for development).")
@handle_errors
def install_command(host: str, path: Path, link: bool) -> None:
    """Copy guard's plug-in for HOST into the host at PATH."""
    from guard.integrations.install import install

    where = install(host, path, link=link)
    click.echo(f"guard: installed the {host} plug-in at {where}; restart {host} to load it")


@command.command("uninstall")
@click.argument("host", type=_HOSTS)
@click.argument("path", type=click.Path(file_okay=False, path_type=Path))
@handle_errors
def uninstall_command(host: str, path: Path) -> None:
    """Remove guard's plug-in for HOST from the host at PATH."""
    from guard.integrations.install import uninstall

    where = uninstall(host, path)
    click.echo(f"guard: removed {where}")
