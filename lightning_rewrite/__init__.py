"""lightning-rewrite: rewriting a deep generative model (Bau et al., ECCV 2020) as a
PyTorch Lightning plugin.

The public names load on first use (PEP 562), so the command line answers ``--help`` and
configuration errors without importing torch."""

from __future__ import annotations

import importlib
from typing import Any

from .version import __version__

#: Public name → the module that defines it.
_EXPORTS = {
    "RewriteModule": ".module",
    "CovarianceSolver": ".engine.memory", "SecondMoment": ".engine.memory",
    "EditRequest": ".engine.request", "Selection": ".engine.request", "Goal": ".engine.goal",
    "HookedLayer": ".engine.layer", "LayerInputs": ".engine.layer", "RewritableLayer": ".engine.layer",
    "rewritable_layers": ".engine.layer",
    "LatentSampler": ".engine.latents",
    "Edit": ".engine.edit", "WeightChange": ".engine.edit",
    "METHODS": ".engine.methods", "Method": ".engine.methods",
    "KeyStatistics": ".engine.stats",
    "RewriteError": ".errors",
}

__all__ = [*sorted(_EXPORTS), "__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
