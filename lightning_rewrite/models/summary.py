"""What a user needs to pick a layer: every rewritable layer with its key dimension, memory
shape, value shape and resolution, as rows and as a rich table."""

from __future__ import annotations

import torch
from rich.table import Table
from torch import Tensor, nn

from ..engine.latents import LatentSampler
from ..engine.layer import HookedLayer, rewritable_layers


def describe_layers(model: nn.Module, z: Tensor | None = None) -> list[dict]:
    """For each rewritable layer: name, official alias, key dimension N, memory (M, N), value
    shape and resolution. ``z`` is one latent batch to run (sample 0 of seed 1 by default)."""
    if z is None:
        z = LatentSampler.for_model(model).take([0])
    aliases = {v: k for k, v in (getattr(model, "layer_aliases", None) or {}).items()}
    rows = []
    for name in rewritable_layers(model):
        hooked = HookedLayer(model, name)
        with torch.no_grad():
            value = hooked.values(z[:1])
        rows.append({"name": name, "alias": aliases.get(name), "key_dim": hooked.key_dim,
                     "memory": list(hooked.memory_shape), "value_shape": list(value.shape[1:]),
                     "resolution": "×".join(str(s) for s in value.shape[2:]) or "-"})
    return rows


def layers_table(rows: list[dict], title: str | None = None) -> Table:
    """The rows of :func:`describe_layers` as a rich table."""
    table = Table(title=title)
    for col, justify in (("layer", "left"), ("alias", "left"), ("keys N", "right"), ("memory M×N", "right"),
                         ("value", "right"), ("resolution", "right")):
        table.add_column(col, justify=justify)
    for r in rows:
        table.add_row(r["name"], r["alias"] or "", str(r["key_dim"]), "×".join(map(str, r["memory"])),
                      "×".join(map(str, r["value_shape"])), r["resolution"])
    return table
