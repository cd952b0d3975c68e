"""Generators users bring: StyleGAN2 (rosinality layout, NVIDIA pickles converted) and Progressive
GAN (GAN Dissection layout), in plain PyTorch, every convolution rewritable."""

from .loading import load_generator
from .proggan import ProgressiveGenerator
from .stylegan2 import ModulatedConv2d, StyledConv, StyleGAN2Generator
from .summary import describe_layers, layers_table

__all__ = ["ModulatedConv2d", "ProgressiveGenerator", "StyleGAN2Generator", "StyledConv", "describe_layers",
           "layers_table", "load_generator"]
