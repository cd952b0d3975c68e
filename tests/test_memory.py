"""The associative-memory math against independent solutions, in float64."""

from __future__ import annotations

import logging

import pytest
import torch

from lightning_rewrite.engine import memory
from lightning_rewrite.engine.memory import CovarianceSolver, SecondMoment


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.fixture
def linear_memory():
    """A random linear memory: 5,000 correlated keys of dimension 64 and their values."""
    g = torch.Generator().manual_seed(0)
    n_dim, m_dim, n = 64, 48, 5000
    mix = torch.randn(n_dim, n_dim, generator=g, dtype=torch.float64)
    keys = mix @ torch.randn(n_dim, n, generator=g, dtype=torch.float64)  # K: (N, n)
    values = torch.randn(m_dim, n_dim, generator=g, dtype=torch.float64) @ keys
    values += 0.1 * torch.randn(values.shape, generator=g, dtype=torch.float64)
    w0 = torch.linalg.solve(keys @ keys.T, keys @ values.T).T  # normal equations, Eq. 9
    k_star = torch.randn(n_dim, generator=g, dtype=torch.float64)
    v_star = torch.randn(m_dim, generator=g, dtype=torch.float64) * 10
    return keys, values, w0, k_star, v_star


def test_one_key_insert_equals_the_constrained_least_squares_solution(linear_memory):
    keys, values, w0, k_star, v_star = linear_memory
    solver = CovarianceSolver(keys @ keys.T / keys.shape[1])
    w1, lam, d = memory.insert_one(w0, solver, k_star, v_star)

    # Eq. 12-13 solved independently: the KKT system of min ||V - WK||² s.t. W k* = v*.
    n = keys.shape[0]
    kkt = torch.zeros(n + 1, n + 1, dtype=torch.float64)
    kkt[:n, :n] = 2 * keys @ keys.T
    kkt[:n, n] = k_star
    kkt[n, :n] = k_star
    rhs = torch.cat([2 * keys @ values.T, v_star[None]], 0)
    w_kkt = torch.linalg.solve(kkt, rhs)[:n].T

    assert _rel(w1, w_kkt) <= 1e-8
    assert _rel(w1 @ k_star, v_star) <= 1e-8
    # The update is rank one along d = C⁻¹k*.
    assert torch.linalg.matrix_rank(w1 - w0).item() == 1

    # No other feasible update has a lower total error.
    best = (values - w1 @ keys).pow(2).sum()
    g = torch.Generator().manual_seed(1)
    null = torch.eye(n, dtype=torch.float64) - torch.outer(k_star, k_star) / k_star.dot(k_star)
    for scale in (1e-4, 1e-2, 1.0):
        for _ in range(20):
            e = scale * torch.randn(w1.shape, generator=g, dtype=torch.float64) @ null
            assert (e @ k_star).abs().max() < 1e-9  # still satisfies W k* = v*
            assert (values - (w1 + e) @ keys).pow(2).sum() > best


def test_rank_s_least_squares_reduces_to_eq15_for_one_key(linear_memory):
    keys, _, w0, k_star, v_star = linear_memory
    solver = CovarianceSolver(keys @ keys.T / keys.shape[1])
    w1, _, d = memory.insert_one(w0, solver, k_star, v_star)
    d_unit = memory.orthonormal(d)
    lam = memory.insert_rank(w0, d_unit, k_star[None], v_star[None])
    assert lam.shape == (w0.shape[0], 1)
    assert _rel(w0 + lam @ d_unit.T, w1) <= 1e-8


def test_second_moment_streams_uneven_batches_and_merges():
    g = torch.Generator().manual_seed(2)
    keys = torch.randn(4321, 24, generator=g, dtype=torch.float64) + 0.5
    sizes = torch.randint(1, 230, (36,), generator=g).tolist()
    sizes.append(len(keys) - sum(sizes))
    assert len(sizes) == 37 and sizes[-1] > 0
    whole = keys.T @ keys / len(keys)
    exact = SecondMoment()
    for chunk in torch.split(keys, sizes):
        exact.update(chunk)
    assert _rel(exact.moment(), whole) <= 1e-12
    assert exact.count == len(keys)
    single = SecondMoment()
    for chunk in torch.split(keys.float(), sizes):  # float32 products, a float64 running sum
        single.update(chunk)
    assert single.sum.dtype == torch.float64
    assert _rel(single.moment(), whole) <= 1e-6

    a, b = SecondMoment(), SecondMoment()
    a.update(keys[:2000])
    b.update(keys[2000:])
    assert _rel(a.merge(b).moment(), whole) <= 1e-12

    maps = SecondMoment()  # (B, N, H, W) maps of the same keys, one float32 product per sample
    for chunk in torch.split(keys[:4320].float().reshape(30, 12, 12, 24), 7):
        maps.update_maps(chunk.movedim(-1, 1))
    assert maps.count == 4320 and _rel(maps.moment(), keys[:4320].T @ keys[:4320] / 4320) <= 1e-6

    restored = SecondMoment().load_state_dict(exact.state_dict())
    assert torch.equal(restored.moment(), exact.moment())
    with pytest.raises(ValueError, match="channels"):
        exact.update(torch.zeros(3, 5))


