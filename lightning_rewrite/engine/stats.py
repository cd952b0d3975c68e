"""Key statistics as a service: the second moment C = E[kkᵀ] of a layer's keys over sampled
latents, streamed (a shard of the latents per process, when asked) and cached on disk keyed
by everything that determines it. Plain torch: the KeyCovariance callback, ``fit`` and the
``stats`` command all ask the same service."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from .. import vocabulary
from ..atomic import atomic_path
from ..version import __version__
from .latents import LatentSampler
from .layer import HookedLayer
from .memory import SecondMoment

log = logging.getLogger(__name__)

#: The dtype of each name of the vocabulary's PRODUCTS (the running sum is float64 either way).
PRODUCTS = {"float32": torch.float32, "float64": torch.float64}
assert set(PRODUCTS) == set(vocabulary.PRODUCTS)


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
    products: torch.dtype = torch.float32,
) -> SecondMoment:
    """Stream the keys of ``samples`` latents (or the given ``indices``) into a SecondMoment
    (its batch products in ``products`` precision), running each batch only up to the layer."""
    device, dtype = hooked.weight.device, hooked.weight.dtype
    idx = list(indices if indices is not None else range(samples))
    moment = SecondMoment(hooked.key_dim, products)
    columns = (TextColumn("key statistics {task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, disable=not progress, transient=True) as bar, torch.no_grad():
        task = bar.add_task(hooked.name, total=len(idx))
        for start in range(0, len(idx), batch_size):
            chunk = idx[start:start + batch_size]
            keys = hooked.keys(latents.take(chunk).to(device, dtype))
            moment.update_maps(keys)
            bar.advance(task, len(chunk))
    return moment


def _checksum(state: dict[str, Tensor]) -> str:
    """sha256 over the tensors' names, dtypes, shapes and bytes (what a cache read must get back)."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


@dataclass
class Statistics:
    """What the service answered: the moment, whether it was ``"computed"`` or read from the
    ``"cache"``, and the cache file (None when caching is off)."""

    moment: SecondMoment
    source: str
    path: Path | None


class KeyStatistics:
    """C over ``samples`` latents, cached under ``cache_dir`` (``None``: the default, ``False``:
    no cache), keyed by a fingerprint of the weights that feed the layer, the layer name, the
    latent sampler, the model's truncation, ``samples``, the key dtype, the products' precision
    (``"float32"``, or ``"float64"``: bitwise as version 0.1) and the package version. The file
    records a sha256 of its tensors and the latents it streamed over, checked on every read: a
    stale, unreadable or damaged cache is rebuilt (and said so), never used."""

    def __init__(self, samples: int = 1000, batch_size: int = 16, cache_dir: str | os.PathLike | bool | None = None,
                 progress: bool = True, products: str = "float32") -> None:
        if samples < 1:
            raise ValueError(f"samples must be ≥ 1, got {samples}")
        if products not in PRODUCTS:
            raise ValueError(f"products must be one of {', '.join(PRODUCTS)}, got {products!r}")
        self.samples, self.batch_size, self.progress, self.products = samples, batch_size, progress, products
        self.cache_dir = None if cache_dir is False else Path(cache_dir) if cache_dir not in (None, True) else default_cache_dir()

    def cache_key(self, hooked: HookedLayer, latents: LatentSampler) -> tuple[str, dict]:
        """The digest naming the cache file, and the settings it digests."""
        z0 = latents.take([0]).to(hooked.weight.device, hooked.weight.dtype)
        desc = {
            "upstream": hooked.upstream_fingerprint(z0),
            "layer": hooked.name,
            "latents": latents.describe(),
            "truncation": getattr(hooked.model, "truncation", None),
            "samples": self.samples,
            "dtype": str(hooked.weight.dtype),
            "products": self.products,
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
                state = {"sum": f.get_tensor("sum"), "count": f.get_tensor("count")}
            if "sha256" not in meta:
                log.warning("key statistics cache %s has no checksum (an older version wrote it); rebuilding it", path)
                return None
            if meta["sha256"] != _checksum(state) or meta.get("samples") != str(self.samples):
                log.warning("key statistics cache %s does not match its checksum (the file is damaged); rebuilding it", path)
                return None
            moment = SecondMoment().load_state_dict(state)
            if moment.dim != dim or moment.count <= 0 or moment.count % self.samples or not torch.isfinite(moment.sum).all():
                raise ValueError("wrong shape, count or values")
            return moment
        except Exception as e:  # noqa: BLE001 - any unreadable file is rebuilt
            log.warning("key statistics cache %s is unreadable (%s); rebuilding it", path, e)
            return None

    def get(self, hooked: HookedLayer, latents: LatentSampler, rank: int = 0, world: int = 1,
            reduce: Callable[[Tensor], Tensor] | None = None) -> Statistics:
        """The statistics, from the cache when valid, else streamed. Across ``world`` processes
        each streams every ``world``-th latent from ``rank`` and ``reduce`` sums the shards."""
        path = digest = desc = None
        if self.cache_dir:  # the key costs a forward pass and a hash of the upstream weights
            digest, desc = self.cache_key(hooked, latents)
            path = self.cache_dir / f"{hooked.name}-{digest}.safetensors"
            moment = self._load(path, digest, hooked.key_dim)
            if moment is not None:
                log.info("key statistics for %s read from %s", hooked.name, path)
                return Statistics(moment, "cache", path)
            stale = [p.name for p in path.parent.glob(f"{hooked.name}-*.safetensors") if p != path]
            if stale:
                log.info("the %d cached key statistics of %s were made for other weights or settings", len(stale), hooked.name)
        moment = collect_second_moment(hooked, latents, self.samples, self.batch_size,
                                       indices=range(rank, self.samples, world), progress=self.progress and rank == 0,
                                       products=PRODUCTS[self.products])
        if world > 1 and reduce is not None:
            count = torch.tensor(float(moment.count), dtype=torch.float64, device=moment.sum.device)
            moment.sum, moment.count = reduce(moment.sum.clone()), int(round(reduce(count).item()))
        if path and rank == 0:
            state = moment.state_dict()
            with atomic_path(path) as tmp:
                save_file(state, str(tmp), metadata={"key": digest, "settings": json.dumps(desc, sort_keys=True),
                                                     "sha256": _checksum(state), "samples": str(self.samples)})
        log.info("key statistics of %s computed over %d samples (%d keys)%s", hooked.name, self.samples, moment.count,
                 f", cached at {path}" if path else " (not cached)")
        return Statistics(moment, "computed", path)
