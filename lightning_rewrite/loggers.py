"""The run's logger (W&B by default; CSV, TensorBoard or none), and sending it images, metrics
and the edit file, whatever logger it is."""

from __future__ import annotations

import logging
import netrc
import os
from pathlib import Path
from typing import Any

from pytorch_lightning.loggers import CSVLogger, Logger, TensorBoardLogger, WandbLogger
from torch import Tensor

from .errors import RewriteError

log = logging.getLogger(__name__)
PROJECT = "lightning-rewrite"


def wandb_logged_in() -> bool:
    """Whether W&B has credentials here (an API key in the environment or in ~/.netrc)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def make_logger(kind: str, save_dir: Path, name: str) -> Logger | None:
    """A Lightning logger writing under ``save_dir``. W&B runs offline unless the user is logged
    in; an explicit ``WANDB_MODE`` is respected."""
    if kind == "none":
        return None
    if kind == "csv":
        return CSVLogger(save_dir, name="csv", version="")
    if kind == "tensorboard":
        try:
            return TensorBoardLogger(save_dir, name="tensorboard", version="")
        except ModuleNotFoundError as e:
            raise RewriteError(f"logger=tensorboard needs the tensorboard package ({e}); pip install tensorboard") from None
    offline = "WANDB_MODE" not in os.environ and not wandb_logged_in()
    return WandbLogger(project=PROJECT, name=name, save_dir=str(save_dir), offline=offline)


def log_images(logger: Logger | None, images: dict[str, Tensor], step: int = 0) -> None:
    """Send image grids (3, H, W in [0, 1]) to W&B or TensorBoard as the 8-bit pictures the run
    directory's PNGs hold (W&B would cast floats to 8 bits unscaled); other loggers keep only the PNGs."""
    from .images import to_uint8

    if isinstance(logger, WandbLogger):
        for key, grid in images.items():
            logger.log_image(key=key, images=[to_uint8(grid)], step=step)
    elif isinstance(logger, TensorBoardLogger):
        for key, grid in images.items():
            logger.experiment.add_image(key, to_uint8(grid), step, dataformats="HWC")


def log_metrics(logger: Logger | None, metrics: dict[str, Any], step: int = 0) -> None:
    numbers = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    if logger is not None and numbers:
        logger.log_metrics(numbers, step=step)


def log_artifact(logger: Logger | None, paths: list[Path], name: str, kind: str = "edit") -> None:
    """The edit file (and its spec) as a W&B artifact."""
    if isinstance(logger, WandbLogger):
        import wandb

        artifact = wandb.Artifact(name=name, type=kind)
        for p in paths:
            artifact.add_file(str(p), name=p.name)
        logger.experiment.log_artifact(artifact)


def finish(logger: Logger | None, status: str = "success") -> None:
    """Flush and close the logger (before its directory is moved into place, or removed)."""
    if logger is None:
        return
    logger.finalize(status)
    if isinstance(logger, WandbLogger):
        logger.experiment.finish(exit_code=0 if status == "success" else 1)
