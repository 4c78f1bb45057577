"""Diffusers image generation with Stable Diffusion web UI conventions.

Every image it writes goes through guard.publish: watermarked, signed, recorded in the ledger.
"""
