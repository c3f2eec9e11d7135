"""The diffusion floor: ImageGenerator (a diffusers UNet DP-trained with the engine's Diffusion
objective, sampled with DDIM) and UNetChoice, shared by the images and albums rooms."""

from .generator import ImageGenerator, UNetChoice

__all__ = ["ImageGenerator", "UNetChoice"]
