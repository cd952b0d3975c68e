"""RewriteModule: a LightningModule whose training loop writes one new rule into a
generator (Bau et al. 2020, Eq. 18), or runs one of the paper's baselines.

Methods:
- ``rank_s``: W = W0 + Λ Dᵀ, D from the context keys (Appendix D). ``parametrization``
  ``"lambda"`` optimises Λ directly; ``"projected"`` optimises W and lets the
  ProjectedOptimizer callback project it back onto W0 + span(D) (the official code).
  Λ starts from the closed-form insert of the layer's linear operation. ``"svd"`` finds D
  from the change itself: W is optimised freely and projected onto its best rank-S change by
  SVD (the paper's reflection edit, Sect. 5.3, where the context keys are shared by the two
  scenes of each pair and do not say which way to change).
- ``full_layer`` (Eq. 6): all of W, no direction constraint.
- ``all_weights`` (Eq. 2–3): every weight of the generator, minimising L_constraint (the
  pasted goal image, over the goal region) + ``smooth_weight`` · L_smooth (unchanged output on
  fresh latents), each with the image distance ℓ = L1 + ``perceptual_weight`` · ``perceptual``
  (spatial LPIPS, or another map from :mod:`lightning_rewrite.perceptual`).
- ``dissect`` (GAN Dissection, for erase requests): no optimisation; the erased key channels'
  columns of W are zeroed, so those units no longer reach the layer's output anywhere.

The loss is L1 over the goal region, as in the official code (``loss="mse"`` for the
paper's L2); Adam at ``lr`` as there, with a cosine decay unless ``lr_schedule="constant"``.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import memory
from .data import LatentSampler, step_loader
from .errors import RewriteError
from .layer import HookedLayer
from .memory import SecondMoment
from .perceptual import Frozen
from .request import EditRequest, Goal

log = logging.getLogger(__name__)

METHODS = ("rank_s", "full_layer", "all_weights", "dissect")
PARAMETRIZATIONS = ("lambda", "projected", "svd")
LOSSES = ("l1", "mse")
SCHEDULES = ("cosine", "constant")


@dataclass
class Change:
    """What an edit changed at its layer: the factored ΔW = Λ Dᵀ (rank_s) or ΔW itself."""

    layer: str
    weight_name: str
    key_axis: int
    weight_shape: tuple[int, ...]
    directions: Tensor | None = None  # D (N, S), orthonormal columns
    lam: Tensor | None = None  # Λ (M, S)
    delta: Tensor | None = None  # ΔW in the weight's shape (full_layer / all_weights)

    def weight(self, w0: Tensor) -> Tensor:
        """The edited weight, given the original W0."""
        if self.lam is not None:
            return memory.low_rank_weight(w0, self.lam.to(w0), self.directions.to(w0), self.key_axis)
        return w0 + self.delta.to(w0)


def masked_loss(pred: Tensor, target: Tensor, region: Tensor, kind: str = "l1") -> Tensor:
    """Mean L1 or squared error over the region (weights broadcast over channels)."""
    err = (pred - target).abs() if kind == "l1" else (pred - target).pow(2)
    weight = region.expand_as(err)
    return (err * weight).sum() / weight.sum().clamp_min(1e-12)


class RewriteModule(pl.LightningModule):
    """Generator + HookedLayer + EditRequest; ``trainer.fit`` makes the edit.

    The generator is copied once (``copy_generator=False`` edits it in place). Key
    statistics come from the KeyCovariance callback (added automatically when missing),
    or from :meth:`set_key_moment`.
    """

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
        for name, value, allowed in (("method", method, METHODS), ("parametrization", parametrization, PARAMETRIZATIONS),
                                     ("loss", loss, LOSSES), ("lr_schedule", lr_schedule, SCHEDULES)):
            if value not in allowed:
                raise RewriteError(f"unknown {name} {value!r}; choose one of {', '.join(allowed)}")
        if not isinstance(rank, int) or rank < 1:
            raise RewriteError(f"rank must be an integer ≥ 1, got {rank!r}")
        self.save_hyperparameters(ignore=["generator", "request", "latents", "perceptual"])
        self.generator = copy.deepcopy(generator) if copy_generator else generator
        self.generator.requires_grad_(False)
        self.hooked = HookedLayer(self.generator, layer, value_layer)
        if rank > self.hooked.key_dim:
            raise RewriteError(f"rank {rank} exceeds the key dimension {self.hooked.key_dim} of layer {layer}")
        self.request = request
        self.latents = latents or LatentSampler.for_model(generator)
        self.method, self.rank, self.parametrization = method, rank, parametrization
        self.lr, self.loss_kind, self.lr_schedule, self.warm_start = lr, loss, lr_schedule, warm_start
        self.key_moment: SecondMoment | None = None
        self.goal: Goal | None = None
        self.condition: float | None = None
        weight = self.hooked.weight
        m, n = self.hooked.memory_shape
        self.register_buffer("weight0", weight.detach().clone())
        self.register_buffer("directions", torch.zeros(n, rank, dtype=weight.dtype))
        # RMS of Dᵀk over the context keys: Λ is optimised as Λ·scale, in units of value change,
        # so one learning rate suits layers whose keys have any magnitude.
        self.register_buffer("key_scale", torch.ones(rank, dtype=weight.dtype))
        self.lam = nn.Parameter(torch.zeros(m, rank, dtype=weight.dtype)) if self._uses_lambda else None
        self.perceptual, self.perceptual_weight = perceptual, perceptual_weight
        self.smooth_weight, self.smooth_batch = smooth_weight, smooth_batch
        self._smooth_seed = 0
        if method == "all_weights":
            self.frozen = Frozen(copy.deepcopy(self.generator))  # the original, for L_smooth and the edit file
            self.generator.requires_grad_(True)
        elif not self._uses_lambda:
            weight.requires_grad_(True)
        self._target_image: Tensor | None = None

    @property
    def original_state(self) -> dict[str, Tensor]:
        """all_weights: every parameter of the generator before the edit (the frozen copy's)."""
        if self.method != "all_weights":
            return {}
        return {n: p.detach() for n, p in self.frozen.network.named_parameters()}

    @property
    def _uses_lambda(self) -> bool:
        return self.method == "rank_s" and self.parametrization == "lambda"

    @property
    def needs_statistics(self) -> bool:
        """Whether the key second moment is needed (for D, or to choose erase units)."""
        return self.method == "rank_s" or (self.request.kind == "erase" and isinstance(self.request.units, int))

    # -- statistics and goal ------------------------------------------------------------------

    def set_key_moment(self, moment: SecondMoment) -> None:
        """Give the module the key statistics C = E[kkᵀ] of its layer."""
        if moment.dim != self.hooked.key_dim:
            raise RewriteError(f"key statistics have dimension {moment.dim}, layer {self.hooked.name} has {self.hooked.key_dim}")
        self.key_moment = moment

    def prepare(self) -> None:
        """Build the goal, the directions D and the warm start (done at fit start)."""
        if self.goal is not None:
            return
        if self.needs_statistics and self.key_moment is None:
            raise RewriteError("RewriteModule needs key statistics: add the KeyCovariance callback or call set_key_moment()")
        c = self.key_moment.moment().to(self.device) if self.key_moment is not None else None
        self.goal = self.request.goal(self.hooked, self.latents, c)
        if self.method == "rank_s":
            solver = memory.CovarianceSolver(c)
            self.condition = solver.condition
            d = memory.context_directions(solver, self.goal.context_keys, self.goal.context_weights, self.rank)
            self.directions.copy_(d.to(self.directions))
            proj = self.goal.context_keys.to(d) @ d
            scale = (proj.pow(2) * self.goal.context_weights.to(d)[:, None]).sum(0) / self.goal.context_weights.sum()
            self.key_scale.copy_(scale.sqrt().clamp_min(1e-8).to(self.key_scale))
            if self.warm_start and self.parametrization != "svd":
                self._warm_start()
        if self.method == "dissect":
            self._dissect()
        if self.method == "all_weights":
            goal = self.goal
            with torch.no_grad():
                self._target_image = self.hooked.render_with_value(
                    goal.latents, lambda v: v + goal.region * (goal.target - v)
                ).detach()

    def _dissect(self) -> None:
        """Zero W's columns for the request's erased units (GAN Dissection's ablation, written
        into the weight: with a demodulated convolution the normalisation follows the new W)."""
        if self.request.kind != "erase" or not self.goal.units:
            raise RewriteError("method dissect needs an erase request (edit.kind=erase with edit.units)")
        memory_view = memory.as_memory(self.weight0, self.hooked.key_axis).clone()
        memory_view[:, self.goal.units] = 0
        with torch.no_grad():
            self.hooked.weight.copy_(memory.from_memory(memory_view, self.weight0.shape, self.hooked.key_axis))

    def on_fit_start(self) -> None:
        self.prepare()

    def _warm_start(self) -> None:
        """Λ0 = argmin ‖region · (V*_lin − lin(K*; W0 + Λ Dᵀ))‖²: the closed-form insert for the
        layer's linear operation (exact for Linear/Conv layers; a Gauss-Newton step for
        nonlinear ones such as a demodulated convolution), solved by CGLS through the layer."""
        goal = self.goal
        if goal.target_linear is None or not self.hooked.has_linear:
            log.info("layer %s exposes no linear operation: Λ starts at zero", self.hooked.name)
            return
        w0, d, axis = self.weight0, self.directions, self.hooked.key_axis
        sqrt_region = goal.region.sqrt()
        with torch.no_grad():
            base = self.hooked.linear_forward(goal.inputs, w0)

        def f(lam: Tensor) -> Tensor:
            return sqrt_region * self.hooked.linear_forward(goal.inputs, memory.low_rank_weight(w0, lam, d, axis))

        lam0 = self.directions.new_zeros(self.hooked.memory_shape[0], self.rank)
        def jvp(x: Tensor) -> Tensor:
            return torch.func.jvp(f, (lam0,), (x,))[1]

        _, vjp = torch.func.vjp(f, lam0)
        target = (sqrt_region * (goal.target_linear - base)).detach()
        result = memory.least_squares_cg(jvp, lambda r: vjp(r)[0], target, lam0, iterations=100)
        log.info("warm start: Λ from the rank-%d least-squares insert of the linear part (%d CG iterations); "
                 "%.0f%% of the goal's linear change (relative norm) is left for the optimiser",
                 self.rank, result.iterations, 100 * result.relative_residual)
        with torch.no_grad():
            if self.lam is not None:
                self.lam.copy_(result.solution * self.key_scale)
            else:
                self.hooked.weight.copy_(memory.low_rank_weight(w0, result.solution, d, axis))

    # -- optimisation --------------------------------------------------------------------------

    def _lambda(self) -> Tensor:
        """Λ (M, S) in weight units, from the key-scaled parameter."""
        return self.lam / self.key_scale

    def current_weight(self) -> Tensor:
        """The layer's weight as the edit stands now."""
        if self.lam is not None:
            return memory.low_rank_weight(self.weight0, self._lambda(), self.directions, self.hooked.key_axis)
        return self.hooked.weight

    def image_distance(self, a: Tensor, b: Tensor) -> Tensor:
        """ℓ for all_weights, per pixel (B, 1, H, W): L1 (+ the perceptual map, weighted)."""
        d = (a - b).abs().mean(1, keepdim=True)
        if self.perceptual is not None and a.ndim == 4:
            d = d + self.perceptual_weight * self.perceptual(a, b)
        return d

    def smooth_loss(self) -> Tensor:
        """L_smooth (Eq. 2): ℓ between the original and current generator on fresh latents,
        drawn from a stream of its own (never the selections' sample indices)."""
        g = torch.Generator().manual_seed(10_000_019 + self._smooth_seed)
        self._smooth_seed += 1
        shape = (self.smooth_batch, *(self.latents.shape or (self.latents.dim,)))
        z = torch.randn(shape, generator=g).to(self.device)
        with torch.no_grad():
            before = self.frozen(z)
        return self.image_distance(self.generator(z), before).mean()

    def goal_loss(self) -> Tensor:
        """The constraint loss: value space at the layer, or image space for all_weights."""
        goal = self.goal
        if self.method == "all_weights":
            image = self.generator(goal.latents)
            region = goal.region
            if image.ndim == region.ndim and image.ndim > 2:
                region = F.interpolate(region, size=image.shape[2:], mode="nearest")
            else:
                region = torch.ones_like(image[:, :1])
            if self.loss_kind == "mse":
                return masked_loss(image, self._target_image, region, "mse")
            d = self.image_distance(image, self._target_image)
            return (d * region).sum() / region.expand_as(d).sum().clamp_min(1e-12)
        weight = self.current_weight() if self.lam is not None else None
        values = self.hooked.layer_forward(goal.inputs, weight)
        return masked_loss(values, goal.target, goal.region, self.loss_kind)

    def training_step(self, batch: Any, batch_idx: int) -> Tensor | None:
        if self.method == "dissect":
            return None  # the edit is made at fit start; nothing to optimise
        loss = self.goal_loss()
        if self.method == "all_weights" and self.smooth_weight > 0:
            smooth = self.smooth_loss()
            self.log("train/constraint", loss)
            self.log("train/smooth", smooth)
            loss = loss + self.smooth_weight * smooth
        self.log("train/loss", loss, prog_bar=True)
        if self.lam is not None:
            self.log("train/lambda_norm", self._lambda().detach().norm())
        return loss

    def configure_optimizers(self) -> Any:
        """Adam (the official optimiser); by default its rate decays to zero along a cosine
        over ``max_steps``, so the last steps settle instead of oscillating around the goal."""
        if self.lam is not None:
            params = [self.lam]
        elif self.method == "all_weights":
            params = list(self.generator.parameters())
        else:
            params = [self.hooked.weight]
        optimizer = torch.optim.Adam(params, lr=self.lr)
        steps = self.trainer.max_steps if self._trainer is not None else -1
        if self.lr_schedule == "constant" or steps is None or steps <= 0:
            return optimizer
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def configure_callbacks(self) -> list[pl.Callback]:
        """Add KeyCovariance / ProjectedOptimizer with their defaults when the Trainer lacks them."""
        from lightning_rewrite.callbacks import KeyCovariance, ProjectedOptimizer

        have = list(self.trainer.callbacks) if self._trainer is not None else []
        out: list[pl.Callback] = []
        if self.needs_statistics and self.key_moment is None and not any(isinstance(c, KeyCovariance) for c in have):
            out.append(KeyCovariance())
        if self.projection() is not None and not any(isinstance(c, ProjectedOptimizer) for c in have):
            out.append(ProjectedOptimizer())
        return out

    def train_dataloader(self) -> Any:
        return step_loader()

    # -- results ------------------------------------------------------------------------------

    def projection(self) -> tuple[nn.Parameter, Tensor, Tensor, int] | None:
        """(W, W0, D, key axis) when W is optimised directly and must stay in W0 + span(D)."""
        if self.method != "rank_s" or self.parametrization == "lambda":
            return None
        if self.parametrization == "svd":
            with torch.no_grad():
                self.directions.copy_(memory.change_directions(self.hooked.weight, self.weight0, self.rank,
                                                               self.hooked.key_axis))
        return self.hooked.weight, self.weight0, self.directions, self.hooked.key_axis

    def on_fit_end(self) -> None:
        self.commit()

    def commit(self) -> None:
        """Write the edited weight into the generator's own parameter (idempotent)."""
        if self.lam is not None:
            with torch.no_grad():
                self.hooked.weight.copy_(self.current_weight())

    def base_generator(self) -> nn.Module:
        """A copy of the generator as it was before the edit (for before/after pictures)."""
        if self.method == "all_weights":
            return copy.deepcopy(self.frozen.network).eval()
        generator = copy.deepcopy(self.generator)
        with torch.no_grad():
            generator.get_parameter(self.hooked.weight_name).copy_(self.weight0)
        return generator.eval()

    def edited_generator(self) -> nn.Module:
        """The generator with the edit applied (the module's own copy, not a new one)."""
        self.commit()
        return self.generator

    def change(self) -> Change:
        """The change at the layer: (layer, D, Λ) for rank_s, ΔW otherwise."""
        h = self.hooked
        base = dict(layer=h.name, weight_name=h.weight_name, key_axis=h.key_axis, weight_shape=tuple(h.weight.shape))
        if self.method == "rank_s":
            d = self.directions.detach().clone()
            if self.lam is not None:
                lam = self._lambda().detach().clone()
            else:
                lam = memory.as_memory(h.weight.detach() - self.weight0, h.key_axis) @ d
            return Change(**base, directions=d, lam=lam)
        return Change(**base, delta=(h.weight.detach() - self.weight0).clone())
