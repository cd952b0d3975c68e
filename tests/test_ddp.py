"""KeyCovariance across two CPU processes (gloo) equals the single-process statistics."""

from __future__ import annotations

import pytest

import os
import subprocess
import sys
from pathlib import Path

import torch

from conftest import BlocksGenerator
from lightning_rewrite import HookedLayer, LatentSampler
from lightning_rewrite.engine.stats import collect_second_moment

pytestmark = pytest.mark.slow  # starts two processes


def test_ddp_key_covariance_equals_one_process(tmp_path):
    out = tmp_path / "moment.pt"
    samples = 45  # uneven shards: 23 and 22 latents
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    script = Path(__file__).with_name("ddp_key_covariance.py")
    proc = subprocess.run([sys.executable, str(script), str(out), str(samples)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = torch.load(out, weights_only=True)
    assert ddp["world"] == 2

    generator = BlocksGenerator().double().eval()
    single = collect_second_moment(HookedLayer(generator, "layer3.0"), LatentSampler(16), samples, batch_size=16,
                                   progress=False)
    assert ddp["count"] == single.count == samples * 16 * 16
    rel = float((ddp["sum"] / ddp["count"] - single.moment()).norm() / single.moment().norm())
    assert rel <= 1e-10
