"""No import cycles anywhere in app/, training/ or contract/, and no app module over 300 lines (the layer
contracts themselves run as `lint-imports` in `make lint`; training's sizes: test_training_layout.py)."""

from __future__ import annotations

from pathlib import Path

import grimp


def test_no_import_cycles() -> None:
    graph = grimp.build_graph("app", "training", "contract")
    cycles = []
    for importer in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            if graph.chain_exists(importer=imported, imported=importer):
                cycles.append(f"{importer} -> {imported} -> ... -> {importer}")
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_app_modules_stay_short() -> None:
    long = {str(path): n for path in Path("app").rglob("*.py") if (n := len(path.read_text().splitlines())) > 300}
    assert not long, long
