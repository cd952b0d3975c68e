"""Generators users bring: StyleGAN2 (rosinality layout) in plain PyTorch."""

from .stylegan2 import ModulatedConv2d, StyledConv, StyleGAN2Generator

__all__ = ["ModulatedConv2d", "StyledConv", "StyleGAN2Generator"]
