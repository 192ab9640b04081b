"""The layers hold: no import loop anywhere in core or ui, and no core module grows past one concept's size."""

from __future__ import annotations

from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]


def test_no_module_imports_one_that_imports_it_back() -> None:
    graph = grimp.build_graph("core", "ui")
    modules = sorted(graph.modules)
    loops = [(a, b) for i, a in enumerate(modules) for b in modules[i + 1:]
             if graph.find_shortest_chain(a, b) and graph.find_shortest_chain(b, a)]
    assert loops == []


def test_no_core_module_is_over_600_lines() -> None:
    sizes = {p.name: len(p.read_text().splitlines()) for p in (ROOT / "core").glob("*.py")}
    assert {name: n for name, n in sizes.items() if n > 600} == {}
