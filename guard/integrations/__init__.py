"""guard inside the tools people already generate with.

- `install`: copy (or link) a host's plug-in, shipped inside this package, into the host's own
  folder (`guard integrations install webui|comfyui PATH`), and remove it again;
- `webui/`: the Stable Diffusion web UI / Forge extension (its files are package data under
  `webui/extension/`) and the library functions its callbacks call;
- `comfyui/`: the ComfyUI custom-node package (package data under `comfyui/nodes/`) and the
  library functions its nodes call.

The plug-ins are thin: each callback or node calls one tested function here.
"""
