"""RewriteModule: a LightningModule whose training loop writes one new rule into a generator
(Bau et al. 2020, Eq. 18) or runs a baseline. It holds an engine ``Method`` (what is optimised,
its start, loss and change) and adds Lightning's hooks: optimiser, logging, callbacks."""

from __future__ import annotations

import copy
import time
from typing import Any

import pytorch_lightning as pl
from torch import Tensor, nn

from .engine.edit import WeightChange
from .engine.goal import Goal, goal_of
from .engine.latents import LatentSampler, step_loader
from .engine.layer import HookedLayer
from .engine.memory import SecondMoment
from .engine.methods import Settings, make_method
from .engine.request import EditRequest
from .errors import RewriteError


class RewriteModule(pl.LightningModule):
    """Generator + HookedLayer + EditRequest + a method; ``trainer.fit`` makes the edit. The
    generator is copied (``copy_generator=False``: edited in place); key statistics come from
    the KeyCovariance callback (added when missing) or :meth:`set_key_moment`."""

    def __init__(self, generator: nn.Module, layer: str, request: EditRequest, method: str = "rank_s",
                 latents: LatentSampler | None = None, value_layer: str | None = None, copy_generator: bool = True,
                 **settings: Any) -> None:
        """``settings``: the fields of :class:`~lightning_rewrite.engine.methods.Settings` (rank,
        parametrization, solver, lr, lr_schedule, loss, warm_start, crop, perceptual, ...)."""
        super().__init__()
        self.save_hyperparameters(ignore=["generator", "request", "latents", "perceptual"])
        self.generator = copy.deepcopy(generator) if copy_generator else generator
        self.generator.requires_grad_(False)
        self.hooked = HookedLayer(self.generator, layer, value_layer)
        self.request = request
        self.latents = latents or LatentSampler.for_model(generator)
        self.key_moment: SecondMoment | None = None
        self._first_loss = self._last_loss = None  # the loss before the first step, after the last one
        self.prepare_seconds = 0.0  # goal, directions and warm start
        self.method = make_method(method, self.hooked, Settings.of(latents=self.latents, **settings))
        self.automatic_optimization = False  # the solver's step may evaluate the loss several times
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
        start = time.perf_counter()
        c = self.key_moment.moment().to(self.device) if self.key_moment is not None else None
        self.method.prepare(goal_of(self.request, self.hooked, self.latents, c), c)
        self.prepare_seconds = time.perf_counter() - start

    def on_fit_start(self) -> None:
        self._last_loss = self._first_loss = None
        self.prepare()

    def training_step(self, batch: Any, batch_idx: int) -> Tensor | None:
        """One solver step (L-BFGS evaluates the loss several times in it), logged; stops at convergence."""
        if not self.method.optimises:  # the edit was made at fit start: nothing to step
            self.trainer.should_stop = True
            return None
        optimizer, parts = self.optimizers(), {}

        def closure() -> Tensor:
            optimizer.zero_grad()
            parts.update(self.method.losses())
            self.manual_backward(parts["loss"])
            return parts["loss"]
        start = float(optimizer.step(closure=closure).detach())  # the loss before the step
        self._first_loss = start if self._first_loss is None else self._first_loss
        if (schedule := self.lr_schedulers()) is not None:
            schedule.step()
        for name, value in {**parts, **self.method.state()}.items():
            self.log(f"train/{name}", value.detach() if isinstance(value, Tensor) else value, prog_bar=name == "loss")
        loss = float(parts["loss"].detach())
        if self.method.solver.converged(self._last_loss, loss):
            if self.method.solver.converged(self._first_loss, loss) and self.method.restart():  # stalled at the start
                optimizer.state.clear()  # the solver's history belongs to the old start
                loss = None
            else:
                self.trainer.should_stop = True
        self._last_loss = loss
        return parts["loss"].detach()

    def configure_optimizers(self) -> Any:
        """The method's solver: L-BFGS, or Adam (by default its rate decays along a cosine over max_steps)."""
        optimizer = self.method.solver.optimizer(self.method.trainable(), self.method.lr())
        schedule = self.method.solver.schedule(optimizer, self.trainer.max_steps if self._trainer is not None else -1,
                                        self.method.settings.lr_schedule)
        return optimizer if schedule is None else {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule,
                                                                                          "interval": "step"}}

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
