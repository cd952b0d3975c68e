"""The associative-memory math of Bau et al. (2020), Sect. 3 and Appendix D.

A layer's weight W is a linear memory mapping keys k (N) to values v (M): ``v = W k``.
Everything here is plain tensor math: no Lightning, no models. Keys are rows: a batch of
keys is an ``(n, N)`` tensor; a set of S directions is an ``(N, S)`` matrix.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

log = logging.getLogger(__name__)

#: Condition number above which C gets a ridge before it is factorised.
DEFAULT_MAX_CONDITION = 1e8


class SecondMoment:
    """Streaming uncentred second moment E[k kᵀ] of keys: each batch's products in ``products``
    precision (float32 by default, one product per sample over its locations; float64: rows and
    one float64 product per batch, bitwise as version 0.1), the running sum in float64.

    Only the running sum of outer products and the count are kept (memory O(N²)), so any
    number of keys can stream through; ``merge`` adds another accumulator's sums, which
    is what an all-reduce across processes does.
    """

    def __init__(self, dim: int | None = None, products: torch.dtype = torch.float32) -> None:
        self.count = 0
        self.products = products
        self.sum: Tensor | None = None if dim is None else torch.zeros(dim, dim, dtype=torch.float64)

    @property
    def dim(self) -> int | None:
        return None if self.sum is None else self.sum.shape[0]

    def update(self, keys: Tensor) -> None:
        """Add a batch of keys, shape ``(n, N)``."""
        if keys.ndim != 2:
            raise ValueError(f"keys must be a 2-D (n, N) tensor, got shape {tuple(keys.shape)}")
        k = self._cast(keys)
        self._ready(k.shape[1], k.device)
        if k.dtype == torch.float64:
            self.sum.addmm_(k.T, k)
        else:
            self.sum += k.T @ k
        self.count += k.shape[0]

    def update_maps(self, keys: Tensor) -> None:
        """Add a batch of key maps, shape ``(B, N, *spatial)``: in single precision one product
        per sample over its locations, so the keys are never copied into rows."""
        if keys.ndim < 2:
            raise ValueError(f"key maps must be (B, N, *spatial), got shape {tuple(keys.shape)}")
        k = self._cast(keys)
        if k.dtype == torch.float64:
            self.update(k.movedim(1, -1).reshape(-1, k.shape[1]))
            return
        k = k.flatten(2)
        self._ready(k.shape[1], k.device)
        self.sum += torch.bmm(k, k.transpose(1, 2)).sum(0)
        self.count += k.shape[0] * k.shape[2]

    def _cast(self, keys: Tensor) -> Tensor:
        """Keys in the products' precision (float64 keys stay float64; half precision is too coarse)."""
        return keys.detach().to(torch.promote_types(keys.dtype, self.products))

    def _ready(self, n: int, device: torch.device) -> None:
        if self.sum is None:
            self.sum = torch.zeros(n, n, dtype=torch.float64, device=device)
        elif self.sum.shape[0] != n:
            raise ValueError(f"keys have {n} channels, this moment has {self.sum.shape[0]}")
        if self.sum.device != device:
            self.sum = self.sum.to(device)

    def merge(self, other: "SecondMoment") -> "SecondMoment":
        """Add another accumulator's keys into this one (in place) and return self."""
        if other.sum is None:
            return self
        if self.sum is None:
            self.sum = other.sum.clone()
        else:
            if self.sum.shape != other.sum.shape:
                raise ValueError(f"cannot merge moments of dims {self.dim} and {other.dim}")
            self.sum = self.sum + other.sum.to(self.sum.device)
        self.count += other.count
        return self

    def moment(self) -> Tensor:
        """E[k kᵀ] as an (N, N) float64 tensor."""
        if self.sum is None or self.count == 0:
            raise ValueError("SecondMoment has seen no keys")
        return self.sum / self.count

    def state_dict(self) -> dict[str, Tensor]:
        if self.sum is None:
            raise ValueError("SecondMoment has seen no keys")
        return {"sum": self.sum.cpu(), "count": torch.tensor(self.count, dtype=torch.int64)}

    def load_state_dict(self, state: dict[str, Tensor]) -> "SecondMoment":
        self.sum = state["sum"].to(torch.float64).clone()
        self.count = int(state["count"])
        return self

    def to(self, device: torch.device | str) -> "SecondMoment":
        if self.sum is not None:
            self.sum = self.sum.to(device)
        return self


