"""``select``: choose the recipe's selections among the world's samples; writes
``<out>/select/request.json`` and ``selections.png`` (stored with the recipe under
``recipes/requests/``, ``fit`` uses them without segmenting)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig
from rich.console import Console

from ..engine import images
from .assemble import chosen_request, load_model
from .rundir import run_directory


def run(cfg: DictConfig, overrides: list[str], out: Path, console: Console) -> None:
    model = load_model(cfg)
    request = chosen_request(cfg, model)
    with run_directory(out / "select", "select", nested=True) as tmp:
        request.save(tmp / "request.json")
        images.save_png(images.figure([images.selections(request, model.generator, model.latents)],
                                      f"{cfg.recipe}: the selections chosen", legend=True), tmp / "selections.png")
    console.print(f"selections of {cfg.recipe}: samples {request.samples()} → {out / 'select'}")
