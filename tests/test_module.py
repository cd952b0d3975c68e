"""RewriteModule end to end, with the KeyCovariance and ProjectedOptimizer callbacks."""

from __future__ import annotations


import pytest
import torch
import torch.nn.functional as F

from conftest import quiet_trainer
from lightning_rewrite.models.blocks import domes_to_trees
from lightning_rewrite import LatentSampler, RewriteError, RewriteModule
from lightning_rewrite.engine import memory
from lightning_rewrite.callbacks import KeyCovariance, ProjectedOptimizer


def _fit(module: RewriteModule, steps: int, **kwargs) -> RewriteModule:
    callbacks = [KeyCovariance(samples=200, progress=False)] + kwargs.pop("callbacks", [])
    quiet_trainer(steps, callbacks, **kwargs).fit(module)
    return module


def _goal_error(module: RewriteModule) -> float:
    goal = module.goal
    with torch.no_grad():
        v = module.hooked.layer_forward(goal.inputs)
    return float(((v - goal.target) * goal.region).norm() / (goal.target * goal.region).norm())


def _held_out_change(module: RewriteModule, z: torch.Tensor, matched: torch.Tensor) -> float:
    """Mean per-location change of the layer's values, outside the matched locations."""
    with torch.no_grad():
        change = (module.hooked.values(z) - module.hooked.values(z, module.method.weight0)).norm(dim=1)
    return float(change[~matched].mean())


@pytest.mark.slow
def test_rank_one_edit_reaches_the_goal_and_changes_less_than_full_layer(blocks, capsys):
    request = domes_to_trees(blocks)
    rank1 = _fit(RewriteModule(blocks, "layer3.0", request, method="rank_s", rank=1), 300)
    cold = _fit(RewriteModule(blocks, "layer3.0", request, method="rank_s", rank=1, warm_start=False, solver="adam"), 500)
    full = _fit(RewriteModule(blocks, "layer3.0", request, method="full_layer", lr=0.01, solver="adam"), 500)
    unedited = float(((rank1.hooked.layer_forward(rank1.goal.inputs, rank1.method.weight0) - rank1.goal.target)
                      * rank1.goal.region).norm() / (rank1.goal.target * rank1.goal.region).norm())

    # Locations whose keys match k*: the top 10% of |dᵀk| over 200 held-out latents, and
    # their 3×3 neighbourhoods (a 3×3 convolution spreads each key over them).
    z = LatentSampler(16, seed=2).take(range(200))
    d = rank1.directions[:, 0]
    with torch.no_grad():
        score = (rank1.hooked.keys(z) * d[None, :, None, None]).sum(1).abs()
    matched = score >= score.flatten().quantile(0.9)
    matched = F.max_pool2d(matched.float()[:, None], 3, 1, 1)[:, 0].bool()
    rank1_change, full_change = _held_out_change(rank1, z, matched), _held_out_change(full, z, matched)

    with capsys.disabled():
        print(f"\n  goal error: unedited {unedited:.3f}, rank_s {_goal_error(rank1):.4f} "
              f"(no warm start {_goal_error(cold):.4f}), full_layer {_goal_error(full):.4f}")
        print(f"  held-out change outside matched keys: rank_s {rank1_change:.4f}, full_layer {full_change:.4f}")
    assert _goal_error(rank1) <= 0.05
    assert _goal_error(cold) <= 0.05
    assert rank1_change < full_change

    (change,) = rank1.changes()
    assert change.directions.shape == (32, 1) and change.lam.shape == (32 * 9, 1)
    assert torch.allclose(change.new_weight(rank1.method.weight0), rank1.edited_generator().get_parameter("layer3.0.weight"))
    assert not torch.equal(blocks.layer3[0].weight, rank1.generator.layer3[0].weight)  # the user's model is untouched


@pytest.mark.slow
def test_lbfgs_ends_below_the_official_schedule_in_tens_of_steps_and_stops_by_itself(blocks):
    """The default solver against the 2020 code's schedule (W, Adam 0.05 constant, projected
    every 10, from W0) on the same goal: a lower loss, and a stop long before the step budget."""
    request = domes_to_trees(blocks)
    official = _fit(RewriteModule(blocks, "layer3.0", request, solver="adam", parametrization="projected",
                                  warm_start=False, lr=0.05, lr_schedule="constant"), 1000)
    fast = RewriteModule(blocks, "layer3.0", request)
    trainer = quiet_trainer(400, [KeyCovariance(samples=200, progress=False)])
    trainer.fit(fast)
    assert fast.method.solver_name() == "lbfgs" and trainer.global_step < 200  # of 400 allowed
    assert fast.method.report()["constraint_loss"] <= official.method.report()["constraint_loss"]


