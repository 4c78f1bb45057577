"""Where a run's images go: web UI's file names, each image's manifest, and guard.publish.

Files are `{index:05d}-{seed}-{slug}.png` with the next free index, as web UI names them;
nothing is overwritten, even by another process writing into the same folder.
"""

from __future__ import annotations

import re
import tempfile
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from generator import control as controlnet
from generator.errors import GenerationError
from generator.settings import Settings
from guard.errors import OutputExistsError
from guard.provenance.spec import Ingredient, ManifestSpec, Training
from guard.webui.infotext import Infotext

if TYPE_CHECKING:
    from generator.generate import MadeImage
    from generator.models import LoadedModel


@dataclass
class GeneratedImage:
    path: Path
    seed: int
    infotext: Infotext
    watermark_id: str | None
    manifest_label: str | None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "seed": self.seed,
            "watermark_id": self.watermark_id,
            "manifest": self.manifest_label,
            "parameters": self.infotext.to_text(),
            "notes": self.notes,
        }


def slug(prompt: str, limit: int = 48) -> str:
    """Filesystem-safe words of the prompt: 'A blue bird, flying!' -> 'a-blue-bird-flying'."""
    text = unicodedata.normalize("NFKC", prompt).lower()
    text = re.sub(r"<lora:[^>]*>", " ", text)
    words = [w for w in re.split(r"[^\w]+", text) if w and w != "_"]
    out = ""
    for w in words:
        candidate = f"{out}-{w}" if out else w
        if len(candidate) > limit:
            break
        out = candidate
    return out or (words[0][:limit] if words else "image")


def next_index(folder: Path) -> int:
    """web UI's numbering: one more than the highest `NNNNN-` prefix in the folder."""
    highest = -1
    if folder.is_dir():
        for p in folder.iterdir():
            m = re.match(r"(\d+)-", p.name)
            if m:
                highest = max(highest, int(m.group(1)))
    return highest + 1


@dataclass(frozen=True)
class PublishOptions:
    """How each generated image is published: the one definition behind `Generator.generate` and
    `publish_all`. identity: an Identity or None (the local one); ledger: a Ledger or None (the
    default one); fmt: png, jpeg or webp; on_written(item) runs as each file lands."""

    identity: Any = None
    training: Training = "notAllowed"
    watermark: bool = True
    watermark_key: bytes | None = None
    ledger: Any = None
    fmt: str = "png"
    on_written: Callable[[GeneratedImage], None] | None = None


def publish_all(
    images: Iterable[MadeImage],
    settings: Settings,
    model: LoadedModel,
    out_dir: str | Path,
    options: PublishOptions | None = None,
) -> list[GeneratedImage]:
    """Publish every image (watermark, C2PA, ledger) into `out_dir` under the next free names.

    `images` is consumed only once the folder exists, so a lazy generator makes nothing for a
    folder that cannot be used."""
    from guard.publishing import publish

    opts = options or PublishOptions()
    folder = Path(out_dir).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GenerationError(
            f"-o {folder}: cannot use it as the output folder ({exc.strerror or exc}); "
            "pass a folder you can write to"
        ) from exc
    index = next_index(folder)
    written: list[GeneratedImage] = []
    # pictures drawn from pose JSON, kept until their manifests are signed
    with tempfile.TemporaryDirectory(prefix="guard-control-") as tmp:
        scratch = Path(tmp)
        for made in images:
            spec = build_spec(made, model, settings, opts.training, scratch)
            for _attempt in range(1000):
                path = folder / f"{index:05d}-{made.seed}-{slug(settings.prompt)}.{opts.fmt}"
                index += 1
                if path.exists():
                    continue
                try:
                    result = publish(
                        made.image,
                        path,
                        spec,
                        identity=opts.identity,
                        watermark=opts.watermark,
                        watermark_key=opts.watermark_key,
                        ledger=opts.ledger,
                    )
                    break
                except OutputExistsError:  # another process took the name meanwhile
                    continue
            else:
                raise GenerationError(f"{folder}: no free file name found")
            item = GeneratedImage(
                result.path,
                made.seed,
                made.infotext,
                result.watermark_id,
                result.manifest_label,
                list(result.notes),
            )
            written.append(item)
            if opts.on_written is not None:
                opts.on_written(item)
    return written


def build_spec(
    made: MadeImage,
    model: LoadedModel,
    settings: Settings,
    training: Training,
    scratch: Path | None = None,
) -> ManifestSpec:
    """What the C2PA manifest says about a generated image (guard.webui.generation_record builds it)."""
    from guard.webui import generation_record

    spec = generation_record.spec(
        made.infotext,
        task=made.task,
        model=model.name,
        model_hash=model.hash,
        training=training,
        extra={"batch_index": made.index, "controlnets": _units(made) or None},
    )
    if settings.init_image is not None:
        spec.ingredients.append(Ingredient(Path(settings.init_image), "parentOf"))
    if settings.mask is not None:
        spec.ingredients.append(Ingredient(Path(settings.mask), "inputTo"))
    for n, (c, picture) in enumerate(zip(settings.controls, made.control_images)):
        title = f"ControlNet {n} control image"
        if not c.is_json:  # the picture the user gave (skeleton, or photo for canny/detection)
            spec.ingredients.append(Ingredient(Path(c.image), "inputTo", title))
        elif scratch is not None:  # a pose JSON: the skeleton drawn from it
            drawn = scratch / f"{made.index}-controlnet-{n}-{Path(c.image).stem}.png"
            if not drawn.exists():
                picture.save(drawn)
            spec.ingredients.append(Ingredient(drawn, "inputTo", f"{title} ({c.image.name})"))
    return spec


def _units(made: MadeImage) -> list[dict[str, Any]]:
    """The ControlNet units of an infotext, structured for the generation assertion."""
    units = []
    for key in sorted(k for k in made.infotext.params if k.startswith("ControlNet ")):
        fields = controlnet.parse_unit(made.infotext.params[key])
        units.append({name.lower().replace(" ", "_"): value for name, value in fields.items()})
    return units
