"""``test`` and ``sample`` across two CPU processes (Lightning's ddp strategy over gloo, launched
from the command line as a user would) give what one process gives: the same counts, rates within
1e-6 relative, the same grids, and bitwise the same sample images — with the same number of
threads in every process (``OMP_NUM_THREADS=1`` here; Lightning gives each of two processes on two
cores one thread). A single process with more threads splits some kernels' work differently:
its images then agree within one level on a few pixels (measured in the last test)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lightning_rewrite.app.cli import main

pytestmark = pytest.mark.slow  # starts processes
TWO = ["trainer.accelerator=cpu", "trainer.devices=2", "trainer.strategy=ddp"]


def command(*argv: str, cwd: Path, threads: str | None = "1") -> None:
    """The command in a process of its own with ``threads`` (None: the machine's default)."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"} | {"PYTHONWARNINGS": "ignore"}
    if threads is not None:
        env["OMP_NUM_THREADS"] = threads
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


def _samples(root: Path) -> list[Path]:
    return sorted((root / "sample" / "samples").iterdir())


def test_sample_over_two_processes_writes_the_images_of_one(tmp_path):
    args = ["recipe=domes_to_trees", "sample.n=21", "sample.folder=true"]
    command("sample", *args, f"out={tmp_path / 'one'}", cwd=tmp_path)
    command("sample", *args, f"out={tmp_path / 'two'}", *TWO, cwd=tmp_path)
    one, two = _samples(tmp_path / "one"), _samples(tmp_path / "two")
    assert [p.name for p in one] == [p.name for p in two] and len(one) == 21
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(one, two))
    assert (tmp_path / "one" / "sample" / "samples.png").read_bytes() == (tmp_path / "two" / "sample" / "samples.png").read_bytes()
    command("sample", *args, f"out={tmp_path / 'threads'}", cwd=tmp_path, threads="2")
    level = np.stack([np.asarray(Image.open(p), dtype=np.int16) for p in _samples(tmp_path / "threads")]) - \
        np.stack([np.asarray(Image.open(p), dtype=np.int16) for p in one])
    assert np.abs(level).max() <= 1 and (level != 0).mean() <= 1e-3, "another thread count: rounding, not another image"


@pytest.mark.bitwise
def test_a_sample_is_the_same_whatever_else_is_drawn(tmp_path):
    """Each sample is drawn alone, so sample 1005 of 12 is bitwise sample 1005 of 2."""
    for name, start, n in (("twelve", 1000, 12), ("two", 1005, 2)):
        assert main(["sample", "recipe=domes_to_trees", f"out={tmp_path / name}", f"sample.start={start}",
                     f"sample.n={n}", "sample.folder=true", "sample.grid=false", "progress=false"]) == 0
    for i in (1005, 1006):
        assert (tmp_path / "twelve" / "sample" / "samples" / f"{i:06d}.png").read_bytes() == \
            (tmp_path / "two" / "sample" / "samples" / f"{i:06d}.png").read_bytes()