def test_singular_moment_gives_finite_directions_and_a_warning(caplog):
    g = torch.Generator().manual_seed(3)
    keys = torch.randn(2000, 16, generator=g, dtype=torch.float64)
    keys[:, 5] = 0  # a dead channel
    moment = SecondMoment()
    moment.update(keys)
    with caplog.at_level(logging.WARNING, logger="lightning_rewrite.engine.memory"):
        solver = CovarianceSolver(moment.moment())
    assert solver.condition == float("inf") or solver.condition > 1e8
    assert solver.ridge > 0
    assert any("ill-conditioned" in r.message for r in caplog.records)
    k_star = keys[:10].mean(0)
    d = memory.update_direction(solver, k_star)
    directions = memory.context_directions(solver, keys[:50], torch.ones(50), rank=3)
    assert torch.isfinite(d).all() and torch.isfinite(directions).all()
    assert torch.allclose(directions.T @ directions, torch.eye(3, dtype=torch.float64), atol=1e-10)


def test_context_directions_agree_in_sign_with_the_mean_key():
    g = torch.Generator().manual_seed(4)
    keys = torch.randn(3000, 12, generator=g, dtype=torch.float64)
    solver = CovarianceSolver(keys.T @ keys / len(keys))
    context = keys[:40] + 3.0 * torch.ones(12, dtype=torch.float64)
    d = memory.context_directions(solver, context, torch.ones(40), rank=1)[:, 0]
    assert (solver.whiten(context).sum(0) @ d) > 0
    # For one context key, the rank-1 direction is C⁻¹k normalised (Eq. 16).
    one = memory.context_directions(solver, context[:1], torch.ones(1), rank=1)[:, 0]
    expected = memory.update_direction(solver, context[0])
    assert _rel(one, expected / expected.norm()) <= 1e-10


@pytest.mark.parametrize("shape,key_axis", [((20, 12), 1), ((20, 12, 3, 3), 1), ((12, 20, 4, 4), 0), ((1, 20, 12, 3, 3), 2)])
def test_projection_onto_the_directions_for_linear_and_conv_weights(shape, key_axis):
    g = torch.Generator().manual_seed(5)
    w0 = torch.randn(shape, generator=g, dtype=torch.float64)
    w = w0 + torch.randn(shape, generator=g, dtype=torch.float64)
    n = shape[key_axis]
    directions = torch.randn(n, 2, generator=g, dtype=torch.float64)
    p = memory.project_weight(w, w0, directions, key_axis)
    delta = memory.as_memory(p - w0, key_axis)
    assert delta.shape == (w0.numel() // n, n)
    q = memory.orthonormal(directions)
    outside = delta - delta @ q @ q.T
    assert outside.norm() / delta.norm() <= 1e-10
    assert torch.linalg.matrix_rank(delta).item() <= 2
    # Projection is idempotent and the memory view round-trips.
    assert _rel(memory.project_weight(p, w0, directions, key_axis), p) <= 1e-12
    assert torch.equal(memory.from_memory(memory.as_memory(w, key_axis), w.shape, key_axis), w)


def test_conv_weight_memory_maps_one_key_to_its_output_pattern():
    conv = torch.nn.Conv2d(5, 7, 3, padding=1, bias=False).double()
    key = torch.randn(5, dtype=torch.float64)
    x = torch.zeros(1, 5, 5, 5, dtype=torch.float64)
    x[0, :, 2, 2] = key  # one key alone at the centre
    out = conv(x)[0, :, 1:4, 1:4]  # its 3×3 output pattern
    mem = memory.as_memory(conv.weight, 1)  # (7·3·3) × 5
    pattern = (mem @ key).reshape(7, 3, 3).flip(1, 2)  # convolution is correlation: taps reversed
    assert torch.allclose(out, pattern, atol=1e-12)


def test_least_squares_cg_matches_a_direct_solve():
    g = torch.Generator().manual_seed(6)
    a = torch.randn(80, 20, generator=g, dtype=torch.float64)
    b = torch.randn(80, generator=g, dtype=torch.float64)
    res = memory.least_squares_cg(lambda x: a @ x, lambda r: a.T @ r, b, torch.zeros(20, dtype=torch.float64),
                                  iterations=200, tol=1e-14)
    direct = torch.linalg.lstsq(a, b[:, None]).solution[:, 0]
    assert _rel(res.solution, direct) <= 1e-8


def test_change_directions_keep_the_best_low_rank_part_of_a_conv_change():
    """The svd parametrization's projection: onto span(D) from the change's own SVD, a planted
    rank-1 change comes back exactly and a noisy one loses only its smaller singular values."""
    g = torch.Generator().manual_seed(4)
    w0 = torch.randn(8, 6, 3, 3, generator=g, dtype=torch.float64)
    lam, d = torch.randn(8 * 9, 1, generator=g, dtype=torch.float64), torch.randn(6, 1, generator=g, dtype=torch.float64)
    planted = memory.low_rank_weight(w0, lam, d, key_axis=1)
    found = memory.change_directions(planted, w0, 1, key_axis=1)
    assert torch.allclose(memory.project_weight(planted, w0, found, 1), planted, atol=1e-10)
    noisy = planted + 1e-3 * torch.randn(w0.shape, generator=g, dtype=torch.float64)
    kept = memory.project_weight(noisy, w0, memory.change_directions(noisy, w0, 1, key_axis=1), 1)
    assert torch.linalg.matrix_rank(memory.as_memory(kept - w0, 1)) == 1
    assert (kept - planted).norm() < (noisy - planted).norm()
