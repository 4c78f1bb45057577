"""guard inside ComfyUI: four custom nodes (Save Image, Protect Artwork, Verify, Detect Watermark).

`guard integrations install comfyui PATH` copies the node package (the `nodes` folder, package
data: ComfyUI imports it, guard never does beyond reading its files) into PATH/custom_nodes/. The
nodes stay thin: each one's FUNCTION calls one function of this package, which holds the work and
is type-checked (the node files import ComfyUI's own modules, which cannot be installed here).

| module   | ComfyUI node             | guard                                              |
|----------|--------------------------|----------------------------------------------------|
| save     | Save Image (guard)       | SaveImage's files, watermarked and signed (publish) |
| protect  | Protect Artwork (guard)  | guard.protection.protect on each image of a batch  |
| verify   | Verify (guard)           | guard.verify / verify_bytes: the verdict           |
| detect   | Detect Watermark (guard) | guard.watermark.detect: ID and p-value             |
| images   | (all)                    | IMAGE tensors <-> PIL, exactly as ComfyUI converts |
| names    | Save Image (guard)       | the page's %date:…% / %Node.widget% prefix replacements |
"""

from __future__ import annotations

from guard.integrations.install import Target, register

# A ComfyUI checkout (or the ComfyUI folder of the portable build) holds these at its root.
HOST_FILES = ("folder_paths.py", "comfy", "nodes.py")

register(
    Target(
        name="comfyui",
        package="guard.integrations.comfyui.nodes",
        plugins="custom_nodes",
        folder="guard-comfyui",
        host_files=HOST_FILES,
    )
)
