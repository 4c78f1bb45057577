"""Stable Diffusion web UI's conventions: its infotext (PNG Info), its sampler and schedule names,
and the one builder of what guard records about a generated image (generation_record)."""
