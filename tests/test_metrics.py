"""The metrics of an edit, on hand-made inputs with known answers, and their reduction across
processes (states add up to the single-process result)."""

from __future__ import annotations

import pytest
import torch
import torchvision

from lightning_rewrite import RewriteError
from lightning_rewrite.metrics import ClassifierRate, MaskedL1, MaskedLPIPS, RegionEfficacy, RuleCorrelation, WatermarkRate


def test_region_efficacy_counts_source_pixels_that_became_target():
    before = torch.zeros(2, 8, 8, dtype=torch.long)
    before[0, :2, :4] = 5  # 8 dome pixels
    before[1, :1, :4] = 5  # 4 more
    after = before.clone()
    after[0, :2, :3] = 7  # 6 of them became tree
    after[1, 0, 0] = 7  # and 1
    m = RegionEfficacy(source=5, target=7)
    m.update(before, after)
    assert m.compute().item() == pytest.approx(7 / 12)
    assert RegionEfficacy(5, 7).compute().isnan()  # no source pixels: undefined, not zero


def test_masked_l1_ignores_the_region_and_its_margin():
    before = torch.zeros(1, 3, 16, 16)
    region = torch.zeros(1, 16, 16, dtype=torch.bool)
    region[0, 4:8, 4:8] = True
    inside = before.clone()
    inside[..., 3:9, 3:9] = 1.0  # changes only within the region grown by 1 pixel
    m = MaskedL1(dilate=1)
    m.update(before, inside, region)
    assert m.compute().item() == 0
    outside = before.clone()
    outside[..., 12:, :] = 0.5  # 64 of the 256 - 36 pixels outside change by 0.5
    m.reset()
    m.update(before, outside, region)
    assert m.compute().item() == pytest.approx(0.5 * 64 / 220)


def test_masked_lpips_names_the_missing_backbone(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(RewriteError, match=r"hub/checkpoints/alexnet-owt-7be5be79.pth"):
        MaskedLPIPS()


def test_masked_lpips_runs_on_a_backbone_placed_in_torch_home(tmp_path, monkeypatch):
    """A placeholder backbone (random AlexNet in torchvision's file name) stands in for the real one."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(torchvision.models.alexnet().state_dict(), tmp_path / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth")
    g = torch.Generator().manual_seed(0)
    before = torch.rand(2, 3, 64, 64, generator=g) * 2 - 1
    region = torch.zeros(2, 64, 64, dtype=torch.bool)
    region[:, 16:48, 16:48] = True
    m = MaskedLPIPS()
    m.update(before, before, region)
    assert m.compute().item() == pytest.approx(0, abs=1e-6)
    far = before.clone()
    far[..., :, :8] = -before[..., :, :8]  # a change outside the region
    m.reset()
    m.update(before, far, region)
    assert m.compute().item() > 0


def test_classifier_and_watermark_rates():
    rate = ClassifierRate()
    rate.update(torch.tensor([True, False, True, True]))
    assert rate.compute().item() == 0.75
    labels = torch.zeros(4, 64, 64, dtype=torch.long)
    labels[0, 30:33, 20:40] = 8  # centre: 60 pixels
    labels[1, 56:60, 10:50] = 8  # bottom band
    labels[2, 30:33, 20:40] = 8
    labels[2, 56:60, 10:50] = 8  # both
    labels[3, 5:8, 5:8] = 8  # 9 pixels near the top: neither zone
    wm = WatermarkRate(watermark=8)
    wm.update(labels)
    assert {k: v.item() for k, v in wm.compute().items()} == {"center": 0.5, "bottom": 0.5, "any": 0.75}


def test_rule_correlation_is_pearson_and_an_inverted_rule_flips_it():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(500, generator=g)
    y = 0.8 * x + 0.1 * torch.randn(500, generator=g)
    m = RuleCorrelation()
    m.update(x[:200], y[:200])
    m.update(x[200:], y[200:])
    assert m.compute().item() == pytest.approx(torch.corrcoef(torch.stack([x, y]))[0, 1].item(), abs=1e-5)
    flipped = RuleCorrelation()
    flipped.update(x, -y)
    assert flipped.compute().item() == pytest.approx(-m.compute().item(), abs=1e-6)


def test_rule_correlation_within_pairs_sees_the_rule_that_scene_differences_hide():
    """Pairs of one scene without/with the cause: only the change within each pair counts, so a
    rule holds (+1) even where the scenes' own levels anti-correlate, and an inverted one gives -1."""
    base_cause = torch.arange(50.0)
    base_effect = -3 * base_cause  # across scenes: cause and effect anti-correlate
    cause = torch.stack([base_cause, base_cause + 1], 1)
    effect = torch.stack([base_effect, base_effect + torch.linspace(0.5, 2, 50)], 1)
    assert torch.corrcoef(torch.stack([cause.flatten(), effect.flatten()]))[0, 1] < -0.9
    m = RuleCorrelation()
    m.update(cause, effect)
    assert m.compute().item() > 0.9
    inverted = RuleCorrelation()
    inverted.update(cause, torch.stack([base_effect, base_effect - 1], 1))
    assert inverted.compute().item() == pytest.approx(-1, abs=1e-6)
    skipped = RuleCorrelation()
    skipped.update(torch.tensor([[0.0, 1.0], [float("nan"), 1.0]]), torch.tensor([[0.0, 1.0], [5.0, -9.0]]))
    assert skipped.n.item() == 2 and skipped.compute().item() == pytest.approx(1)


def test_states_reduce_across_processes_to_the_single_process_value():
    """What DDP's sum reduction does: two shards' states added give the whole-data result."""
    g = torch.Generator().manual_seed(2)
    before = torch.randint(0, 3, (6, 8, 8), generator=g)
    after = torch.randint(0, 3, (6, 8, 8), generator=g)
    whole, a, b = RegionEfficacy(1, 2), RegionEfficacy(1, 2), RegionEfficacy(1, 2)
    whole.update(before, after)
    a.update(before[:2], after[:2])
    b.update(before[2:], after[2:])
    a.hits, a.total = a.hits + b.hits, a.total + b.total
    assert a.compute().item() == pytest.approx(whole.compute().item())
