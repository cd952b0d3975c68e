"""``segmenter``: train a world's segmenter on fresh renders and report its IoU."""

from __future__ import annotations

from typing import Any

from ..worlds.segmenter import train_segmenter
from .rundir import check_export


def run(cfg: dict[str, Any]) -> None:
    if cfg["export"]:
        check_export(cfg["export"])
    train_segmenter(**cfg)
