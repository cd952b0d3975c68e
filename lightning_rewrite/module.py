"""RewriteModule: a LightningModule whose training loop writes one new rule into a generator
(Bau et al. 2020, Eq. 18) or runs a baseline. It holds an engine ``Method`` (what is optimised,
its start, loss and change) and adds Lightning's hooks: optimiser, logging, callbacks."""

from __future__ import annotations

import copy
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor, nn

from .engine.edit import WeightChange
from .engine.goal import Goal, goal_of
from .engine.latents import LatentSampler, step_loader
from .engine.layer import HookedLayer
from .engine.memory import SecondMoment
from .engine.methods import Settings, make_method
from .engine.request import EditRequest
from .errors import RewriteError
from .vocabulary import SCHEDULES


class RewriteModule(pl.LightningModule):
    """Generator + HookedLayer + EditRequest + a method; ``trainer.fit`` makes the edit. The
    generator is copied (``copy_generator=False``: edited in place); key statistics come from
    the KeyCovariance callback (added when missing) or :meth:`set_key_moment`."""

    def __init__(
        self,
        generator: nn.Module,
        layer: str,
        request: EditRequest,
        method: str = "rank_s",
        rank: int = 1,
        parametrization: str = "lambda",
        lr: float = 0.05,
        loss: str = "l1",
        lr_schedule: str = "cosine",
        latents: LatentSampler | None = None,
        value_layer: str | None = None,
        warm_start: bool = True,
        copy_generator: bool = True,
        perceptual: nn.Module | None = None,
        perceptual_weight: float = 1.0,
        smooth_weight: float = 1.0,
        smooth_batch: int = 4,
    ) -> None:
        super().__init__()
        if lr_schedule not in SCHEDULES:
            raise RewriteError(f"unknown lr_schedule {lr_schedule!r}; choose one of {', '.join(SCHEDULES)}")
        if not isinstance(rank, int) or rank < 1:
            raise RewriteError(f"rank must be an integer ≥ 1, got {rank!r}")
        self.save_hyperparameters(ignore=["generator", "request", "latents", "perceptual"])
        self.generator = copy.deepcopy(generator) if copy_generator else generator
        self.generator.requires_grad_(False)
        self.hooked = HookedLayer(self.generator, layer, value_layer)
        self.request = request
        self.latents = latents or LatentSampler.for_model(generator)
        self.lr, self.lr_schedule = lr, lr_schedule
        self.key_moment: SecondMoment | None = None
        self.method = make_method(method, self.hooked, Settings(rank, parametrization, loss, warm_start, perceptual,
                                                                perceptual_weight, smooth_weight, smooth_batch, self.latents))
        for p in self.method.trainable():
            p.requires_grad_(True)

    @property
    def needs_statistics(self) -> bool:
        """Whether the key second moment is needed (for D, or to choose erase units)."""
        return self.method.needs_statistics(self.request)

    @property
    def goal(self) -> Goal | None:
        return self.method.goal

    @property
    def directions(self) -> Tensor | None:
        """D (N, S) when the method constrains the change to context directions."""
        return self.method.directions

    def set_key_moment(self, moment: SecondMoment) -> None:
        """Give the module the key statistics C = E[kkᵀ] of its layer."""
        if moment.dim != self.hooked.key_dim:
            raise RewriteError(f"key statistics have dimension {moment.dim}, layer {self.hooked.name} has {self.hooked.key_dim}")
        self.key_moment = moment

    def prepare(self) -> None:
        """Build the goal and let the method set its start (done at fit start)."""
        if self.goal is not None:
            return
        if self.needs_statistics and self.key_moment is None:
            raise RewriteError("RewriteModule needs key statistics: add the KeyCovariance callback or call set_key_moment()")
        c = self.key_moment.moment().to(self.device) if self.key_moment is not None else None
        self.method.prepare(goal_of(self.request, self.hooked, self.latents, c), c)

    def on_fit_start(self) -> None:
        self.prepare()

    def training_step(self, batch: Any, batch_idx: int) -> Tensor | None:
        if not self.method.optimises:
            return None  # the edit was made at fit start
        losses = self.method.losses()
        self.log("train/loss", losses["loss"], prog_bar=True)
        for name, value in losses.items():
            if name != "loss":
                self.log(f"train/{name}", value)
        return losses["loss"]

    def configure_optimizers(self) -> Any:
        """Adam (the official optimiser); by default its rate decays to zero along a cosine
        over ``max_steps``, so the last steps settle instead of oscillating around the goal."""
        optimizer = torch.optim.Adam(self.method.trainable(), lr=self.lr)
        steps = self.trainer.max_steps if self._trainer is not None else -1
        if self.lr_schedule == "constant" or steps is None or steps <= 0:
            return optimizer
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def configure_callbacks(self) -> list[pl.Callback]:
        """Add KeyCovariance / ProjectedOptimizer with their defaults when the Trainer lacks them."""
        from lightning_rewrite.callbacks import KeyCovariance, ProjectedOptimizer

        have = list(self.trainer.callbacks) if self._trainer is not None else []
        wanted = [(KeyCovariance, self.needs_statistics and self.key_moment is None),
                  (ProjectedOptimizer, self.method.projects)]
        return [kind() for kind, needed in wanted if needed and not any(isinstance(c, kind) for c in have)]

    def train_dataloader(self) -> Any:
        return step_loader()

    def project(self) -> None:
        """Put the optimised weight back on W0 + span(D) (ProjectedOptimizer calls it)."""
        self.method.project()

    def on_fit_end(self) -> None:
        self.method.commit()  # the generator's own parameter holds the edit

    def base_generator(self) -> nn.Module:
        """A copy of the generator as it was before the edit (for before/after pictures)."""
        return self.method.base_generator()

    def edited_generator(self) -> nn.Module:
        """The generator with the edit applied (the module's own copy, not a new one)."""
        self.method.commit()
        return self.generator

    def changes(self) -> list[WeightChange]:
        """What the edit changed: (D, Λ) of the layer for rank_s, the edited weights otherwise."""
        return self.method.changes()