@pytest.mark.bitwise
@pytest.mark.parametrize("steps", [1, 7, 20])
@pytest.mark.slow
def test_projected_optimizer_keeps_the_change_in_span_of_d(blocks, steps):
    request = domes_to_trees(blocks)
    module = RewriteModule(blocks, "layer3.0", request, method="rank_s", rank=2, parametrization="projected",
                           warm_start=False, lr=0.01)
    _fit(module, steps, callbacks=[ProjectedOptimizer(every=3)])
    delta = memory.as_memory(module.hooked.weight.detach() - module.method.weight0, module.hooked.key_axis)
    d = module.directions
    assert delta.norm() > 0
    assert float((delta - delta @ d @ d.T).norm() / delta.norm()) <= 1e-6
    assert torch.linalg.matrix_rank(delta.double(), rtol=1e-5).item() <= 2
    (factored,) = module.changes()  # what the edit file holds: applied to W0, bitwise the fitted weight
    assert torch.equal(factored.new_weight(module.method.weight0), module.hooked.weight)


@pytest.mark.slow
def test_projected_parametrization_adds_its_projector_and_lambda_needs_none(blocks):
    request = domes_to_trees(blocks)
    module = RewriteModule(blocks, "layer3.0", request, parametrization="projected", warm_start=False)
    trainer = quiet_trainer(2, [KeyCovariance(samples=50, progress=False)])
    trainer.fit(module)
    assert sum(isinstance(c, ProjectedOptimizer) for c in trainer.callbacks) == 1
    lam = RewriteModule(blocks, "layer3.0", request)
    trainer = quiet_trainer(1)
    trainer.fit(lam)
    assert not any(isinstance(c, ProjectedOptimizer) for c in trainer.callbacks)
    assert sum(isinstance(c, KeyCovariance) for c in trainer.callbacks) == 1  # added with its defaults


@pytest.mark.slow
def test_all_weights_baseline_trains_every_weight(blocks):
    request = domes_to_trees(blocks)
    module = RewriteModule(blocks, "layer3.0", request, method="all_weights", lr=0.01)
    quiet_trainer(1).fit(module)
    start = float(module.method.constraint_loss().detach())
    quiet_trainer(40).fit(module)
    assert float(module.method.constraint_loss().detach()) < 0.7 * start
    assert not torch.equal(module.generator.layer4[0].weight, blocks.layer4[0].weight)


def test_bad_settings_are_one_line_errors(blocks):
    request = domes_to_trees(blocks)
    with pytest.raises(RewriteError, match="unknown method 'rank1'; choose one of rank_s, full_layer, all_weights"):
        RewriteModule(blocks, "layer3.0", request, method="rank1")
    with pytest.raises(RewriteError, match="rank must be an integer ≥ 1"):
        RewriteModule(blocks, "layer3.0", request, rank=0)
    with pytest.raises(RewriteError, match="rank 40 exceeds the key dimension 32"):
        RewriteModule(blocks, "layer3.0", request, rank=40)
    with pytest.raises(RewriteError, match="needs key statistics"):
        RewriteModule(blocks, "layer3.0", request).prepare()
    with pytest.raises(RewriteError, match="all_weights draws fresh latents every step: use solver adam"):
        RewriteModule(blocks, "layer3.0", request, method="all_weights", solver="lbfgs")
    with pytest.raises(RewriteError, match="unknown setting.s. rnak; valid: rank, "):
        RewriteModule(blocks, "layer3.0", request, rnak=2)


def test_warm_start_is_the_closed_form_rank_s_insert_for_a_linear_layer():
    from lightning_rewrite import EditRequest, SecondMoment

    torch.manual_seed(0)
    generator = torch.nn.Sequential(torch.nn.Linear(16, 24, bias=False))
    request = EditRequest.paired([(0, 1, torch.ones(4, 4)), (2, 3, torch.ones(4, 4))])
    module = RewriteModule(generator, "0", request, rank=2, latents=LatentSampler(16), solver="adam")
    moment = SecondMoment()
    moment.update(LatentSampler(16, seed=5).take(range(3000)))
    module.set_key_moment(moment)
    module.prepare()
    goal = module.goal
    keys = goal.inputs.args[0]
    lam = memory.insert_rank(module.method.weight0, module.directions, keys, goal.target)
    assert torch.allclose(module.changes()[0].lam.double(), lam, rtol=1e-4, atol=1e-5)
