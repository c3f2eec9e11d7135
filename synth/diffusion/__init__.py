"""The diffusion floor: ImageGenerator (a diffusers UNet DP-trained with the engine's Diffusion
objective, sampled with DDIM) and UNetChoice, shared by the images and albums rooms; PublicTextToImage
(a user's public diffusers text-to-image pipeline by path)."""

from .generator import ImageGenerator, UNetChoice
from .public_pipeline import PublicTextToImage

__all__ = ["ImageGenerator", "PublicTextToImage", "UNetChoice"]
