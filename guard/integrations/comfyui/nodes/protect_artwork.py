"""Protect Artwork (guard): IMAGE -> IMAGE with guard's adversarial protection."""

from guard.integrations.comfyui import protect


class ProtectArtworkGuard:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "The artwork to protect."}),
                "strength": (
                    list(protect.STRENGTHS),
                    {"default": protect.DEFAULT_STRENGTH, "tooltip": "guard protect --strength"},
                ),
                "mode": (
                    list(protect.MODES),
                    {
                        "default": "textural",
                        "tooltip": "textural: disrupt the autoencoder; semantic and fused also "
                        "need the model's UNet.",
                    },
                ),
                "model": (
                    "STRING",
                    {
                        "default": "",
                        "tooltip": "The model to protect against: a checkpoint in "
                        "models/checkpoints, a diffusers folder, a file path or a hub id; empty: "
                        "the Stable Diffusion 1.5 VAE.",
                    },
                ),
                "robust": (
                    "BOOLEAN",
                    {"default": True, "tooltip": "Survive JPEG, resizing and cropping."},
                ),
            },
        }

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "protect"
    CATEGORY = "image/guard"
    DESCRIPTION = (
        "Adds guard's protection: the image looks unchanged, but diffusion models encode, learn "
        "from and edit it badly. Save it with Save Image (guard) to sign it."
    )

    def protect(self, images, strength, mode, model, robust):
        import comfy.model_management
        import comfy.utils
        import folder_paths

        name = model.strip()
        resolved = folder_paths.get_full_path("checkpoints", name) if name else None
        bar = []

        def tick(done, total):
            comfy.model_management.throw_exception_if_processing_interrupted()
            if not bar:
                bar.append(comfy.utils.ProgressBar(total))
            bar[0].update_absolute(done, total)

        protected, _records = protect.protect_images(
            images,
            strength=strength,
            mode=mode,
            model=resolved or name or None,
            robust=robust,
            on_progress=tick,
        )
        return (protected,)
