"""No import cycles anywhere in app/, training/ or contract/ (the layer contracts themselves run as
`lint-imports` in `make lint`)."""

from __future__ import annotations

import grimp


def test_no_import_cycles() -> None:
    graph = grimp.build_graph("app", "training", "contract")
    cycles = []
    for importer in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            if graph.chain_exists(importer=imported, imported=importer):
                cycles.append(f"{importer} -> {imported} -> ... -> {importer}")
    assert not cycles, "import cycles:\n" + "\n".join(cycles)
