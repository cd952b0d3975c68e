"""``layers``: list the rewritable layers of the model (``model.checkpoint=PATH`` or the world's
generator) with their official names, shapes and resolutions."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig
from rich.console import Console

from ..models.summary import describe_layers, layers_table
from .assemble import load_model


def run(cfg: DictConfig, overrides: list[str], out: Path, console: Console) -> None:
    console.print(layers_table(describe_layers(load_model(cfg, with_segmenter=False).generator)))
