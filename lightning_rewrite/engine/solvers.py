"""How an edit's trainable tensors move: the optimiser, its schedule, and when to stop.

- ``lbfgs`` (:class:`LBFGS`): quasi-Newton steps with a strong-Wolfe line search, several
  iterations per step, stopped when a step no longer lowers the loss (relative change below
  ``tolerance``). For deterministic objectives of a few thousand unknowns (Λ is M×S) it reaches
  in tens of iterations what Adam reaches in thousands.
- ``adam`` (:class:`Adam`): the official optimiser, a fixed number of steps, with a cosine decay
  of the rate unless the schedule is ``constant``. The only choice for an objective that is
  stochastic (all_weights' L_smooth on fresh latents) or projected between steps.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from .. import vocabulary


class Solver:
    """The optimiser an edit runs, and whether it stops before the step budget."""

    stops: ClassVar[bool] = False
    warm_starts: ClassVar[bool] = True  # whether a closed-form start pays (L-BFGS's first iterations make one)

    def optimizer(self, params: list[nn.Parameter], lr: float) -> torch.optim.Optimizer:
        raise NotImplementedError

    def schedule(self, optimizer: torch.optim.Optimizer, steps: int, kind: str) -> Any:
        """A per-step learning-rate scheduler, or None."""
        return None

    def converged(self, previous: float | None, current: float) -> bool:
        """Whether the last step ended the optimisation."""
        return False

    def describe(self) -> dict[str, Any]:
        """The solver's settings, for the edit file's spec."""
        return {}


class Adam(Solver):
    def optimizer(self, params: list[nn.Parameter], lr: float) -> torch.optim.Optimizer:
        return torch.optim.Adam(params, lr=lr)

    def schedule(self, optimizer: torch.optim.Optimizer, steps: int, kind: str) -> Any:
        if kind == "constant" or steps is None or steps <= 0:
            return None
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)


class LBFGS(Solver):
    stops = True
    warm_starts = False  # measured: from Λ = 0 it ends as low as from the closed form, 0.6 s sooner (churches);
    # where its first line search stalls (Λ must be large: layer9 rank 2), the method restarts from the closed form

    # tolerance 1e-2 (a step of 20 iterations that gains less than 1% ends the edit), chosen on validation
    # samples 2000-2499 against 1e-3 and 3e-2: less change outside the region in every recipe (-3% to -16%
    # masked L1) and efficacy within 0.015 of 1e-3's in each (3e-2: smile -0.018), in a third of the evaluations
    def __init__(self, iterations: int = 20, history: int = 20, tolerance: float = 1e-2) -> None:
        self.iterations, self.history, self.tolerance = iterations, history, tolerance

    def optimizer(self, params: list[nn.Parameter], lr: float) -> torch.optim.Optimizer:
        return torch.optim.LBFGS(params, lr=lr, max_iter=self.iterations, history_size=self.history,
                                 line_search_fn="strong_wolfe", tolerance_grad=1e-12, tolerance_change=1e-14)

    def converged(self, previous: float | None, current: float) -> bool:
        return previous is not None and previous - current <= self.tolerance * max(abs(current), 1e-12)

    def describe(self) -> dict[str, Any]:
        return {"iterations_per_step": self.iterations, "history": self.history, "tolerance": self.tolerance}


#: The solver each name of the vocabulary makes ("auto" and "official" resolve to one of these).
SOLVERS: dict[str, type[Solver]] = {"lbfgs": LBFGS, "adam": Adam}
assert set(SOLVERS) <= set(vocabulary.SOLVERS)

