"""Write a (possibly edited) generator in the format family it came in, plus safetensors."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from ..atomic import atomic_path
from .proggan import ProgressiveGenerator
from .stylegan2 import StyleGAN2Generator


def save_generator(generator: nn.Module, directory: Path, source: Path | None = None) -> list[Path]:
    """``generator.safetensors`` always; beside it ``generator.pt`` (rosinality's ``{"g_ema",
    "latent_avg"}``) for a StyleGAN2 read from .pt or NVIDIA .pkl, or ``generator.pth`` (GAN
    Dissection's state dict) for a Progressive GAN read from .pt/.pth. All load with ``load_generator``."""
    state = {k: v.detach().contiguous().cpu().clone() for k, v in generator.state_dict().items()}
    paths = [directory / "generator.safetensors"]
    with atomic_path(paths[0]) as tmp:
        save_file(state, str(tmp))
    suffix = source.suffix if source is not None else ".safetensors"
    if isinstance(generator, StyleGAN2Generator) and suffix in (".pt", ".pth", ".pkl"):
        paths.append(directory / "generator.pt")
        g_ema = {k: v for k, v in state.items() if k != "latent_avg"}
        with atomic_path(paths[-1]) as tmp:
            torch.save({"g_ema": g_ema, "latent_avg": state["latent_avg"]}, tmp)
    elif isinstance(generator, ProgressiveGenerator) and suffix in (".pt", ".pth"):
        paths.append(directory / "generator.pth")
        with atomic_path(paths[-1]) as tmp:
            torch.save(state, tmp)
    return paths
