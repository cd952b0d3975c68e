"""``stats``: compute (or read from the cache) the key statistics of the model at
``edit.layer``, and say where they are."""

from __future__ import annotations

import time
from pathlib import Path

from omegaconf import DictConfig
from rich.console import Console

from ..engine.stats import KeyStatistics, Statistics
from ..engine.layer import HookedLayer
from ..engine.latents import LatentSampler
from .assemble import check_layer, load_model
from .report import table


def key_statistics(cfg: DictConfig, hooked: HookedLayer, latents: LatentSampler) -> tuple[Statistics, float]:
    """The statistics ``cfg.stats`` asks for (cached unless ``stats.cache=false``) and the seconds they took."""
    service = KeyStatistics(cfg.stats.samples, cfg.stats.batch_size, None if cfg.stats.cache else False, cfg.progress,
                            cfg.stats.products)
    start = time.perf_counter()
    found = service.get(hooked, latents)
    return found, round(time.perf_counter() - start, 2)


def run(cfg: DictConfig, overrides: list[str], out: Path, console: Console) -> None:
    model = load_model(cfg, with_segmenter=False)
    found, seconds = key_statistics(cfg, check_layer(model, cfg.edit.layer), model.latents)
    console.print(table(f"key statistics of {cfg.edit.layer}", {
        "keys": found.moment.count, "dimension": found.moment.dim, "source": found.source, "seconds": seconds,
        "cache": str(found.path.parent) if found.path else "off"}))
