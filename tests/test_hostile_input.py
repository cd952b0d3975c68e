"""Every command, given malformed values as a careless user or an attacker would type them
(numbers out of range, YAML syntax, markup, unicode, very long strings, directories, symlink
loops, pickles that would run code, interpolations): exit code 2, one line on stderr that shows
the value as typed, no traceback, nothing written and no file of the user's changed."""

from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path

import pytest

from lightning_rewrite.app.cli import main

pytestmark = pytest.mark.slow  # about 150 command lines, in this process

RECIPE_COMMANDS = ("fit", "test", "sample", "select", "stats", "advise", "ui", "layers")
WORLD_COMMANDS = ("pretrain", "segmenter")


class Evil:
    """Unpickling this would run a shell command: a loader must refuse it, not run it."""

    def __reduce__(self):
        return (os.system, ("touch PWNED",))


@pytest.fixture
def places(tmp_path) -> dict[str, Path]:
    """A user's directory and files, a symlink loop and a malicious pickle, in the test's directory."""
    mine = tmp_path / "my_work"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    loop = tmp_path / "loop.pt"
    loop.symlink_to(tmp_path / "loop.pt")
    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps(Evil()))
    (tmp_path / "random.safetensors").write_bytes(os.urandom(4096))
    return {"dir": mine, "loop": loop, "evil": evil}


def _malformed(places: dict[str, Path]) -> dict[str, list[tuple[str, str]]]:
    """(key=value, what the one line must show of it) per kind of value."""
    long = "x" * 5000
    return {
        "numbers": [("edit.rank=0", "edit.rank must be ≥ 1"), ("edit.rank=-3", "edit.rank must be ≥ 1"),
                    ("stats.samples=-1", "stats.samples must be ≥ 1"), ("sample.n=0", "sample.n must be ≥ 1"),
                    ("sample.start=-5", "sample.start must be ≥ 0"), ("ui.port=70000", "ui.port must be"),
                    ("edit.rank=1e400", "edit.rank"), ("stats.batch_size=nan", "stats.batch_size"),
                    ("edit.rank=" + "9" * 6000, "is not a value YAML can read")],
        "yaml": [("edit.layer=[unclosed", "is not a value YAML can read"),
                 ("edit.layer={a: ", "is not a value YAML can read"),
                 ("edit.layer=!!python/object/apply:os.system ['touch PWNED']", "is not a value YAML can read"),
                 ("edit.layer=${oc.env:HOME}", "may not hold ${…} interpolations"),
                 ("out=${nope}", "may not hold ${…} interpolations")],
        "markup": [("recipe=foo[/oops]", "'foo[/oops]'"), ("recipe=x[blink]y", "'x[blink]y'"),
                   ("trainer.precision=[bold]16", "is not a value YAML can read")],
        "unicode": [("recipe=dömé\u202e", "unknown recipe 'dömé"), ("trainer.strategy=😀", "trainer.strategy must be")],
        "long": [(f"out={long}", "out= is too long (5,000 characters"), (f"recipe={long}", "…(5,000 characters)"),
                 (f"trainer.precision={long}", "…(5,000 characters)")],
        "paths": [(f"model.checkpoint={places['dir']}", "is a directory"),
                  (f"model.checkpoint={places['loop']}", "is a symlink loop"),
                  (f"model.checkpoint={places['evil']}", "posix.system"),
                  ("out=", "out= is empty"), (f"out={places['dir']}", "did not write"),
                  ("out=~", f"out={Path.home()} is an existing directory")],
    }


WORLD_VALUES = [("iterations=-1", "iterations must be ≥ 1"), ("steps=0", "steps must be ≥ 1"),
                ("batch_size=0", "batch_size must be ≥ 1"), ("lr=-1", "lr must be > 0"), ("world=[x", "YAML"),
                ("world=${oc.env:HOME}", "interpolations"), ("world=dömé", "unknown world"), ("wrld=churches", "did you mean"),
                ("init=loop.pt", "symlink loop"), ("out=~", "did not write"), ("init=evil.pt", "must be a .safetensors file"),
                ("init=random.safetensors", "is not a readable safetensors file"), ("out=", "out= is empty"),
                ("export=", "export= is empty"), ("export=my_work/thesis.tex", "must name a .safetensors file")]
#: Keys one world command has and the other has not: those values go only to the command that has the key.
ONLY = {"iterations": "pretrain", "out": "pretrain", "steps": "segmenter", "init": "segmenter"}


def _tree(root: Path) -> dict[str, str]:
    """Every file under ``root`` (symlinks by target) with a digest of its bytes."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_symlink():
            out[str(p)] = "-> " + os.readlink(p)
        elif p.is_file():
            out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
        else:
            out[str(p)] = "dir"
    return out


def test_every_command_answers_malformed_values_with_one_line_and_exit_2(places, tmp_path, monkeypatch, capsys):
    import lightning_rewrite

    monkeypatch.chdir(tmp_path)
    package = Path(lightning_rewrite.__file__).parent
    before, shipped = _tree(tmp_path), _tree(package / "worlds" / "weights")
    cases = []
    for kind, values in _malformed(places).items():
        for command in RECIPE_COMMANDS:
            for value, says in values:
                if value.startswith("out=") and command in ("layers", "stats") and "${" not in value and len(value) < 100 \
                        and value != "out=":
                    continue  # these two write no run directory: an out= they never use is not an error
                base = [] if value.startswith("recipe=") else ["recipe=domes_to_trees"]
                cases.append(([command, *base, value, "progress=false", "logger=none"], says, kind))
    for command in WORLD_COMMANDS:
        for value, says in WORLD_VALUES:
            key = value.split("=", 1)[0]
            if ONLY.get(key, command) == command and not (key == "iterations" and command == "segmenter"):
                cases.append(([command, value, "progress=false"], says, "world"))
    assert len(cases) >= 60
    failures = []
    for argv, says, kind in cases:
        code = main(argv)
        err = capsys.readouterr().err
        lines = err.strip().splitlines()
        if code != 2 or len(lines) != 1 or "Traceback" in err or says not in err:
            failures.append(f"{kind}: {' '.join(argv)[:100]} -> exit {code}: {err.strip()[-300:]}")
    assert not failures, f"{len(failures)} of {len(cases)}:\n" + "\n".join(failures)
    assert _tree(tmp_path) == before, "a refused command wrote or changed something"
    assert _tree(package / "worlds" / "weights") == shipped
    assert not (tmp_path / "PWNED").exists()


def test_a_path_that_looks_like_markup_is_written_and_printed_as_typed(tmp_path, capsys):
    out = tmp_path / "x[/b][blink]"
    assert main(["sample", "recipe=domes_to_trees", f"out={out}", "sample.n=1", "progress=false"]) == 0
    assert (out / "sample" / "samples.png").is_file()
    said = "".join(capsys.readouterr().out.split())  # rich wraps long lines
    assert f"→{out / 'sample'}(1files" in said
