"""No import cycles anywhere in app/, training/, contract/ or transformer/, and no app or transformer module over
300 lines (the layer contracts themselves run as `lint-imports` in `make lint`; training's sizes:
test_training_layout.py)."""

from __future__ import annotations

from pathlib import Path

import grimp
import pytest


def test_no_import_cycles() -> None:
    graph = grimp.build_graph("app", "training", "contract", "transformer")
    cycles = []
    for importer in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            if graph.chain_exists(importer=imported, imported=importer):
                cycles.append(f"{importer} -> {imported} -> ... -> {importer}")
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


@pytest.mark.parametrize("package", ["app", "transformer"])
def test_modules_stay_short(package: str) -> None:
    paths = list(Path(package).rglob("*.py"))
    long = {str(path): n for path in paths if (n := len(path.read_text().splitlines())) > 300}
    assert paths and not long, long
