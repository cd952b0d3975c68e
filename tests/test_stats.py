"""Key statistics as a service: computed once, cached by everything that determines them,
rebuilt (and said so) when stale or unreadable; usable with no trainer."""

from __future__ import annotations

import json
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


def _data_offset(path) -> int:
    """Where a safetensors file's tensor bytes start (after its 8-byte length and JSON header)."""
    return 8 + int.from_bytes(path.read_bytes()[:8], "little")


@pytest.mark.bitwise
def test_a_damaged_cache_is_detected_rebuilt_and_gives_the_clean_statistics(blocks, tmp_path, caplog):
    """Flipped bytes in the tensors, or a tensor rewritten with the file's metadata kept (a
    sign-flipped diagonal), fail the checksum the file records: rebuilt, never used."""
    hooked, latents = HookedLayer(blocks, "layer3.0"), LatentSampler(16)
    stats = KeyStatistics(samples=30, cache_dir=tmp_path, progress=False)
    clean = stats.get(hooked, latents).moment
    (path,) = tmp_path.glob("*.safetensors")
    data = bytearray(path.read_bytes())
    start = _data_offset(path)
    for k in range(start, len(data) - 8, 37):  # about 200 bytes of the sum's float64s
        data[k] ^= 0x5A
    path.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING):
        found = stats.get(hooked, latents)
    assert found.source == "computed" and "does not match its checksum" in caplog.text
    assert torch.equal(found.moment.sum, clean.sum) and found.moment.count == clean.count
    assert stats.get(hooked, latents).source == "cache"  # the rebuilt file reads back

    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), "pt") as f:
        meta, state = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    state["sum"].diagonal().neg_()
    save_file(state, str(path), metadata=meta)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert stats.get(hooked, latents).source == "computed"
    assert "does not match its checksum" in caplog.text


@pytest.mark.slow
def test_fit_on_a_damaged_cache_makes_the_edit_a_clean_cache_makes(tmp_path):
    from safetensors.torch import load_file

    from lightning_rewrite.app.cli import main

    fast = ["fit", "recipe=domes_to_trees", "trainer.max_steps=5", "stats.samples=50", "progress=false", "logger=none"]
    assert main([*fast, f"out={tmp_path / 'clean'}"]) == 0
    (path,) = (tmp_path / "cache").rglob("*.safetensors")
    data = bytearray(path.read_bytes())
    for k in range(_data_offset(path), len(data) - 8, 1001):
        data[k] ^= 0xFF
    path.write_bytes(bytes(data))
    assert main([*fast, f"out={tmp_path / 'again'}"]) == 0
    assert json.loads((tmp_path / "again" / "metrics.json").read_text())["stats_source"] == "computed"
    clean, again = (load_file(tmp_path / d / "edit.safetensors") for d in ("clean", "again"))
    assert all(torch.equal(clean[k], again[k]) for k in clean)
