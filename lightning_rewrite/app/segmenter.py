"""``segmenter``: train a world's segmenter on fresh renders and report its IoU."""

from __future__ import annotations

from typing import Any

from ..worlds.segmenter import train_segmenter
from ..worlds import get_world
from .rundir import check_export


def run(cfg: dict[str, Any]) -> None:
    """Never the installed package's own weights by default: ``export=`` names them to replace them."""
    get_world(cfg["world"])
    cfg["export"] = str(check_export(cfg["export"] or f"runs/segmenter/{cfg['world']}_segmenter.safetensors"))
    train_segmenter(**cfg)
