"""The package's layering holds: the engine is plain torch (no Lightning, no configuration)
and imports nothing above it; only the commands (``app``) read a configuration; nothing imports
the commands. Read from the source, so a stray import fails here before it tangles the layers."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
PACKAGE = ROOT / "lightning_rewrite"
#: Top-level modules every layer may use: they import nothing of the package (``paths`` only
#: ``errors``, itself a leaf).
LEAVES = {"errors", "atomic", "limits", "version", "vocabulary", "paths"}


def imports(path: Path, package: str) -> set[str]:
    """Absolute names of what ``path`` imports (relative imports resolved against ``package``)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[:len(base) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            out.add(name)
            out.update(f"{name}.{a.name}" for a in node.names)
    return out


def modules(folder: Path, package: str) -> list[tuple[Path, str]]:
    return [(p, package + "".join(f".{part}" for part in p.relative_to(folder).parent.parts)) for p in folder.rglob("*.py")]


def within(names: set[str], prefixes: tuple[str, ...]) -> list[str]:
    return sorted(n for n in names if any(n == p or n.startswith(p + ".") for p in prefixes))


@pytest.mark.parametrize("path,package", modules(PACKAGE / "engine", "lightning_rewrite.engine"), ids=lambda x: str(x)[-30:])
def test_the_engine_is_plain_torch_and_imports_nothing_above_it(path, package):
    names = imports(path, package)
    above = [n for n in within(names, ("lightning_rewrite",)) if n != "lightning_rewrite"  # from .. import a leaf
             and not n.startswith("lightning_rewrite.engine") and n.split(".")[1] not in LEAVES]
    assert above == [] and within(names, ("pytorch_lightning", "lightning", "omegaconf", "hydra")) == []


LAYERS = [*modules(ROOT / "callbacks", "lightning_rewrite.callbacks"),
          *[(p, package) for p, package in modules(PACKAGE, "lightning_rewrite") if "app" not in p.relative_to(PACKAGE).parts]]


@pytest.mark.parametrize("path,package", LAYERS, ids=lambda x: str(x)[-30:])
def test_only_the_commands_read_a_configuration_and_nothing_imports_them(path, package):
    names = imports(path, package)
    allowed = path.name == "__main__.py" and path.parent == PACKAGE  # python -m lightning_rewrite
    assert within(names, ("omegaconf", "hydra")) == []
    assert allowed or within(names, ("lightning_rewrite.app",)) == []
