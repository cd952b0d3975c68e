"""Key statistics as a service: computed once, cached by everything that determines them,
rebuilt (and said so) when stale or unreadable; usable with no trainer."""

from __future__ import annotations

import logging

import pytest
import torch

from lightning_rewrite.engine.latents import LatentSampler
from lightning_rewrite.engine.layer import HookedLayer
from lightning_rewrite.engine.stats import KeyStatistics


@pytest.mark.bitwise
def test_key_statistics_are_cached_and_rebuilt_when_stale_or_unreadable(blocks, tmp_path, caplog):
    hooked, latents = HookedLayer(blocks, "layer3.0"), LatentSampler(16)
    stats = KeyStatistics(samples=30, cache_dir=tmp_path, progress=False)
    found = stats.get(hooked, latents)
    first = found.moment
    assert found.source == "computed" and found.path.parent == tmp_path
    files = list(tmp_path.glob("*.safetensors"))
    assert len(files) == 1 and not list(tmp_path.glob("*.tmp"))
    found = stats.get(hooked, latents)
    again = found.moment
    assert found.source == "cache" and torch.equal(again.sum, first.sum) and again.count == 30 * 256

    files[0].write_bytes(b"not a safetensors file")
    with caplog.at_level(logging.WARNING):
        found = stats.get(hooked, latents)
    assert found.source == "computed" and "unreadable" in caplog.text

    with torch.no_grad():
        blocks.layer2[0].weight.mul_(2)  # keys change, so the statistics must too
    caplog.clear()
    with caplog.at_level(logging.INFO):
        found = stats.get(HookedLayer(blocks, "layer3.0"), latents)
    changed = found.moment
    assert found.source == "computed" and not torch.allclose(changed.sum, first.sum)
    assert "made for other weights or settings" in caplog.text and "computed over 30 samples" in caplog.text
    assert len(list(tmp_path.glob("*.safetensors"))) == 2
