"""``fit``: make the edit a recipe describes and write its run directory — the edited generator,
the edit file, ``before_after.png`` (the EditImages callback) and ``metrics.json`` — and log it
all to the run's logger."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import RichProgressBar
from rich.console import Console

from .. import loggers
from ..atomic import write_text
from ..callbacks import EditImages, ProjectedOptimizer
from ..engine.edit import Edit
from ..engine.fingerprint import module_fingerprint
from ..engine.methods import METHODS
from ..engine.perceptual import perceptual_distance
from ..engine.request import EditRequest
from ..errors import RewriteError
from ..models.saving import save_generator
from ..module import RewriteModule
from ..vocabulary import SHOWN
from .assemble import Model, build_request, check_layer, load_model
from .measures import EditMeasures
from .report import table
from .rundir import run_directory
from .stats import key_statistics

log = logging.getLogger(__name__)


def make_module(cfg: DictConfig, model: Model, request: EditRequest) -> RewriteModule:
    """The RewriteModule ``cfg.edit`` describes."""
    e = cfg.edit
    perceptual = perceptual_distance(e.perceptual, model.segmenter) if METHODS[e.method].image_space else None
    return RewriteModule(model.generator, e.layer, request, method=e.method, latents=model.latents, rank=e.rank,
                         parametrization=e.parametrization, solver=e.solver,
                         lr=e.lr, loss=e.loss, lr_schedule=e.lr_schedule, warm_start=e.warm_start, crop=e.crop,
                         low_rank=e.low_rank,
                         perceptual=perceptual, perceptual_weight=e.perceptual_weight, smooth_weight=e.smooth_weight)


class EditProgressBar(RichProgressBar):
    """Lightning's rich bar, naming the edit's steps (one fit, no epochs) and the loss alone."""

    def __init__(self, description: str) -> None:
        super().__init__()
        self.description = description

    def _get_train_description(self, current_epoch: int) -> str:
        return self.description

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        return metrics

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        """A solver that stopped at convergence ends the bar there: "converged at step k", full,
        with no time left (``trainer.max_steps`` is a cap, not a plan)."""
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        if trainer.should_stop and self.progress is not None and self.train_progress_bar_id is not None:
            step = trainer.global_step
            self.progress.update(self.train_progress_bar_id, total=step, completed=step,
                                 description=f"{self.description}: converged at step {step} (at most {trainer.max_steps})")
            self.refresh()


def edit_trainer(cfg: DictConfig, logger: Any, root: Path, projected: bool, callbacks: list[pl.Callback]) -> pl.Trainer:
    """The Trainer that makes an edit: ``callbacks``, the projection when the method asks for it,
    and the progress bar when ``cfg.progress``."""
    callbacks = list(callbacks)
    if projected:
        callbacks.append(ProjectedOptimizer(every=cfg.edit.project_every))
    if cfg.progress:
        callbacks.append(EditProgressBar(f"{cfg.edit.method} rank {cfg.edit.rank} at {cfg.edit.layer}: steps"))
    return pl.Trainer(max_steps=cfg.trainer.max_steps, accelerator=cfg.trainer.accelerator, devices=cfg.trainer.devices,
                      logger=logger if logger is not None else False, callbacks=callbacks, default_root_dir=root,
                      enable_checkpointing=False, enable_model_summary=False, enable_progress_bar=cfg.progress,
                      log_every_n_steps=10)


def check_trainer(cfg: DictConfig) -> None:
    """Fail before any work when Lightning cannot run on ``trainer.accelerator`` / ``devices`` here."""
    try:
        pl.Trainer(accelerator=cfg.trainer.accelerator, devices=cfg.trainer.devices, logger=False,
                   enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    except Exception as e:  # noqa: BLE001 - Lightning's MisconfigurationException and RuntimeError alike
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise RewriteError(f"trainer.accelerator={cfg.trainer.accelerator} trainer.devices={cfg.trainer.devices} "
                           f"cannot run on this machine ({first[:160]}); try trainer.accelerator=auto") from None


def quick_measures(model: Model, cfg: DictConfig, before: torch.Tensor, after: torch.Tensor) -> dict[str, Any]:
    """``test``'s measures on the pictured held-out samples (unedited, edited), named with the
    number of samples they saw: a first look, not the test."""
    if model.segmenter is None or not cfg.select.source:
        return {}
    measures = EditMeasures(cfg, model, quick=True)
    measures.update(before, after)
    return {f"{k}_shown{SHOWN}": v for k, v in measures.compute().items() if isinstance(v, (int, float))}


def spec_of(cfg: DictConfig, overrides: list[str], model: Model, module: RewriteModule) -> dict[str, Any]:
    """What the edit file records about how it was made."""
    e = cfg.edit
    latents = model.latents
    named = [s for s in module.request.samples() if isinstance(s, int)]
    return {
        "layer": e.layer, "method": e.method, "rank": e.rank, "kind": module.request.kind,
        "request": module.request.to_dict(),
        "latents": {**latents.describe(), "z": {str(i): latents.take([i])[0].flatten().tolist() for i in sorted(set(named))}},
        "units": module.goal.units if module.goal is not None else None,
        "recipe": cfg.recipe, "overrides": list(overrides), "config": OmegaConf.to_container(cfg),
        "model": {"checkpoint": cfg.model.checkpoint, "world": cfg.model.world,
                  "base_fingerprint": model.base_fingerprint, "edits_before": [ed.spec.get("recipe") for ed in model.edits]},
        "solver": {"name": module.method.solver_name(), "asked": e.solver, "lr": module.method.lr(),
                   "max_steps": cfg.trainer.max_steps, "steps": module.global_step, "loss": e.loss,
                   "parametrization": e.parametrization, "warm_start": e.warm_start, "lr_schedule": e.lr_schedule,
                   "project_every": e.project_every if module.method.projects else None,
                   "crop": module.method.crop.describe() if module.method.crop is not None else None,
                   "low_rank": module.method.low_rank, **module.method.solver.describe()},
        "condition_number": module.method.condition,
    }


def run(cfg: DictConfig, overrides: list[str], out: Path, console: Console) -> None:
    console.print(table(f"fit {cfg.recipe}: {out}", fit(cfg, overrides, out)))


def fit(cfg: DictConfig, overrides: list[str], out: Path) -> dict[str, Any]:
    """Run the edit; returns the metrics written to ``out/metrics.json``."""
    check_trainer(cfg)
    model = load_model(cfg)
    check_layer(model, cfg.edit.layer)
    request = build_request(cfg, model)
    base_fingerprint = module_fingerprint(model.generator)
    module = make_module(cfg, model, request)
    with run_directory(out, "fit", cfg.overwrite) as tmp:
        logger = loggers.make_logger(cfg.logger, tmp, cfg.recipe)
        try:
            metrics: dict[str, Any] = {}
            if module.needs_statistics:
                found, seconds = key_statistics(cfg, module.hooked, module.latents)
                module.set_key_moment(found.moment)
                metrics.update(stats_seconds=seconds, stats_source=found.source, stats_samples=cfg.stats.samples)
            title = f"{cfg.recipe}: {cfg.edit.method} rank {cfg.edit.rank} at {cfg.edit.layer}"
            pictures = EditImages(tmp, start=cfg.sample.start, n=SHOWN, title=title)
            trainer = edit_trainer(cfg, logger, tmp, module.method.projects, [pictures])
            start = time.perf_counter()
            trainer.fit(module)
            if trainer.interrupted:
                raise RewriteError(f"fit of {cfg.recipe} was interrupted; {out} is unchanged")
            metrics["fit_seconds"] = round(time.perf_counter() - start, 2)
            metrics.update(prepare_seconds=round(module.prepare_seconds, 2), pictures_seconds=round(pictures.seconds, 2))
            metrics["optimize_seconds"] = round(metrics["fit_seconds"] - module.prepare_seconds - pictures.seconds, 2)
            metrics.update(module.method.report(), solver=module.method.solver_name(), steps=module.global_step)
            edited = module.edited_generator().eval()
            metrics.update(quick_measures(model, cfg, *pictures.samples))
            spec = {**spec_of(cfg, overrides, model, module), "metrics": metrics}
            edit = Edit(module.changes(), base_fingerprint, module_fingerprint(edited), spec)
            edit_path = edit.save(tmp / "edit.safetensors")
            save_generator(edited, tmp, model.source)
            request.save(tmp / "request.json")
            write_text(tmp / "config.yaml", OmegaConf.to_yaml(cfg))
            metrics["changed_weights"] = [c.name for c in edit.changes]
            write_text(tmp / "metrics.json", json.dumps(metrics, indent=1) + "\n")
            loggers.log_metrics(logger, {f"edit/{k}": v for k, v in metrics.items()}, step=module.global_step)
            loggers.log_artifact(logger, [edit_path, edit_path.with_suffix(".json")], f"edit-{cfg.recipe}")
            wandb_dir = loggers.wandb_run_dir(logger)
        except BaseException:
            loggers.finish(logger, "failed")
            raise
        loggers.finish(logger)
    hint = loggers.sync_hint(wandb_dir, tmp, out)
    if hint:
        log.info(hint)
    return metrics
