"""Diffusers image generation with Stable Diffusion web UI conventions; every output is published through guard."""
