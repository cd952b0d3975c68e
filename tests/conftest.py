"""Small generators and requests the tests build for themselves (no downloads)."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

from lightning_rewrite.models.blocks import BlocksGenerator

os.environ.setdefault("WANDB_MODE", "offline")


class TinyGenerator(nn.Module):
    """z (16) → 32×8×8 → conv → upsample → conv (``layer3``, the usual edit) → RGB 16×16.

    Layers are Sequentials of (conv, activation), named like the official code's layers.
    """

    def __init__(self, z_dim: int = 16, width: int = 32, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.z_dim = z_dim
        self.layer1 = nn.Sequential(nn.Linear(z_dim, width * 8 * 8), nn.LeakyReLU(0.2), nn.Unflatten(1, (width, 8, 8)))
        self.layer2 = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.LeakyReLU(0.2), nn.Upsample(scale_factor=2))
        self.layer3 = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.LeakyReLU(0.2))
        self.layer4 = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.LeakyReLU(0.2))
        self.output = nn.Sequential(nn.Conv2d(width, 3, 1), nn.Tanh())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.layer1(z)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)
        return self.output(x)


def box_mask(size: int, top: int, left: int, bottom: int, right: int) -> torch.Tensor:
    m = torch.zeros(size, size)
    m[top:bottom, left:right] = 1
    return m


@pytest.fixture
def tiny() -> TinyGenerator:
    return TinyGenerator().eval()


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LIGHTNING_REWRITE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # no LPIPS backbone unless a test places one


def quiet_trainer(max_steps: int, callbacks: list | None = None, **kwargs):
    import pytorch_lightning as pl

    return pl.Trainer(max_steps=max_steps, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, callbacks=callbacks or [], **kwargs)


@pytest.fixture
def blocks() -> BlocksGenerator:
    return BlocksGenerator().eval()
