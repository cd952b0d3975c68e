"""A guard against results that hold only on the machine that made them: the tests marked
``bitwise`` (two computations equal bit for bit, or a tensor recorded on another machine within
its tolerance) run again in a process with another thread count and ATen's portable kernels
(``ATEN_CPU_CAPABILITY=default``), as another CPU would split and round the work. A test that
compares a result across thread counts or batch compositions, or a recording by hash, fails here
on the developer's own machine instead of on a user's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow  # starts a pytest run of its own (about a minute)


def test_the_equality_tests_pass_with_another_thread_count_and_other_kernels(tmp_path):
    threads = "2" if torch.get_num_threads() == 1 else "1"
    env = {**os.environ, "OMP_NUM_THREADS": threads, "ATEN_CPU_CAPABILITY": "default"}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "bitwise", "-p", "no:cacheprovider",
                           f"--basetemp={tmp_path / 'run'}"], cwd=Path(__file__).parents[1], env=env,
                          capture_output=True, text=True, timeout=1200)
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    assert proc.returncode == 0, f"with {threads} thread(s) and ATen's default kernels: {summary}\n{proc.stdout[-4000:]}"
    assert " passed" in summary and "deselected" in summary, summary
