"""A user's own recipe: ``recipe=PATH.yaml`` (or LightningCLI's ``--config PATH``), checked
against the same schema, naming its request file relative to itself; and "did you mean" for a
mistyped key, recipe and layer."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from lightning_rewrite.app.cli import main

STORED = Path(__file__).parents[1] / "recipes" / "requests" / "domes_to_trees.json"
FAST = ["trainer.max_steps=5", "stats.samples=50", "progress=false", "logger=none"]
MINE = """description: "my church edit: the stored tree and domes, as a file of my own"
model: {world: churches}
edit: {kind: copy, layer: layer6, rank: 1, request: requests/my_domes.json}
"""


@pytest.fixture
def recipe_file(tmp_path) -> Path:
    """``<tmp>/mine/my_domes.yaml`` naming ``requests/my_domes.json`` beside it (not in the working directory)."""
    folder = tmp_path / "mine"
    (folder / "requests").mkdir(parents=True)
    shutil.copy(STORED, folder / "requests" / "my_domes.json")
    (folder / "my_domes.yaml").write_text(MINE)
    return folder / "my_domes.yaml"


@pytest.mark.slow
def test_fit_runs_a_users_recipe_file_with_its_request_beside_it(recipe_file, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["fit", f"recipe={recipe_file}", *FAST]) == 0
    out = tmp_path / "runs" / "my_domes"  # runs/<the file's name>
    spec = json.loads((out / "edit.json").read_text())
    assert spec["recipe"] == "my_domes" and spec["layer"] == "layer6"
    assert json.loads((out / "request.json").read_text())["object"] == json.loads(STORED.read_text())["object"]
    again = ["fit", "--config", str(recipe_file), *(f"--{a}" for a in FAST), f"--out={tmp_path / 'cli_form'}"]
    assert main(again) == 0  # LightningCLI's spelling
    assert (tmp_path / "cli_form" / "edit.safetensors").is_file()


@pytest.mark.parametrize("text,message", [
    ("edit: {rnak: 2}\n", "unknown key 'edit.rnak' in recipe file {path}; did you mean 'edit.rank'"),
    ("edit: {layer: [unclosed\n", "recipe file {path} is not YAML"),
    ("- a list\n", "recipe file {path} must hold key: value settings"),
])
def test_a_bad_recipe_file_is_one_line(text, message, tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    assert main(["fit", f"recipe={path}", f"out={tmp_path / 'run'}"]) == 2
    err = capsys.readouterr().err
    assert message.format(path=path) in err and err.count("\n") == 1, err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("argv,message", [
    (["fit", "recipe=domes_to_trees", "edit.rnak=2"], "unknown key 'edit.rnak'; did you mean 'edit.rank'"),
    (["fit", "recipe=domes_to_tree"], "unknown recipe 'domes_to_tree'; did you mean 'domes_to_trees'"),
    (["fit", "recipe=missing.yaml"], "recipe file 'missing.yaml' does not exist"),
    (["fit", "recipe=domes_to_trees", "edit.layer=layer66"], "no layer 'layer66'; nearest rewritable layers: layer6"),
    (["pretrain", "iteratons=5"], "unknown key 'iteratons' for pretrain; did you mean 'iterations'?"),
])
def test_did_you_mean_for_a_mistyped_key_recipe_and_layer(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main([*argv, "progress=false", "logger=none"] if argv[0] == "fit" else argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
