"""Lightning callbacks of lightning-rewrite (installed as ``lightning_rewrite.callbacks``)."""

from .covariance import KeyCovariance
from .images import EditImages
from .projection import ProjectedOptimizer

__all__ = ["EditImages", "KeyCovariance", "ProjectedOptimizer"]
