"""The extension's settings: a "guard" section of web UI's Settings page, and what they mean.

The extension's `on_ui_settings` callback turns each `Option` into a `shared.OptionInfo` and adds
it with `shared.opts.add_option(key, info)` (web UI's contract, modules/script_callbacks.py
`on_ui_settings`: "add your settings by using shared.opts.add_option(shared.OptionInfo(...))").
`Settings.from_opts(shared.opts)` reads them back at save time, so a change applies to the next
image without a restart.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

from guard.errors import GuardError
from guard.provenance import vocab
from guard.provenance.spec import Training

if TYPE_CHECKING:
    from guard.identity import Identity

# (section id, label): the shape of `OptionInfo.section` in modules/options.py
SECTION = ("guard", "guard")
Kind = Literal["checkbox", "textbox", "radio"]

TRAININGS: tuple[Training, ...] = ("notAllowed", "allowed", "constrained")
# "auto": what guard generate writes (trainedAlgorithmicMedia; for inpainting
# compositeWithTrainedAlgorithmicMedia; for Extras of an image without infotext
# algorithmicallyEnhanced); the others force one IPTC digital source type for every image
SOURCES = ("auto", "ai", "ai-composite", "ai-edited")


class SettingsError(GuardError):
    """A guard setting in web UI's Settings page cannot be used as it is."""


@dataclass(frozen=True)
class Option:
    key: str
    default: Any
    label: str
    kind: Kind
    choices: tuple[str, ...] = ()
    info: str = ""


OPTIONS: tuple[Option, ...] = (
    Option(
        "guard_enabled",
        True,
        "Watermark and sign every image web UI saves",
        "checkbox",
        info="off: web UI saves its files as if guard were not installed",
    ),
    Option(
        "guard_sign_grids",
        False,
        "Also watermark and sign grids and intermediate images",
        "checkbox",
        info="grids, X/Y/Z plots, and the copies saved before hires fix, face restoration or "
        "color correction, and inpainting masks; init images are never signed",
    ),
    Option(
        "guard_author", "", "Author named in the Content Credentials", "textbox", info="empty: none"
    ),
    Option(
        "guard_training",
        "notAllowed",
        "AI training and data mining",
        "radio",
        choices=TRAININGS,
        info="the CAWG training-and-data-mining assertion and the XMP PLUS DataMining field",
    ),
    Option(
        "guard_source",
        "auto",
        "Digital source type",
        "radio",
        choices=SOURCES,
        info="auto: trainedAlgorithmicMedia (inpainting: compositeWithTrainedAlgorithmicMedia)",
    ),
    Option(
        "guard_watermark_key",
        "",
        "Watermark key file",
        "textbox",
        info="empty: guard's public key, which anyone can detect",
    ),
    Option(
        "guard_identity_dir",
        "",
        "Identity folder (signer.pem and signer.key)",
        "textbox",
        info="empty: guard's own local identity, created on first use under GUARD_HOME",
    ),
)


@dataclass(frozen=True)
class Settings:
    enabled: bool = True
    sign_grids: bool = False
    author: str | None = None
    training: Training = "notAllowed"
    source: str = "auto"
    watermark_key_file: Path | None = None
    identity_dir: Path | None = None
    # web UI's own "Write infotext to metadata of the generated image" (opts.enable_pnginfo):
    # off, the manifest names no prompt either (the model, sampler, seed... it still states)
    infotext: bool = True

    @classmethod
    def from_opts(cls, opts: Any) -> Settings:
        """web UI's `shared.opts` (or anything with those attributes); a missing one is its
        default, as `Options.__getattr__` answers for an option added with add_option."""
        values = {o.key: getattr(opts, o.key, o.default) for o in OPTIONS}
        key_file = str(values["guard_watermark_key"] or "").strip()
        identity_dir = str(values["guard_identity_dir"] or "").strip()
        return cls(
            enabled=bool(values["guard_enabled"]),
            sign_grids=bool(values["guard_sign_grids"]),
            author=str(values["guard_author"] or "").strip() or None,
            training=cast(Training, str(values["guard_training"])),
            source=str(values["guard_source"] or "auto"),
            watermark_key_file=Path(key_file).expanduser() if key_file else None,
            identity_dir=Path(identity_dir).expanduser() if identity_dir else None,
            infotext=bool(getattr(opts, "enable_pnginfo", True)),
        )

    def check(self) -> None:
        """Raise SettingsError naming the setting that cannot be used."""
        if self.training not in TRAININGS:
            raise SettingsError(
                f"guard setting 'AI training and data mining' is {self.training!r}; use one of "
                f"{', '.join(TRAININGS)}"
            )
        if self.source != "auto":
            try:
                vocab.source_uri(self.source)
            except ValueError as exc:
                raise SettingsError(f"guard setting 'Digital source type': {exc}") from None

    def watermark_key(self) -> bytes | None:
        """The key file's bytes (stripped; any length, guard hashes it), as `--watermark-key`
        reads them (guard.cli._common.read_key)."""
        path = self.watermark_key_file
        if path is None:
            return None
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise SettingsError(
                f"{path}: cannot read the watermark key ({exc.strerror or exc}); fix the guard "
                "setting 'Watermark key file' or leave it empty"
            ) from exc
        if not data.strip():
            raise SettingsError(f"{path}: the watermark key file is empty")
        return data.strip()

    def identity(self) -> Identity:
        """Who signs: the identity folder's chain and key, or guard's local identity (created
        on first use, as `guard sign` does)."""
        from guard.identity import Identity

        folder = self.identity_dir
        if folder is None:
            return Identity.default()
        cert, key = folder / "signer.pem", folder / "signer.key"
        if not (cert.is_file() and key.is_file()):
            raise SettingsError(
                f"{folder}: no signing identity there (signer.pem and signer.key); run "
                f"'GUARD_HOME={folder.parent} guard keys init' or leave the guard setting "
                "'Identity folder' empty to use guard's own"
            )
        return Identity.from_files(cert, key)

    def trust_files(self) -> tuple[Path, ...]:
        """Extra anchors a verify in the tab trusts: the identity folder's CA, if it has one."""
        if self.identity_dir is not None and (self.identity_dir / "ca.pem").is_file():
            return (self.identity_dir / "ca.pem",)
        return ()


def option_infos(option_info: Any, components: dict[str, Any]) -> list[tuple[str, Any]]:
    """(key, OptionInfo) for each guard setting, built with web UI's own `shared.OptionInfo`
    (OptionInfo(default, label, component, component_args, section=...), modules/options.py)
    and gradio components given by kind: {"checkbox": gr.Checkbox, "textbox": gr.Textbox,
    "radio": gr.Radio}."""
    out = []
    for o in OPTIONS:
        args = {"choices": list(o.choices)} if o.choices else None
        info = option_info(o.default, o.label, components[o.kind], args, section=SECTION)
        if o.info and hasattr(info, "info"):
            info = info.info(o.info)
        out.append((o.key, info))
    return out
