"""``pretrain``: train a world's generator (resumable; writes samples/, checkpoints/, logs/ and
generator.safetensors into a directory the tool claims)."""

from __future__ import annotations

from typing import Any

import torch

from ..worlds import get_world
from ..worlds.pretrain import pretrain
from .rundir import check_export, claim_directory

#: What ``pretrain`` left in its directory before run directories carried a marker (resumable).
LEGACY_LAYOUT = ("checkpoints/last.ckpt", "samples/latest.png")


def run(cfg: dict[str, Any]) -> None:
    get_world(cfg["world"])  # an unknown world and a refused export fail before the directory is made
    if cfg["export"]:
        check_export(cfg["export"])
    cfg["out"] = claim_directory(cfg["out"] or f"runs/pretrain/{cfg['world']}", "pretrain", legacy=LEGACY_LAYOUT)
    torch.manual_seed(cfg["seed"])  # the noise inputs' stream; the process is the command's own
    torch.set_flush_denormal(True)  # tiny activations late in training otherwise slow the CPU several-fold
    pretrain(**cfg)
