"""The tool never deletes or overwrites what it did not write: ``out=`` an existing directory
or file of the user's is refused before any work; a run directory it wrote is replaced whole,
but not the results other commands left in it unless asked; a killed run leaves the previous
run directory intact and its temporary is removed by the next run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lightning_rewrite.app.cli import main
from lightning_rewrite.errors import RewriteError
from lightning_rewrite.app.rundir import MARKER, check_out, remove_stale_temporaries, run_directory

pytestmark = pytest.mark.slow  # runs the commands

FAST = ["recipe=domes_to_trees", "trainer.max_steps=5", "stats.samples=50", "progress=false", "logger=none"]


def test_out_naming_a_users_directory_or_file_is_refused_untouched(tmp_path, capsys):
    mine = tmp_path / "work"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    note = tmp_path / "notes.txt"
    note.write_text("keep me")
    for out, says in ((mine, "did not write"), (note, "is an existing file"), (tmp_path, "did not write")):
        for command in ("fit", "test", "sample", "select"):
            argv = [command, *FAST, f"out={out}"] if command == "fit" else [command, "recipe=domes_to_trees", f"out={out}"]
            assert main(argv) == 2
            err = capsys.readouterr().err
            assert says in err and err.count("\n") == 1, (command, err)
    assert (mine / "thesis.tex").read_text() == "years of work" and [p.name for p in mine.iterdir()] == ["thesis.tex"]
    assert note.read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "work"]


def test_a_second_fit_replaces_its_own_run_but_not_other_commands_results(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["fit", *FAST, f"out={out}"]) == 0
    marker = json.loads((out / MARKER).read_text())
    assert marker["command"] == "fit" and marker["tool"] == "lightning-rewrite" and not marker["temporary"]
    (out / "edit.json").write_text("stale")  # a file of the old run: gone once the run is replaced
    assert main(["fit", *FAST, f"out={out}"]) == 0
    assert json.loads((out / "edit.json").read_text())["recipe"] == "domes_to_trees"
    assert main(["sample", "recipe=domes_to_trees", f"out={out}", "sample.n=2", "progress=false",
                 f"model.edits=[{out / 'edit.safetensors'}]"]) == 0
    samples = (out / "sample" / "samples.png").read_bytes()
    capsys.readouterr()
    assert main(["fit", *FAST, f"out={out}"]) == 2
    assert "holds results of other commands (sample/)" in capsys.readouterr().err
    assert (out / "sample" / "samples.png").read_bytes() == samples
    assert main(["fit", *FAST, f"out={out}", "overwrite=true"]) == 0
    assert not (out / "sample").exists()
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left beside it


def test_a_refit_names_what_the_user_put_in_its_run_directory_and_deletes_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["fit", *FAST, f"out={out}"]) == 0
    assert "edit.safetensors" in json.loads((out / MARKER).read_text())["files"]  # the manifest of what it wrote
    (out / "my_notes.txt").write_text("mine")
    (out / "my_analysis").mkdir()
    (out / "my_analysis" / "a.csv").write_text("1,2")
    capsys.readouterr()
    for extra in ([], ["overwrite=true"]):
        assert main(["fit", *FAST, f"out={out}", *extra]) == 2
        err = capsys.readouterr().err
        assert "holds what lightning-rewrite did not write there (my_analysis/, my_notes.txt)" in err, err
        assert err.count("\n") == 1
    assert (out / "my_notes.txt").read_text() == "mine" and (out / "my_analysis" / "a.csv").read_text() == "1,2"
    (out / "my_notes.txt").unlink()
    (out / "my_analysis" / "a.csv").unlink()
    (out / "my_analysis").rmdir()
    _dead_marker(out / ".test.x1y2.tmp", command="test")  # a killed test's temporary: the tool's own debris
    assert main(["fit", *FAST, f"out={out}"]) == 0
    assert main(["fit", *FAST, f"out={out / 'inner'}"]) == 0  # a run directory nested in the run
    capsys.readouterr()
    assert main(["fit", *FAST, f"out={out}", "overwrite=true"]) == 2
    assert "(inner/ (a run directory of its own))" in capsys.readouterr().err
    assert (out / "inner" / "edit.safetensors").is_file()


def test_a_refit_keeps_the_previous_runs_wandb_offline_run(tmp_path):
    """An offline W&B run is the user's until synced: a refit carries it into the new run
    directory, and what ``wandb sync`` adds to it later does not block the next fit."""
    out = tmp_path / "run"
    wandb_fast = [a for a in FAST if a != "logger=none"] + ["logger=wandb"]
    assert main(["fit", *wandb_fast, f"out={out}"]) == 0
    (first,) = (out / "wandb").glob("offline-run-*")
    (first / "synced.txt").write_text("as wandb sync marks a run")
    assert main(["fit", *wandb_fast, f"out={out}"]) == 0
    runs = sorted(p.name for p in (out / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and first.name in runs
    assert (first / "synced.txt").read_text() == "as wandb sync marks a run"


def test_results_of_a_command_make_a_marked_run_directory(tmp_path):
    out = tmp_path / "fresh"
    assert main(["sample", "recipe=domes_to_trees", f"out={out}", "sample.n=2", "progress=false"]) == 0
    assert json.loads((out / MARKER).read_text())["command"] == "sample"
    assert check_out(out, "fit", overwrite=True) == out


def test_a_failed_run_leaves_nothing_and_an_unwritable_place_is_one_line(tmp_path):
    out = tmp_path / "a" / "b"
    with pytest.raises(ZeroDivisionError):
        with run_directory(out, "test", nested=True) as tmp:
            (tmp / "half.json").write_text("{")
            raise ZeroDivisionError
    assert not any(tmp_path.iterdir()) or not any((tmp_path / "a").iterdir())
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):  # root writes anywhere: the check cannot be shown here
            pytest.skip("running as a user that may write a read-only directory")
        with pytest.raises(RewriteError, match="is not writable by this user"):
            check_out(locked / "run", "fit")
    finally:
        locked.chmod(0o700)


def test_temporaries_of_live_runs_and_of_others_are_kept(tmp_path):
    target = tmp_path / "run"
    live = tmp_path / ".run.live1234.tmp"
    live.mkdir()
    (live / MARKER).write_text(json.dumps({"tool": "lightning-rewrite", "pid": os.getpid(), "temporary": True}))
    foreign = tmp_path / ".run.other999.tmp"  # the same name pattern, not marked by the tool
    foreign.mkdir()
    dead = tmp_path / ".run.dead5678.tmp"
    dead.mkdir()
    (dead / MARKER).write_text(json.dumps({"tool": "lightning-rewrite", "pid": 2**22 + 12345, "temporary": True}))
    assert remove_stale_temporaries(target) == [dead]
    assert live.exists() and foreign.exists() and not dead.exists()


def test_a_killed_fit_leaves_the_previous_run_and_the_next_run_cleans_up(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path)}
    assert main(["fit", *FAST, f"out={out}"]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    # Adam with a step budget it never reaches (L-BFGS would stop by itself at convergence)
    slow = [a for a in FAST if not a.startswith("trainer.max_steps")] + ["trainer.max_steps=1000000", "edit.solver=adam"]
    proc = subprocess.Popen([sys.executable, "-m", "lightning_rewrite", "fit", *slow, f"out={out}"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not list(tmp_path.glob(".run.*.tmp")):
            time.sleep(0.2)
        assert list(tmp_path.glob(".run.*.tmp")), "the fit never started writing"
        time.sleep(1.0)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert after.keys() == before.keys() and all(after[k] == before[k] for k in before)  # the previous run, intact
    assert len(list(tmp_path.glob(".run.*.tmp"))) == 1  # the killed run's temporary, left behind
    assert main(["fit", *FAST, f"out={out}"]) == 0
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_world_commands_write_only_where_they_wrote_before(tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "data.csv").write_text("1,2,3")
    weights = tmp_path / "weights.safetensors"
    weights.write_bytes(b"someone else's weights")
    assert main(["pretrain", f"out={mine}", "iterations=1"]) == 2
    assert "did not write" in capsys.readouterr().err
    assert main(["pretrain", f"out={tmp_path / 'new'}", f"export={weights}", "iterations=1"]) == 2
    assert "was not exported by lightning-rewrite" in capsys.readouterr().err
    assert main(["segmenter", f"export={weights}", "steps=1"]) == 2
    assert "was not exported by lightning-rewrite" in capsys.readouterr().err
    assert [p.name for p in mine.iterdir()] == ["data.csv"] and weights.read_bytes() == b"someone else's weights"
    assert not (tmp_path / "new").exists()


def test_segmenter_never_writes_the_installed_packages_weights_by_default(tmp_path, monkeypatch):
    """The shipped segmenter is replaced only when export= names it; by default the weights go to runs/."""
    import lightning_rewrite.app.segmenter as command

    monkeypatch.chdir(tmp_path)
    asked = {}
    monkeypatch.setattr(command, "train_segmenter", lambda **cfg: asked.update(cfg))
    assert main(["segmenter", "world=faces", "steps=1"]) == 0
    assert Path(asked["export"]) == Path("runs/segmenter/faces_segmenter.safetensors")


def _dead_marker(directory, **extra) -> None:
    directory.mkdir()
    (directory / MARKER).write_text(json.dumps({"tool": "lightning-rewrite", "pid": 2**22 + 12345, "temporary": True,
                                                **extra}))


def test_the_previous_run_is_never_left_in_a_temporary(tmp_path, monkeypatch):
    """If the last rename fails, or the process dies between the two renames, the previous run
    is put back where it was; a temporary another machine wrote is left alone."""
    target = tmp_path / "run"
    with run_directory(target, "fit") as tmp:
        (tmp / "edit.json").write_text("first")
    real_replace = os.replace

    def failing(src, dst):  # noqa: ANN001 - os.replace's own arguments
        if str(src).endswith(".tmp"):
            raise OSError("disk full")
        real_replace(src, dst)
    monkeypatch.setattr(os, "replace", failing)
    with pytest.raises(OSError, match="disk full"):
        with run_directory(target, "fit") as tmp:
            (tmp / "edit.json").write_text("second")
    monkeypatch.setattr(os, "replace", real_replace)
    assert (target / "edit.json").read_text() == "first" and [p.name for p in tmp_path.iterdir()] == ["run"]

    real_replace(target, tmp_path / "kept")  # as a run killed between its two renames leaves it:
    _dead_marker(tmp_path / ".run.k1ll3d.old")
    real_replace(tmp_path / "kept", tmp_path / ".run.k1ll3d.old" / "run")
    _dead_marker(tmp_path / ".run.elsewhere.tmp", host="another-machine")
    assert remove_stale_temporaries(target) == [tmp_path / ".run.k1ll3d.old"]
    assert (target / "edit.json").read_text() == "first" and (tmp_path / ".run.elsewhere.tmp").is_dir()


def test_a_second_writer_is_refused_and_ctrl_c_leaves_one_line_and_nothing_written(tmp_path, capsys):
    """While a fit runs into out=, another command into the same out= is refused naming it; a
    Ctrl-C then stops the first with one line and exit 130, leaving no directory and no temporary."""
    out = tmp_path / "run"
    env = {**os.environ, "LIGHTNING_REWRITE_CACHE": str(tmp_path / "cache"), "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen([sys.executable, "-m", "lightning_rewrite", "fit", "recipe=domes_to_trees", f"out={out}",
                             "stats.samples=20000", "progress=false", "logger=none"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not list(tmp_path.glob(".run.*.tmp")) and time.time() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert list(tmp_path.glob(".run.*.tmp")), "the fit never started writing"
        assert main(["fit", *FAST, f"out={out}"]) == 2
        err = capsys.readouterr().err
        assert f"is being written by another lightning-rewrite fit (pid {proc.pid}" in err and err.count("\n") == 1
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr[-2000:]
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr and lines[-1].startswith("interrupted: fit stopped"), stderr[-2000:]
    assert not out.exists() and not list(tmp_path.glob(".run.*"))
