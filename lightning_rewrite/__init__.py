"""lightning-rewrite: rewriting a deep generative model (Bau et al., ECCV 2020) as a
PyTorch Lightning plugin."""

__version__ = "0.1.0"

from .data import LatentSampler  # noqa: E402
from .errors import RewriteError  # noqa: E402
from .layer import HookedLayer, LayerInputs, RewritableLayer, rewritable_layers  # noqa: E402
from .memory import CovarianceSolver, SecondMoment  # noqa: E402
from .module import Change, RewriteModule  # noqa: E402
from .request import EditRequest, Goal, Selection  # noqa: E402

__all__ = [
    "Change", "CovarianceSolver", "EditRequest", "Goal", "HookedLayer", "LatentSampler", "LayerInputs",
    "RewritableLayer", "RewriteError", "RewriteModule", "SecondMoment", "Selection", "rewritable_layers",
    "__version__",
]
