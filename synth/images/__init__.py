"""Private image generators: diffusers UNets trained with the DP engine's Diffusion objective."""

from ..diffusion import ImageGenerator, UNetChoice
from ..image_files import load_image_folder

__all__ = ["ImageGenerator", "UNetChoice", "load_image_folder"]
