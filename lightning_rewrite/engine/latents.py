"""Seeded latent sets that match the official rewriting code, and the step dataset that
drives a RewriteModule's optimisation loop."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, IterableDataset

from ..errors import RewriteError
from ..limits import MAX_SAMPLES

_CHUNK = 65_536


@dataclass
class LatentSampler:
    """Sample i of seed s is row i of ``RandomState(s).standard_normal(size * dim)``.

    This is ``z_dataset_for_model`` of the official code, so an official edit file that
    names a sample by index selects the same latent. ``shape`` is the per-sample shape
    (default ``(dim,)``; e.g. ``(dim, 1, 1)`` for a convolutional input).
    """

    dim: int
    seed: int = 1
    shape: tuple[int, ...] | None = None
    _block: np.ndarray | None = field(default=None, repr=False, compare=False)

    def take(self, indices: Sequence[int] | Tensor | int) -> Tensor:
        """The latents of the given sample indices, (len(indices), *shape), float32."""
        idx = torch.as_tensor(indices, dtype=torch.int64).reshape(-1)
        if len(idx) and int(idx.min()) < 0:
            raise RewriteError(f"sample index {int(idx.min())} is negative; indices start at 0")
        need = int(idx.max()) + 1 if len(idx) else 0
        if need > MAX_SAMPLES:
            raise RewriteError(f"sample index {need - 1} is beyond the latent set: indices name samples 0 … "
                               f"{MAX_SAMPLES - 1:,} of the seed-{self.seed} set")
        if self._block is None or len(self._block) < need:
            self._block = self._rows(need)
        z = torch.from_numpy(self._block[idx.numpy()])
        return z.reshape(len(idx), *(self.shape or (self.dim,)))

    def _rows(self, n: int) -> np.ndarray:
        """The first ``n`` rows as float32, drawn in chunks (the same stream as one draw of n·dim)."""
        rng = np.random.RandomState(self.seed)
        out = np.empty((n, self.dim), dtype=np.float32)
        for start in range(0, n, _CHUNK):
            rows = min(_CHUNK, n - start)
            out[start:start + rows] = rng.standard_normal(rows * self.dim).reshape(rows, self.dim)
        return out

    def describe(self) -> dict:
        """What identifies this latent set (for cache keys and edit files)."""
        return {"kind": "numpy_standard_normal", "dim": self.dim, "seed": self.seed,
                "shape": list(self.shape or (self.dim,))}

    @classmethod
    def for_model(cls, model: nn.Module, seed: int = 1) -> "LatentSampler":
        """Infer the latent shape as the official code does: ``model.input_shape``, a
        ``z_dim``/``style_dim`` attribute, else the first Linear or convolution's inputs."""
        shape = getattr(model, "input_shape", None)
        if shape is not None:
            shape = tuple(int(s) for s in shape[1:])
            return cls(dim=int(np.prod(shape)), seed=seed, shape=shape)
        for attr in ("z_dim", "style_dim", "latent_dim"):
            if isinstance(getattr(model, attr, None), int):
                return cls(dim=getattr(model, attr), seed=seed)
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                return cls(dim=m.in_channels, seed=seed, shape=(m.in_channels, 1, 1))
            if isinstance(m, nn.Linear):
                return cls(dim=m.in_features, seed=seed)
        raise RewriteError(
            f"cannot infer the latent size of {type(model).__name__}: give it an `input_shape` "
            "attribute or pass a LatentSampler(dim=...)"
        )


class StepDataset(IterableDataset):
    """An endless stream of step numbers: a rewrite optimises a fixed goal, so a batch
    carries no data; the Trainer's ``max_steps`` ends the loop."""

    def __iter__(self) -> Iterator[Tensor]:
        step = 0
        while True:
            yield torch.tensor(step)
            step += 1


def step_loader() -> DataLoader:
    return DataLoader(StepDataset(), batch_size=None)
