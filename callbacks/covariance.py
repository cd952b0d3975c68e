"""KeyCovariance: the key second moment C = E[kkᵀ] of the rewritten layer, streamed over
sampled latents at fit start, cached on disk and all-reduced across processes."""

from __future__ import annotations

import json
import logging
import os
import hashlib
from pathlib import Path

import pytorch_lightning as pl
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from safetensors import safe_open
from safetensors.torch import save_file

from lightning_rewrite import __version__
from lightning_rewrite.atomic import atomic_path
from lightning_rewrite.data import LatentSampler
from lightning_rewrite.layer import HookedLayer, flat_keys
from lightning_rewrite.memory import SecondMoment

log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """``$LIGHTNING_REWRITE_CACHE`` or ``~/.cache/lightning_rewrite``, + ``/stats``."""
    root = os.environ.get("LIGHTNING_REWRITE_CACHE") or Path.home() / ".cache" / "lightning_rewrite"
    return Path(root) / "stats"


def collect_second_moment(
    hooked: HookedLayer,
    latents: LatentSampler,
    samples: int,
    batch_size: int = 16,
    indices: range | None = None,
    progress: bool = True,
) -> SecondMoment:
    """Stream the keys of ``samples`` latents (or the given ``indices``) into a SecondMoment,
    running each batch only up to the layer."""
    device, dtype = hooked.weight.device, hooked.weight.dtype
    idx = list(indices if indices is not None else range(samples))
    moment = SecondMoment(hooked.key_dim)
    columns = (TextColumn("key statistics {task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, disable=not progress, transient=True) as bar, torch.no_grad():
        task = bar.add_task(hooked.name, total=len(idx))
        for start in range(0, len(idx), batch_size):
            chunk = idx[start:start + batch_size]
            keys = hooked.keys(latents.take(chunk).to(device, dtype))
            moment.update(flat_keys(keys))
            bar.advance(task, len(chunk))
    return moment


class KeyCovariance(pl.Callback):
    """At fit start, give the module the key statistics of its layer over ``samples`` latents.

    The result is cached under ``cache_dir`` (``None``: the default, ``False``: no cache),
    keyed by a fingerprint of the weights that feed the layer, the layer name, the latent
    sampler, the model's truncation, ``samples``, the key dtype and the package version. A
    stale or unreadable cache is rebuilt (and said so). Under DDP each rank streams its own
    shard of the latents and the sums are all-reduced.

    The module must provide ``hooked`` (HookedLayer), ``latents`` (LatentSampler) and
    ``set_key_moment(SecondMoment)``; RewriteModule does.
    """

    def __init__(self, samples: int = 1000, batch_size: int = 16, cache_dir: str | os.PathLike | bool | None = None,
                 progress: bool = True) -> None:
        if samples < 1:
            raise ValueError(f"samples must be ≥ 1, got {samples}")
        self.samples, self.batch_size, self.progress = samples, batch_size, progress
        self.cache_dir = None if cache_dir is False else Path(cache_dir) if cache_dir not in (None, True) else default_cache_dir()
        self.last_source: str | None = None  # "cache" or "computed", for reports and tests

    def cache_key(self, hooked: HookedLayer, latents: LatentSampler) -> tuple[str, dict]:
        z0 = latents.take([0]).to(hooked.weight.device, hooked.weight.dtype)
        desc = {
            "upstream": hooked.upstream_fingerprint(z0),
            "layer": hooked.name,
            "latents": latents.describe(),
            "truncation": getattr(hooked.model, "truncation", None),
            "samples": self.samples,
            "dtype": str(hooked.weight.dtype),
            "version": __version__,
        }
        digest = hashlib.sha256(json.dumps(desc, sort_keys=True).encode()).hexdigest()[:24]
        return digest, desc

    def _load(self, path: Path, digest: str, dim: int) -> SecondMoment | None:
        if not path.exists():
            return None
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                if meta.get("key") != digest:
                    log.warning("key statistics cache %s belongs to other settings; rebuilding it", path)
                    return None
                moment = SecondMoment().load_state_dict({"sum": f.get_tensor("sum"), "count": f.get_tensor("count")})
            if moment.dim != dim or moment.count <= 0 or not torch.isfinite(moment.sum).all():
                raise ValueError("wrong shape, count or values")
            return moment
        except Exception as e:  # noqa: BLE001 - any unreadable file is rebuilt
            log.warning("key statistics cache %s is unreadable (%s); rebuilding it", path, e)
            return None

    def _save(self, path: Path, digest: str, desc: dict, moment: SecondMoment) -> None:
        with atomic_path(path) as tmp:
            save_file(moment.state_dict(), str(tmp), metadata={"key": digest, "settings": json.dumps(desc, sort_keys=True)})

    def compute(self, trainer: pl.Trainer | None, hooked: HookedLayer, latents: LatentSampler) -> SecondMoment:
        """The statistics, from the cache when valid, else streamed (sharded under DDP)."""
        path = None
        if self.cache_dir:  # the key costs a forward pass and a hash of the upstream weights
            digest, desc = self.cache_key(hooked, latents)
            path = self.cache_dir / f"{hooked.name}-{digest}.safetensors"
        moment = self._load(path, digest, hooked.key_dim) if path else None
        if moment is not None:
            self.last_source = "cache"
            log.info("key statistics for %s read from %s", hooked.name, path)
            return moment
        if path is not None:
            stale = [p.name for p in path.parent.glob(f"{hooked.name}-*.safetensors") if p != path]
            if stale:
                log.info("the %d cached key statistics of %s were made for other weights or settings", len(stale), hooked.name)
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        moment = collect_second_moment(hooked, latents, self.samples, self.batch_size,
                                       indices=range(rank, self.samples, world), progress=self.progress and rank == 0)
        if world > 1:
            total = trainer.strategy.reduce(moment.sum.clone(), reduce_op="sum")
            count = trainer.strategy.reduce(torch.tensor(float(moment.count), dtype=torch.float64,
                                                         device=moment.sum.device), reduce_op="sum")
            moment.sum, moment.count = total, int(round(count.item()))
        self.last_source = "computed"
        if path and rank == 0:
            self._save(path, digest, desc, moment)
        log.info("key statistics of %s computed over %d samples (%d keys)%s", hooked.name, self.samples, moment.count,
                 f", cached at {path}" if path else " (not cached)")
        return moment

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if getattr(pl_module, "key_moment", None) is not None:
            return
        pl_module.set_key_moment(self.compute(trainer, pl_module.hooked, pl_module.latents))
