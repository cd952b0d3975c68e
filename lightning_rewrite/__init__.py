"""lightning-rewrite: rewriting a deep generative model (Bau et al., ECCV 2020) as a
PyTorch Lightning plugin.

The public names load on first use (PEP 562), so the command line answers ``--help`` and
configuration errors without importing torch."""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: Public name → the module that defines it.
_EXPORTS = {
    "Change": ".module", "RewriteModule": ".module",
    "CovarianceSolver": ".memory", "SecondMoment": ".memory",
    "EditRequest": ".request", "Goal": ".request", "Selection": ".request",
    "HookedLayer": ".layer", "LayerInputs": ".layer", "RewritableLayer": ".layer", "rewritable_layers": ".layer",
    "LatentSampler": ".data",
    "RewriteError": ".errors",
}

__all__ = [*sorted(_EXPORTS), "__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
