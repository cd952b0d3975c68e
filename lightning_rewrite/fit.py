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

from . import loggers
from .atomic import write_text
from .build import Model, build_request, check_layer, load_model
from .callbacks import EditImages, KeyCovariance, ProjectedOptimizer
from .config import learning_rate
from .edit import Edit
from .errors import RewriteError
from .fingerprint import module_fingerprint
from .models.saving import save_generator
from .module import RewriteModule
from .perceptual import perceptual_distance, perceptual_name
from .request import EditRequest
from .rundir import run_directory

log = logging.getLogger(__name__)
#: Samples shown before/after (from ``sample.start`` on: held out from the selections).
SHOWN = 16


def key_statistics(cfg: DictConfig, module: RewriteModule) -> dict[str, Any]:
    """Give the module its key statistics (cached when ``stats.cache``); report time and source."""
    cov = KeyCovariance(samples=cfg.stats.samples, batch_size=cfg.stats.batch_size,
                        cache_dir=None if cfg.stats.cache else False, progress=cfg.progress)
    start = time.perf_counter()
    module.set_key_moment(cov.compute(None, module.hooked, module.latents))
    return {"stats_seconds": round(time.perf_counter() - start, 2), "stats_source": cov.last_source,
            "stats_samples": cfg.stats.samples}


def make_module(cfg: DictConfig, model: Model, request: EditRequest) -> RewriteModule:
    e = cfg.edit
    perceptual = perceptual_distance(e.perceptual, model.segmenter) if e.method == "all_weights" else None
    return RewriteModule(model.generator, e.layer, request, method=e.method, rank=e.rank,
                         parametrization=e.parametrization, lr=learning_rate(e), loss=e.loss, lr_schedule=e.lr_schedule,
                         latents=model.latents, perceptual=perceptual, perceptual_weight=e.perceptual_weight,
                         smooth_weight=e.smooth_weight)


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


def _trainer(cfg: DictConfig, logger: Any, root: Path, projected: bool, pictures: EditImages) -> pl.Trainer:
    callbacks: list[pl.Callback] = [pictures]
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


def quick_measures(model: Model, cfg: DictConfig, before: torch.Tensor, after: torch.Tensor) -> dict[str, float]:
    """On the shown held-out samples (unedited, edited), with the world's segmenter: how much of
    the source class became the target class (copy recipes) or remains (erase / paired)."""
    if model.segmenter is None or not cfg.select.source:
        return {}
    from .worlds.measures import region_efficacy

    lb, la = model.segmenter.labels(before), model.segmenter.labels(after)
    classes = model.world.classes
    out = {}
    src = cfg.select.source[0]
    if cfg.edit.kind == "copy" and cfg.select.target:
        out[f"efficacy_{src}_to_{cfg.select.target[-1]}_shown{SHOWN}"] = region_efficacy(lb, la, classes, src,
                                                                                       cfg.select.target[-1])
    out[f"{src}_pixels_before_shown{SHOWN}"] = int((lb == classes.index(src)).sum())
    out[f"{src}_pixels_after_shown{SHOWN}"] = int((la == classes.index(src)).sum())
    return out


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
        "solver": {"optimizer": "adam", "lr": learning_rate(e), "steps": cfg.trainer.max_steps, "loss": e.loss,
                   "parametrization": e.parametrization, "lr_schedule": e.lr_schedule,
                   "project_every": e.project_every if e.parametrization in ("projected", "svd") else None},
        "condition_number": module.condition,
    }


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
                metrics.update(key_statistics(cfg, module))
            title = f"{cfg.recipe}: {cfg.edit.method} rank {cfg.edit.rank} at {cfg.edit.layer}"
            pictures = EditImages(tmp, start=cfg.sample.start, n=SHOWN, title=title)
            trainer = _trainer(cfg, logger, tmp, module.projection() is not None, pictures)
            start = time.perf_counter()
            trainer.fit(module)
            if trainer.interrupted:
                raise RewriteError(f"fit of {cfg.recipe} was interrupted; {out} is unchanged")
            metrics["fit_seconds"] = round(time.perf_counter() - start, 2)
            with torch.no_grad():
                metrics["constraint_loss"] = float(module.goal_loss())
            if module.lam is not None:
                metrics["lambda_norm"] = float(module._lambda().detach().norm())
            metrics["steps"] = cfg.trainer.max_steps
            if module.method == "all_weights":
                metrics["image_distance"] = "l1" + (f" + {cfg.edit.perceptual_weight} * {perceptual_name(module.perceptual)}"
                                                    if module.perceptual is not None else "")
            edited = module.edited_generator().eval()
            metrics.update(quick_measures(model, cfg, *pictures.samples))
            spec = {**spec_of(cfg, overrides, model, module), "metrics": metrics}
            edit = Edit.from_module(module, base_fingerprint, spec)
            edit_path = edit.save(tmp / "edit.safetensors")
            save_generator(edited, tmp, model.source)
            request.save(tmp / "request.json")
            write_text(tmp / "config.yaml", OmegaConf.to_yaml(cfg))
            metrics["changed_weights"] = [c.name for c in edit.changes]
            write_text(tmp / "metrics.json", json.dumps(metrics, indent=1) + "\n")
            loggers.log_metrics(logger, {f"edit/{k}": v for k, v in metrics.items()}, step=cfg.trainer.max_steps)
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
