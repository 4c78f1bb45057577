"""Save Image (guard): a drop-in for ComfyUI's SaveImage whose files are watermarked and signed."""

from guard.integrations.comfyui import save
from guard.provenance.vocab import TRAINING_VALUES


class SaveImageGuard:
    def __init__(self):
        import folder_paths

        self.output_dir = folder_paths.get_output_directory()
        self.type = "output"
        self.prefix_append = ""
        self.compress_level = save.COMPRESS_LEVEL

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "The images to save."}),
                "filename_prefix": (
                    "STRING",
                    {
                        "default": "ComfyUI",
                        "tooltip": "The prefix for the file to save, as in Save Image "
                        "(%date:yyyy-MM-dd%, %Empty Latent Image.width%, subfolder/name).",
                    },
                ),
            },
            "optional": {
                "training": (
                    list(TRAINING_VALUES),
                    {
                        "default": "notAllowed",
                        "tooltip": "What the signed manifest says about AI training and data "
                        "mining on this image.",
                    },
                ),
            },
            "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"},
        }

    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("report",)
    OUTPUT_TOOLTIPS = ("What guard did with each file (watermark ID, or why it could not sign).",)
    FUNCTION = "save_images"
    OUTPUT_NODE = True
    CATEGORY = "image/guard"
    DESCRIPTION = (
        "Saves the images to your ComfyUI output folder as Save Image does, with guard's "
        "invisible watermark and a signed C2PA manifest (AI-generated; checkpoint, seed, steps, "
        "sampler and scheduler from the workflow)."
    )

    def save_images(
        self,
        images,
        filename_prefix="ComfyUI",
        prompt=None,
        extra_pnginfo=None,
        training="notAllowed",
    ):
        import folder_paths
        from comfy.cli_args import args

        return save.save_images(
            images,
            filename_prefix + self.prefix_append,
            prompt,
            extra_pnginfo,
            output_dir=self.output_dir,
            get_save_image_path=folder_paths.get_save_image_path,
            disable_metadata=args.disable_metadata,
            compress_level=self.compress_level,
            folder_type=self.type,
            training=training,
        )