class CovarianceSolver:
    """Applies C⁻¹ (Cholesky solve) and C^-1/2 (ZCA) to keys, never forming C⁻¹.

    An ill-conditioned or singular C (dead channels are common in GANs) gets the smallest
    ridge ``C + ρI`` that brings its condition number to ``max_condition``; this is logged.
    """

    def __init__(self, c: Tensor, max_condition: float = DEFAULT_MAX_CONDITION) -> None:
        c = c.to(torch.float64)
        c = (c + c.T) / 2
        evals, evecs = torch.linalg.eigh(c)
        lo, hi = evals[0].item(), evals[-1].item()
        if hi <= 0:
            raise ValueError("the key second moment is zero: the layer's keys are all zero")
        self.condition = float("inf") if lo <= 0 else hi / lo
        self.ridge = 0.0
        if self.condition > max_condition:
            # smallest ρ with (hi + ρ) / (lo + ρ) = max_condition
            self.ridge = max(0.0, (hi - max_condition * lo) / (max_condition - 1))
            log.warning(
                "key second moment is ill-conditioned (condition %.3g, %d of %d eigenvalues ≤ %.1e·λmax); "
                "adding ridge %.3g to reach condition %.1g",
                self.condition, int((evals <= hi / max_condition).sum()), len(evals), 1 / max_condition,
                self.ridge, max_condition,
            )
        self.c = c + self.ridge * torch.eye(len(c), dtype=c.dtype, device=c.device)
        self.cholesky = torch.linalg.cholesky(self.c)
        shifted = evals + self.ridge
        self._inv_sqrt = (evecs * shifted.rsqrt()) @ evecs.T

    @property
    def dim(self) -> int:
        return self.c.shape[0]

    def solve(self, keys: Tensor) -> Tensor:
        """C⁻¹k for each key; ``keys`` is (N,) or (n, N)."""
        k = keys.to(self.c)
        out = torch.cholesky_solve(k.reshape(-1, self.dim).T, self.cholesky).T
        return out.reshape(k.shape)

    def whiten(self, keys: Tensor) -> Tensor:
        """C^-1/2 k for each key (ZCA whitening); ``keys`` is (N,) or (n, N)."""
        k = keys.to(self.c)
        return (k.reshape(-1, self.dim) @ self._inv_sqrt).reshape(k.shape)


def update_direction(solver: CovarianceSolver, key: Tensor) -> Tensor:
    """Eq. 16: the rank-one update direction d = C⁻¹k* (N,)."""
    return solver.solve(key.reshape(-1))


def context_directions(solver: CovarianceSolver, keys: Tensor, weights: Tensor, rank: int) -> Tensor:
    """Rank-S directions from mask-weighted context keys (Appendix D, ``key_method='zca'``).

    Whiten the weighted keys with C^-1/2, take the top S right singular vectors, map them
    back through C^-1/2 into the row space of W, orthonormalise (QR) and flip each sign to
    agree with the mean whitened key. Returns an (N, S) matrix with orthonormal columns.
    """
    keep = weights > 0
    if rank < 1:
        raise ValueError(f"rank must be ≥ 1, got {rank}")
    if int(keep.sum()) < rank:
        raise ValueError(f"rank {rank} needs at least {rank} selected context keys, got {int(keep.sum())}")
    if rank > solver.dim:
        raise ValueError(f"rank {rank} exceeds the key dimension {solver.dim}")
    zk = weights[keep].to(solver.c)[:, None] * solver.whiten(keys[keep])
    _, _, vh = torch.linalg.svd(zk, full_matrices=False)
    top = vh[:rank].T  # (N, S), whitened space
    row_dirs = solver.whiten(top.T).T  # back into row space: C^-1/2 applied a second time
    q, _ = torch.linalg.qr(row_dirs)
    signs = torch.sign(q.T @ zk.sum(0))
    signs[signs == 0] = 1
    return q * signs


def orthonormal(directions: Tensor) -> Tensor:
    """An orthonormal basis (N, S) of the span of ``directions`` (N,) or (N, S)."""
    d = directions.reshape(directions.shape[0], -1).to(torch.float64)
    q, _ = torch.linalg.qr(d)
    return q


