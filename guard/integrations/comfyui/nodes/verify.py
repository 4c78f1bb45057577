"""Verify (guard): the verdict on an IMAGE or a file, as text and as JSON."""

from guard.integrations.comfyui import verify


class VerifyGuard:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {},
            "optional": {
                "images": ("IMAGE", {"tooltip": "Pixels only: judged by the watermark."}),
                "file": (
                    "STRING",
                    {
                        "default": "",
                        "tooltip": "A file to verify: a path, or a name in the input folder "
                        "('name.png [output]' for the output folder).",
                    },
                ),
            },
        }

    RETURN_TYPES = ("STRING", "STRING")
    RETURN_NAMES = ("verdict", "json")
    OUTPUT_IS_LIST = (True, True)
    FUNCTION = "verify"
    OUTPUT_NODE = True
    CATEGORY = "image/guard"
    DESCRIPTION = "What guard verify says: the C2PA manifest, the watermark and the ledger record."

    @classmethod
    def IS_CHANGED(cls, images=None, file=""):
        return float(
            "nan"
        )  # never from the cache: the file, the ledger or the trust list may change

    def verify(self, images=None, file=""):
        import folder_paths

        path = folder_paths.get_annotated_filepath(file.strip()) if file.strip() else None
        reports = verify.verify_inputs(images, path)
        texts = [text for text, _ in reports]
        jsons = [data for _, data in reports]
        return {"ui": {"text": texts}, "result": (texts, jsons)}
