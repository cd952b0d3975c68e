"""``test`` and ``sample`` across two CPU processes (Lightning's ddp strategy over gloo, launched
from the command line as a user would) give what one process gives: the same counts, rates within
1e-6 relative, the same grids, and bitwise the same sample images."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lightning_rewrite.app.cli import main

pytestmark = pytest.mark.slow  # starts processes
TWO = ["trainer.accelerator=cpu", "trainer.devices=2", "trainer.strategy=ddp"]


def command(*argv: str, cwd: Path) -> None:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, "-m", "lightning_rewrite", *argv, "progress=false"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    root = tmp_path_factory.mktemp("distributed")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LIGHTNING_REWRITE_CACHE", str(root / "cache"))
        assert main(["fit", "recipe=domes_to_trees", f"out={root / 'one'}", "logger=csv", "progress=false",
                     "stats.samples=200"]) == 0
    (root / "two").mkdir()
    for name in ("edit.safetensors", "edit.json", ".lightning_rewrite.json"):
        (root / "two" / name).write_bytes((root / "one" / name).read_bytes())
    return root


def test_test_over_two_processes_measures_what_one_does(fitted):
    uneven = ["test.n=70", "test.batch_size=16"]  # 5 batches: 3 in one process, 2 in the other
    command("test", "recipe=domes_to_trees", f"out={fitted / 'one'}", *uneven, cwd=fitted)
    command("test", "recipe=domes_to_trees", f"out={fitted / 'two'}", *uneven, *TWO, cwd=fitted)
    one, two = (json.loads((fitted / d / "test" / "metrics.json").read_text()) for d in ("one", "two"))
    assert one["world_size"] == 1 and two["world_size"] == 2
    assert one.keys() == two.keys()
    for key in one.keys() - {"edit", "world_size"}:
        a, b = one[key], two[key]
        if isinstance(a, float):
            assert abs(a - b) <= 1e-6 * max(abs(a), 1e-12), (key, a, b)
        else:
            assert a == b, (key, a, b)
    assert one["source_pixels_before"] > 0 and one["n"] == 70
    for grid in ("largest_change.png", "smallest_change.png"):
        assert (fitted / "one" / "test" / grid).read_bytes() == (fitted / "two" / "test" / grid).read_bytes(), grid


def test_sample_over_two_processes_writes_the_images_of_one(tmp_path):
    args = ["recipe=domes_to_trees", "sample.n=21", "sample.folder=true", "stats.batch_size=8"]
    command("sample", *args, f"out={tmp_path / 'one'}", cwd=tmp_path)
    command("sample", *args, f"out={tmp_path / 'two'}", *TWO, cwd=tmp_path)
    one = sorted((tmp_path / "one" / "sample" / "samples").iterdir())
    two = sorted((tmp_path / "two" / "sample" / "samples").iterdir())
    assert [p.name for p in one] == [p.name for p in two] and len(one) == 21
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(one, two))
    assert (tmp_path / "one" / "sample" / "samples.png").read_bytes() == (tmp_path / "two" / "sample" / "samples.png").read_bytes()
