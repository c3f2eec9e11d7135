"""Private image generators: diffusers UNets trained with the DP engine's Diffusion objective."""

from ..image_files import load_image_folder
from .generator import ImageGenerator, UNetChoice

__all__ = ["ImageGenerator", "UNetChoice", "load_image_folder"]
