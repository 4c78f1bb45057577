"""web UI's "SD VAE" setting: swap another VAE into a loaded model (hub id, diffusers folder,
or a single file in LDM or diffusers layout).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from generator.checkpoints import read_state_dict
from generator.errors import ModelLoadError
from generator.hub import download_snapshot
from guard.modelref import loading, resolve

if TYPE_CHECKING:
    from generator.models import LoadedModel


def set_vae(loaded: LoadedModel, vae: str | Path) -> None:
    """Swap in another VAE (web UI's SD VAE setting): hub id, diffusers folder or single file."""
    from diffusers import AutoencoderKL

    from generator.hashes import vae_hash

    ref = resolve(vae)
    current = loaded.pipe.vae
    dtype = current.dtype
    if ref.kind == "single_file":
        assert ref.path is not None
        with loading(ref, "VAE"):
            state = read_state_dict(ref.path)
        new = AutoencoderKL.from_config(current.config)
        if not any(k.startswith(("encoder.down_blocks", "decoder.up_blocks")) for k in state):
            from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

            state = convert_ldm_vae_checkpoint(state, new.config)
        try:
            new.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ModelLoadError(
                f"VAE '{vae}' does not fit model '{loaded.name}' (different architecture): "
                f"{str(exc).splitlines()[0]}"
            ) from exc
        path = ref.path
    else:
        if ref.kind == "hub":
            path = download_snapshot(ref, "VAE")
        else:
            assert ref.path is not None
            path = ref.path
        folder = path / "vae" if (path / "vae" / "config.json").is_file() else path
        with loading(ref, "VAE"):
            new = AutoencoderKL.from_pretrained(str(folder), local_files_only=True)
        path = folder
    loaded.pipe.vae = new.to(device=current.device, dtype=dtype)
    loaded._tasks.clear()
    loaded.vae_name = ref.name
    loaded.vae_hash = vae_hash(path)
