"""The run's logger (W&B by default; CSV, TensorBoard or none), and sending it images, metrics
and the edit file, whatever logger it is."""

from __future__ import annotations

import logging
import netrc
import os
import shutil
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
    import wandb

    offline = "WANDB_MODE" not in os.environ and not wandb_logged_in()
    # W&B's own banner names the run's temporary directory; the command says where it lands
    logger = WandbLogger(project=PROJECT, name=name, save_dir=str(save_dir), offline=offline,
                         settings=wandb.Settings(silent=True))
    logger._wandb_init.pop("anonymous", None)  # Lightning passes anonymous=None; W&B warns that it has no effect
    return logger


def wandb_run_dir(logger: Logger | None) -> Path | None:
    """The W&B run's folder (``wandb/offline-run-*`` or ``wandb/run-*``), or None."""
    if not isinstance(logger, WandbLogger):
        return None
    return Path(logger.experiment.dir).parent


def sync_hint(run_dir: Path | None, root_then: Path, root_now: Path) -> str | None:
    """Where the W&B run lies once the run directory is in place, and how to upload it."""
    if run_dir is None:
        return None
    final = root_now / run_dir.relative_to(root_then)
    offline = final.name.startswith("offline-")
    return f"W&B run: {final}" + (f" (offline; upload it with `wandb sync {final}`)" if offline else "")


def log_images(logger: Logger | None, images: dict[str, Tensor], step: int = 0) -> None:
    """Send image grids (3, H, W in [0, 1]) to W&B or TensorBoard as the 8-bit pictures the run
    directory's PNGs hold (W&B would cast floats to 8 bits unscaled); other loggers keep only the PNGs."""
    from .engine.images import to_uint8

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
    """The edit file (and its spec) into the W&B run: copied into the run's own folder (synced
    with it), and logged as an artifact from those copies — W&B stages nothing outside the run
    directory. An offline run's artifact would name the run directory's temporary path, which
    is gone once it is moved into place: offline, the files travel as run files alone."""
    if not isinstance(logger, WandbLogger):
        return
    import wandb

    run = logger.experiment
    copies = []
    for p in paths:
        copy = Path(run.dir) / p.name
        shutil.copyfile(p, copy)
        run.save(str(copy), base_path=run.dir, policy="now")
        copies.append(copy)
    if run.settings._offline:
        return
    artifact = wandb.Artifact(name=name, type=kind)
    for c in copies:
        artifact.add_file(str(c), name=c.name, policy="immutable")
    run.log_artifact(artifact)


def finish(logger: Logger | None, status: str = "success") -> None:
    """Flush and close the logger (before its directory is moved into place, or removed)."""
    if logger is None:
        return
    logger.finalize(status)
    if isinstance(logger, WandbLogger):
        logger.experiment.finish(exit_code=0 if status == "success" else 1)