def insert_one(w0: Tensor, solver: CovarianceSolver, key: Tensor, value: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Eq. 15: W1 = W0 + Λ dᵀ with d = C⁻¹k* and Λ = (v* − W0 k*) / (dᵀk*).

    ``w0`` is the (M, N) memory; returns (W1, Λ (M,), d (N,)). W1 stores v* at k* exactly
    and, of all such matrices, keeps the least squares error on the keys behind C.
    """
    w = w0.to(torch.float64)
    k = key.reshape(-1).to(w)
    d = update_direction(solver, k)
    lam = (value.reshape(-1).to(w) - w @ k) / (d @ k)
    return w + torch.outer(lam, d), lam, d


def insert_rank(w0: Tensor, directions: Tensor, keys: Tensor, values: Tensor) -> Tensor:
    """Rank-S closed form: Λ = argmin ‖V* − (W0 + Λ Dᵀ) K*‖ (least squares).

    ``w0`` (M, N), ``directions`` D (N, S), ``keys`` K* as rows (n, N), ``values`` V* as
    rows (n, M). Returns Λ (M, S).
    """
    w = w0.to(torch.float64)
    k = keys.to(w)
    residual = values.to(w) - k @ w.T  # (n, M)
    a = k @ directions.to(w)  # (n, S)
    return torch.linalg.lstsq(a, residual).solution.T


def as_memory(weight: Tensor, key_axis: int) -> Tensor:
    """A weight tensor viewed as the (M, N) memory whose N is the key (input-channel) axis.

    A Conv2d weight (out, in, kh, kw) with ``key_axis=1`` becomes (out·kh·kw) × in.
    """
    moved = weight.movedim(key_axis, -1)
    return moved.reshape(-1, moved.shape[-1])


def from_memory(memory: Tensor, shape: torch.Size | tuple[int, ...], key_axis: int) -> Tensor:
    """Inverse of :func:`as_memory`: the (M, N) memory back in the weight's own shape."""
    moved_shape = list(shape)
    n = moved_shape.pop(key_axis)
    return memory.reshape(*moved_shape, n).movedim(-1, key_axis)


def low_rank_weight(w0: Tensor, lam: Tensor, directions: Tensor, key_axis: int) -> Tensor:
    """W0 + Λ Dᵀ, with Λ (M, S) and D (N, S), in the weight's own shape."""
    delta = lam @ directions.to(lam).T
    return w0 + from_memory(delta, w0.shape, key_axis).to(w0)


def change_directions(weight: Tensor, w0: Tensor, rank: int, key_axis: int) -> Tensor:
    """D (N, S): the top right singular vectors of the memory change W − W0, so that
    projecting onto span(D) keeps the change's best rank-S approximation (Eckart–Young)."""
    delta = as_memory((weight - w0).to(torch.float64), key_axis)
    _, _, vh = torch.linalg.svd(delta, full_matrices=False)
    return vh[:rank].T.to(weight.dtype)


def project_weight(weight: Tensor, w0: Tensor, directions: Tensor, key_axis: int) -> Tensor:
    """W0 + (W − W0) P_D: the nearest weight (Frobenius) whose change lies in span(D).

    Works for any weight layout: the projection acts on ``key_axis``. ``directions`` need
    not be orthonormal.
    """
    q = orthonormal(directions).to(weight)
    delta = (weight - w0).movedim(key_axis, -1)
    projected = (delta @ q) @ q.T
    return w0 + projected.movedim(-1, key_axis)


@dataclass
class LeastSquaresResult:
    solution: Tensor
    iterations: int
    relative_residual: float


def least_squares_cg(
    apply: Callable[[Tensor], Tensor],
    apply_t: Callable[[Tensor], Tensor],
    target: Tensor,
    x0: Tensor,
    iterations: int = 50,
    tol: float = 1e-6,
) -> LeastSquaresResult:
    """argmin_x ‖A x − b‖² by conjugate gradients on the normal equations (CGLS).

    ``apply`` is x ↦ A x and ``apply_t`` is r ↦ Aᵀ r, so A is never formed; used to solve
    the closed-form insert through a layer's own (linear) operation, e.g. a convolution.
    """
    x = x0.clone()
    r = target - apply(x)
    s = apply_t(r)
    p = s.clone()
    gamma = (s * s).sum()
    s0_norm = gamma.sqrt().clamp_min(1e-30)
    b_norm = target.norm().clamp_min(1e-30)
    it = 0
    for it in range(1, iterations + 1):
        q = apply(p)
        qq = (q * q).sum()
        if qq <= 0:
            break
        alpha = gamma / qq
        x = x + alpha * p
        r = r - alpha * q
        if r.norm() / b_norm < tol:
            break
        s = apply_t(r)
        gamma_new = (s * s).sum()
        if gamma_new.sqrt() <= tol * s0_norm:  # normal equations solved: the least-squares optimum
            break
        p = s + (gamma_new / gamma) * p
        gamma = gamma_new
    return LeastSquaresResult(x, it, float(r.norm() / b_norm))
