"""What users already hold keeps working: an edit file written before the engine took its
present shape loads, applies and reverts bitwise; the same configuration makes bitwise the same
edit as it did then; the README's Lightning snippet runs as written."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from lightning_rewrite.app.cli import main
from lightning_rewrite.engine.edit import Edit
from lightning_rewrite.engine.fingerprint import module_fingerprint
from lightning_rewrite.worlds import get_world

FIXTURES = Path(__file__).parent / "fixtures"
README = Path(__file__).parent.parent / "README.md"


def test_an_edit_file_from_version_0_1_applies_and_reverts_bitwise():
    generator = get_world("faces").load_generator()
    before = {k: v.clone() for k, v in generator.state_dict().items()}
    edit = Edit.load(FIXTURES / "smile_edit_v0.1.safetensors")
    assert edit.spec["recipe"] == "smile" and edit.changes[0].rank == 1
    edit.apply(generator)
    assert module_fingerprint(generator) == edit.result_fingerprint
    changed = [k for k, v in generator.state_dict().items() if not torch.equal(v, before[k])]
    assert changed == [edit.changes[0].name]
    edit.revert(generator)
    assert all(torch.equal(v, before[k]) for k, v in generator.state_dict().items())


def _tensor_hashes(path: Path) -> dict[str, str]:
    with safe_open(str(path), "pt") as f:
        return {k: hashlib.sha256(f.get_tensor(k).numpy().tobytes()).hexdigest() for k in sorted(f.keys())}


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["domes_to_trees", "reflection"])
def test_the_same_configuration_makes_bitwise_the_same_edit_as_version_0_1(recipe, tmp_path):
    """domes_to_trees optimises Λ; reflection optimises W with the SVD projection. Version 0.1
    ran Adam on the full map through the layer's own forward, with float64 key products: the
    same configuration names that solver, no crop, no low-rank evaluation and those products."""
    expected = json.loads((FIXTURES / "edit_tensors_v0.1.json").read_text())[recipe]
    assert main([*expected["argv"], f"out={tmp_path / 'run'}"]) == 0
    assert _tensor_hashes(tmp_path / "run" / "edit.safetensors") == expected["tensors"]
    header = json.loads((tmp_path / "run" / "edit.json").read_text())
    assert (header["base_fingerprint"], header["result_fingerprint"]) == \
        (expected["base_fingerprint"], expected["result_fingerprint"])


@pytest.mark.slow
def test_the_readme_lightning_snippet_runs_as_written(tmp_path, monkeypatch):
    text = README.read_text()
    section = text[text.index("## The engine, in your own Lightning code"):]
    snippet = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(README.parent)  # the snippet names a request file of the repository
    scope: dict = {"__name__": "readme"}
    exec(compile(snippet, "README.md", "exec"), scope)
    change, original = scope["change"], scope["generator"].get_parameter(scope["change"].name)  # not edited: copied
    assert change.name == "convs.3.conv.weight" and change.rank == 1
    edited = scope["edited"].get_parameter(change.name)
    assert torch.equal(edited, change.new_weight(original)) and not torch.equal(edited, original)
