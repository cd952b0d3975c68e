"""Lightning callbacks of lightning-rewrite (installed as ``lightning_rewrite.callbacks``)."""

from .covariance import KeyCovariance
from .projection import ProjectedOptimizer

__all__ = ["KeyCovariance", "ProjectedOptimizer"]
