"""Detect Watermark (guard): IMAGE -> the watermark ID and its p-value, per image."""

from guard.integrations.comfyui import detect


class DetectWatermarkGuard:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE", {"tooltip": "The images to look in."})}}

    RETURN_TYPES = ("STRING", "FLOAT")
    RETURN_NAMES = ("id", "p_value")
    OUTPUT_IS_LIST = (True, True)
    FUNCTION = "detect"
    OUTPUT_NODE = True
    CATEGORY = "image/guard"
    DESCRIPTION = (
        "guard's invisible watermark: its 64-bit ID (empty when none is found) and the p-value, "
        "the chance that an unmarked image matches this well (found at p <= 1e-6)."
    )

    def detect(self, images):
        found = detect.detect_images(images)
        ids = [d.id if d.found else "" for d in found]
        p_values = [float(d.p_value) for d in found]
        text = [f"{i or 'no watermark'} (p = {p:.1e})" for i, p in zip(ids, p_values)]
        return {"ui": {"text": text}, "result": (ids, p_values)}
