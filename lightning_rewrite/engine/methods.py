"""The ways of making an edit, each a small class: what it optimises, how it starts, its loss,
and the change it made. ``METHODS`` maps the vocabulary's method names to their classes (the
module and the commands read it; the configuration checks names against the same vocabulary).

- ``rank_s`` (:class:`RankS`): W = W0 + Λ Dᵀ, D from the context keys (Appendix D).
  ``parametrization="lambda"`` optimises Λ directly; ``"projected"`` optimises W and lets the
  ProjectedOptimizer callback project it back onto W0 + span(D) (the official code). Λ starts
  from the closed-form insert of the layer's linear operation. ``"svd"`` finds D from the change
  itself: W is optimised freely and projected onto its best rank-S change by SVD (the paper's
  reflection edit, Sect. 5.3, where the context keys are shared by the two scenes of each pair
  and do not say which way to change).
- ``full_layer`` (:class:`FullLayer`, Eq. 6): all of W, no direction constraint.
- ``all_weights`` (:class:`AllWeights`, Eq. 2–3): every weight of the generator, minimising
  L_constraint (the pasted goal image, over the goal region) + ``smooth_weight`` · L_smooth
  (unchanged output on fresh latents), each with ℓ = L1 + ``perceptual_weight`` · ``perceptual``.
- ``dissect`` (:class:`Dissect`, GAN Dissection, for erase requests): no optimisation; the
  erased key channels' columns of W are zeroed, so those units no longer reach the output.

The loss is L1 over the goal region, as in the official code (``loss="mse"`` for the paper's L2).
Plain torch: the Lightning module holds a method and calls it.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, fields
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import memory
from .. import vocabulary
from ..errors import RewriteError
from .crop import Crop, cropped, find_crop
from .edit import WeightChange
from .goal import Goal
from .latents import LatentSampler
from .layer import HookedLayer
from .perceptual import Frozen, perceptual_name
from .request import EditRequest
from .solvers import SOLVERS, Solver

log = logging.getLogger(__name__)


@dataclass
class Settings:
    """What a method may be told: rank and parametrization (rank_s), the loss, the warm start,
    the solver and its rate (None: the solver's default), whether the goal is cut to its crop
    and evaluated through the projected keys (rank_s), and all_weights' image distance and
    smoothness term."""

    rank: int = 1
    parametrization: str = "lambda"
    loss: str = "l1"
    warm_start: bool = True
    solver: str = "auto"
    lr: float | None = None
    lr_schedule: str = "cosine"
    crop: bool = True
    low_rank: bool = True
    perceptual: nn.Module | None = None
    perceptual_weight: float = 1.0
    smooth_weight: float = 1.0
    smooth_batch: int = 4
    latents: LatentSampler | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.rank, int) or isinstance(self.rank, bool) or self.rank < 1:
            raise RewriteError(f"rank must be an integer ≥ 1, got {self.rank!r}")
        for name, allowed in (("parametrization", vocabulary.PARAMETRIZATIONS), ("loss", vocabulary.LOSSES),
                              ("lr_schedule", vocabulary.SCHEDULES), ("solver", ("auto", *SOLVERS))):
            if getattr(self, name) not in allowed:
                raise RewriteError(f"unknown {name} {getattr(self, name)!r}; choose one of {', '.join(allowed)}")

    @classmethod
    def of(cls, **given: object) -> "Settings":
        """Settings from keyword arguments, or one error line naming the valid ones."""
        unknown = sorted(set(given) - {f.name for f in fields(cls)})
        if unknown:
            raise RewriteError(f"unknown setting(s) {', '.join(unknown)}; valid: {', '.join(f.name for f in fields(cls))}")
        return cls(**given)


def masked_loss(pred: Tensor, target: Tensor, region: Tensor, kind: str = "l1") -> Tensor:
    """Mean L1 or squared error over the region (weights broadcast over channels)."""
    err = (pred - target).abs() if kind == "l1" else (pred - target).pow(2)
    weight = region.expand_as(err)
    return (err * weight).sum() / weight.sum().clamp_min(1e-12)


class Method(nn.Module):
    """One way of editing the layer ``hooked`` (its generator is ``hooked.model``). An
    ``nn.Module`` so that its buffers and parameters move with the Lightning module holding it."""

    optimises: ClassVar[bool] = True  # False: the edit is made in prepare(), no steps
    projects: ClassVar[bool] = False  # whether the optimised weight is projected onto W0 + span(D)
    image_space: ClassVar[bool] = False  # whether the goal is an image (and ℓ may be perceptual)
    deterministic: ClassVar[bool] = True  # whether the loss is the same function at every step
    solver: Solver  # set by make_method, from the solver the settings ask for

    def __init__(self, hooked: HookedLayer, settings: Settings) -> None:
        super().__init__()
        self.hooked, self.settings = hooked, settings
        self.register_buffer("weight0", hooked.weight.detach().clone())
        self.goal: Goal | None = None
        self.crop: Crop | None = None
        self.condition: float | None = None

    @property
    def name(self) -> str:
        """Its name in :data:`METHODS`."""
        return next(name for name, kind in METHODS.items() if type(self) is kind)

    def solver_name(self) -> str:
        """The solver asked for, ``auto`` resolved: L-BFGS for a deterministic, unprojected loss."""
        fits = self.optimises and self.deterministic and not self.projects
        name = self.settings.solver if self.settings.solver != "auto" else ("lbfgs" if fits else "adam")
        if name == "lbfgs" and not fits:
            why = ("makes no steps" if not self.optimises else "draws fresh latents every step" if not self.deterministic
                   else f"projects W between steps (parametrization {self.settings.parametrization})")
            raise RewriteError(f"solver lbfgs needs the same loss at every step and nothing changed between steps; "
                               f"{self.name} {why}: use solver adam (or auto)")
        return name

    def restart(self) -> bool:
        """Move to a better start after the solver stalled at the first one; False when there is none."""
        return False

    def lr(self) -> float:
        """The rate asked for, or the solver's default for this method."""
        return self.settings.lr if self.settings.lr is not None else vocabulary.DEFAULT_LR[self.solver_name()][self.name]

    @property
    def directions(self) -> Tensor | None:
        """D (N, S) when the change is constrained to context directions."""
        return None

    def needs_statistics(self, request: EditRequest) -> bool:
        """Whether the key second moment is needed: for D, or to choose erase units by count."""
        return request.kind == "erase" and isinstance(request.units, int)

    def trainable(self) -> list[nn.Parameter]:
        """What the optimiser moves (and what must require gradients)."""
        return [self.hooked.weight]

    def prepare(self, goal: Goal, second_moment: Tensor | None) -> None:
        """Take the goal (on its crop, unless told otherwise) and C, and set the starting point."""
        self.crop = find_crop(self.hooked, goal) if self.settings.crop else None
        self.goal = cropped(goal, self.crop) if self.crop is not None else goal

    def current_weight(self) -> Tensor:
        """The layer's weight as the edit stands now."""
        return self.hooked.weight

    def losses(self) -> dict[str, Tensor]:
        """``loss`` (what is minimised) and any parts worth logging."""
        return {"loss": self.constraint_loss()}

    low_rank = False  # whether the goal's values skip the layer's own forward (RankS: through Dᵀk)

    def substituted_weight(self) -> Tensor | None:
        """The weight the layer runs with in place of its parameter (None: the parameter)."""
        return None

    def goal_values(self) -> Tensor:
        """The layer's values on the goal's inputs as the edit stands now."""
        return self.hooked.layer_forward(self.goal.inputs, self.substituted_weight())

    def constraint_loss(self) -> Tensor:
        """The goal's loss: the layer's values against V* over the goal region."""
        goal = self.goal
        return masked_loss(self.goal_values(), goal.target, goal.region, self.settings.loss)

    def project(self) -> None:
        """Put the optimised weight back on W0 + span(D) (methods that project)."""

    def commit(self) -> None:
        """Write the edited weight into the generator's own parameter (idempotent)."""

    def changes(self) -> list[WeightChange]:
        """What the edit changed: one entry per changed parameter."""
        h = self.hooked
        return [WeightChange(h.weight_name, self.weight0.detach().clone(), h.key_axis,
                             edited=h.weight.detach().clone())]

    def base_generator(self) -> nn.Module:
        """A copy of the generator as it was before the edit."""
        generator = copy.deepcopy(self.hooked.model)
        with torch.no_grad():
            generator.get_parameter(self.hooked.weight_name).copy_(self.weight0)
        return generator.eval()

    def state(self) -> dict[str, float]:
        """Where the optimisation stands, beyond the loss (logged once a step, not per evaluation)."""
        return {}

    def report(self) -> dict[str, float | str]:
        """What a run reports of the finished edit: the goal's loss, and what else the method knows."""
        with torch.no_grad():
            return {"constraint_loss": float(self.constraint_loss()), **self.state()}


class RankS(Method):
    """The paper's method: a rank-S change along the context directions D."""

    def __init__(self, hooked: HookedLayer, settings: Settings) -> None:
        super().__init__(hooked, settings)
        weight, rank = hooked.weight, settings.rank
        if rank > hooked.key_dim:
            raise RewriteError(f"rank {rank} exceeds the key dimension {hooked.key_dim} of layer {hooked.name}")
        m, n = hooked.memory_shape
        self.register_buffer("_directions", torch.zeros(n, rank, dtype=weight.dtype))
        # RMS of Dᵀk over the context keys: Λ is optimised as Λ·scale, in units of value change,
        # so one learning rate suits layers whose keys have any magnitude.
        self.register_buffer("key_scale", torch.ones(rank, dtype=weight.dtype))
        self.by_lambda = settings.parametrization == "lambda"
        self.from_change = settings.parametrization == "svd"  # D from the change's SVD, not the context
        self._restarted = False
        self._low_rank = None  # the values as a function of Λ, through the S projected keys (prepare)
        self._written: tuple[Tensor, Tensor] | None = None  # W optimised freely: (Λ, W0 + Λ Dᵀ) as committed
        self.projects = not self.by_lambda
        self.lam = nn.Parameter(torch.zeros(m, rank, dtype=weight.dtype)) if self.by_lambda else None

    @property
    def directions(self) -> Tensor:
        return self._directions

    def needs_statistics(self, request: EditRequest) -> bool:
        return True

    def trainable(self) -> list[nn.Parameter]:
        return [self.lam] if self.by_lambda else [self.hooked.weight]

    def prepare(self, goal: Goal, second_moment: Tensor | None) -> None:
        super().prepare(goal, second_moment)
        solver = memory.CovarianceSolver(second_moment)
        self.condition = solver.condition
        d = memory.context_directions(solver, goal.context_keys, goal.context_weights, self.settings.rank)
        self._directions.copy_(d.to(self._directions))
        proj = goal.context_keys.to(d) @ d
        scale = (proj.pow(2) * goal.context_weights.to(d)[:, None]).sum(0) / goal.context_weights.sum()
        self.key_scale.copy_(scale.sqrt().clamp_min(1e-8).to(self.key_scale))
        if self.by_lambda and self.settings.low_rank:
            self._low_rank = self.hooked.low_rank_forward(self.goal.inputs, self._directions)
        if self.settings.warm_start and not self.from_change and self.solver.warm_starts:
            self._warm_start()

    def restart(self) -> bool:
        """After the solver stalled at Λ = 0 (its first line search found no step: Λ must be far
        larger than the gradient says), start again from the closed-form insert, once."""
        if self.from_change or self._restarted:
            return False
        self._restarted = True
        return self._warm_start()

    def _warm_start(self) -> bool:
        """Λ0 = argmin ‖region · (V*_lin − lin(K*; W0 + Λ Dᵀ))‖²: the closed-form insert for the
        layer's linear operation (exact for Linear/Conv layers; a Gauss-Newton step for
        nonlinear ones such as a demodulated convolution), solved by CGLS through the layer.
        False when the layer exposes no linear operation (Λ stays where it is)."""
        goal, hooked = self.goal, self.hooked
        if goal.target_linear is None or not hooked.has_linear:
            log.info("layer %s exposes no linear operation: Λ starts at zero", hooked.name)
            return False
        w0, d, axis = self.weight0, self._directions, hooked.key_axis
        sqrt_region = goal.region.sqrt()
        with torch.no_grad():
            base = hooked.linear_forward(goal.inputs, w0)

        def f(lam: Tensor) -> Tensor:
            return sqrt_region * hooked.linear_forward(goal.inputs, memory.low_rank_weight(w0, lam, d, axis))

        lam0 = d.new_zeros(hooked.memory_shape[0], self.settings.rank)

        def jvp(x: Tensor) -> Tensor:
            return torch.func.jvp(f, (lam0,), (x,))[1]

        _, vjp = torch.func.vjp(f, lam0)
        target = (sqrt_region * (goal.target_linear - base)).detach()
        result = memory.least_squares_cg(jvp, lambda r: vjp(r)[0], target, lam0, iterations=100)
        log.info("warm start: Λ from the rank-%d least-squares insert of the linear part (%d CG iterations); "
                 "%.0f%% of the goal's linear change (relative norm) is left for the optimiser",
                 self.settings.rank, result.iterations, 100 * result.relative_residual)
        with torch.no_grad():
            if self.by_lambda:
                self.lam.copy_(result.solution * self.key_scale)
            else:
                hooked.weight.copy_(memory.low_rank_weight(w0, result.solution, d, axis))
        return True

    def lambda_(self) -> Tensor:
        """Λ (M, S) in weight units: the key-scaled parameter, or the projected W's coordinates."""
        if self.by_lambda:
            return self.lam / self.key_scale
        if self._written is not None and torch.equal(self.hooked.weight, self._written[1]):
            return self._written[0]
        return memory.as_memory(self.hooked.weight.detach() - self.weight0, self.hooked.key_axis) @ self._directions

    def current_weight(self) -> Tensor:
        if self.by_lambda:
            return memory.low_rank_weight(self.weight0, self.lambda_(), self._directions, self.hooked.key_axis)
        return self.hooked.weight

    def substituted_weight(self) -> Tensor | None:
        return self.current_weight() if self.by_lambda else None

    @property
    def low_rank(self) -> bool:
        """Whether the goal's values are evaluated through the S projected keys."""
        return self._low_rank is not None

    def goal_values(self) -> Tensor:
        """Through the S projected keys where the layer offers it (the same numbers, S of its
        input channels per evaluation), else the layer's own forward at W0 + Λ Dᵀ."""
        if self._low_rank is None:
            return super().goal_values()
        return self._low_rank(self.lambda_())

    def project(self) -> None:
        if self.by_lambda:
            return
        weight, axis = self.hooked.weight, self.hooked.key_axis
        with torch.no_grad():
            if self.from_change:
                self._directions.copy_(memory.change_directions(weight, self.weight0, self.settings.rank, axis))
            weight.copy_(memory.project_weight(weight, self.weight0, self._directions, axis))

    def state(self) -> dict[str, float]:
        return {"lambda_norm": float(self.lambda_().detach().norm())} if self.by_lambda else {}

    def commit(self) -> None:
        """The generator's W is W0 + Λ Dᵀ computed as an edit file applies it, so applying the
        saved edit to the base gives bitwise this weight (a freely optimised, projected W equals
        it only up to rounding); Λ is kept as written."""
        with torch.no_grad():
            if self.by_lambda:
                self.hooked.weight.copy_(self.current_weight())
                return
            lam = self.lambda_().clone()
            self.hooked.weight.copy_(memory.low_rank_weight(self.weight0, lam, self._directions, self.hooked.key_axis))
            self._written = (lam, self.hooked.weight.detach().clone())

    def changes(self) -> list[WeightChange]:
        h = self.hooked
        return [WeightChange(h.weight_name, self.weight0.detach().clone(), h.key_axis,
                             self._directions.detach().clone(), self.lambda_().detach().clone())]


class FullLayer(Method):
    """Eq. 6: every entry of the layer's W, no direction constraint."""



class Dissect(Method):
    """GAN Dissection's ablation written into W: the erased units' columns zeroed (with a
    demodulated convolution the normalisation follows the new W)."""

    optimises = False

    def prepare(self, goal: Goal, second_moment: Tensor | None) -> None:
        super().prepare(goal, second_moment)
        if not goal.units:
            raise RewriteError("method dissect needs an erase request (edit.kind=erase with edit.units)")
        memory_view = memory.as_memory(self.weight0, self.hooked.key_axis).clone()
        memory_view[:, goal.units] = 0
        with torch.no_grad():
            self.hooked.weight.copy_(memory.from_memory(memory_view, self.weight0.shape, self.hooked.key_axis))


class AllWeights(Method):
    """Eq. 2–3: every weight of the generator, in image space, with L_smooth on fresh latents."""

    image_space = True
    deterministic = False  # L_smooth draws fresh latents every step

    def __init__(self, hooked: HookedLayer, settings: Settings) -> None:
        super().__init__(hooked, settings)
        self.frozen = Frozen(copy.deepcopy(hooked.model))  # the original, for L_smooth and the edit file
        self.perceptual = settings.perceptual
        self._target_image: Tensor | None = None
        self._smooth_seed = 0

    def trainable(self) -> list[nn.Parameter]:
        return list(self.hooked.model.parameters())

    def prepare(self, goal: Goal, second_moment: Tensor | None) -> None:
        self.goal = goal  # image space: the whole picture, no crop of the layer
        with torch.no_grad():
            self._target_image = self.hooked.render_with_value(
                goal.latents, lambda v: v + goal.region * (goal.target - v)).detach()

    def image_distance(self, a: Tensor, b: Tensor) -> Tensor:
        """ℓ per pixel (B, 1, H, W): L1 (+ the perceptual map, weighted)."""
        d = (a - b).abs().mean(1, keepdim=True)
        if self.perceptual is not None and a.ndim == 4:
            d = d + self.settings.perceptual_weight * self.perceptual(a, b)
        return d

    def constraint_loss(self) -> Tensor:
        goal = self.goal
        image = self.hooked.model(goal.latents)
        region = goal.region
        if image.ndim == region.ndim and image.ndim > 2:
            region = F.interpolate(region, size=image.shape[2:], mode="nearest")
        else:
            region = torch.ones_like(image[:, :1])
        if self.settings.loss == "mse":
            return masked_loss(image, self._target_image, region, "mse")
        d = self.image_distance(image, self._target_image)
        return (d * region).sum() / region.expand_as(d).sum().clamp_min(1e-12)

    def smooth_loss(self) -> Tensor:
        """L_smooth (Eq. 2): ℓ between the original and current generator on fresh latents,
        drawn from a stream of its own (never the selections' sample indices)."""
        g = torch.Generator().manual_seed(10_000_019 + self._smooth_seed)
        self._smooth_seed += 1
        latents = self.settings.latents
        shape = (self.settings.smooth_batch, *(latents.shape or (latents.dim,)))
        z = torch.randn(shape, generator=g).to(self.weight0.device)
        with torch.no_grad():
            before = self.frozen(z)
        return self.image_distance(self.hooked.model(z), before).mean()

    def losses(self) -> dict[str, Tensor]:
        constraint = self.constraint_loss()
        if self.settings.smooth_weight <= 0:
            return {"loss": constraint}
        smooth = self.smooth_loss()
        return {"loss": constraint + self.settings.smooth_weight * smooth, "constraint": constraint, "smooth": smooth}

    def changes(self) -> list[WeightChange]:
        before = {n: p.detach() for n, p in self.frozen.network.named_parameters()}
        return [WeightChange(name, before[name].clone(), edited=p.detach().clone())
                for name, p in self.hooked.model.named_parameters() if not torch.equal(p.detach(), before[name])]

    def base_generator(self) -> nn.Module:
        return copy.deepcopy(self.frozen.network).eval()

    def report(self) -> dict[str, float | str]:
        extra = f" + {self.settings.perceptual_weight} * {perceptual_name(self.perceptual)}" if self.perceptual else ""
        return {**super().report(), "image_distance": "l1" + extra}


#: The method each name of the vocabulary makes.
METHODS: dict[str, type[Method]] = dict(zip(vocabulary.METHODS, (RankS, FullLayer, AllWeights, Dissect)))


def make_method(name: str, hooked: HookedLayer, settings: Settings) -> Method:
    """The method called ``name`` for ``hooked``, or one error line naming the methods."""
    if name not in METHODS:
        raise RewriteError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
    method = METHODS[name](hooked, settings)
    method.solver = SOLVERS[method.solver_name()]()  # a solver that cannot run it fails here, before any work
    return method
