"""The layers hold: no import loop anywhere, the folders are the layers, app.py stays on top, no module too big."""

from __future__ import annotations

import ast

import grimp
from conftest import ROOT

LAYERS = ("data", "features", "selections", "pipelines", "cli")


def test_no_module_imports_one_that_imports_it_back() -> None:
    graph = grimp.build_graph("core", "ui", "views")
    modules = sorted(graph.modules)
    loops = [(a, b) for i, a in enumerate(modules) for b in modules[i + 1:]
             if graph.find_shortest_chain(a, b) and graph.find_shortest_chain(b, a)]
    assert loops == []


def test_every_core_module_lives_in_its_layer_package() -> None:
    loose = sorted(p.name for p in (ROOT / "core").glob("*.py") if p.name not in ("__init__.py", "__main__.py"))
    assert loose == [], "core/ holds only the layer packages"
    assert sorted(p.name for p in (ROOT / "core").iterdir() if p.is_dir() and p.name != "__pycache__") == sorted(LAYERS)


def test_app_py_imports_only_the_ui_and_the_data_layer() -> None:
    tree = ast.parse((ROOT / "app.py").read_text())
    names = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    names |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    ours = {n for n in names if n.split(".")[0] in ("core", "ui", "views", "bench")}
    assert ours and all(n.startswith(("ui", "core.data")) for n in ours), ours


def test_no_module_is_over_600_lines() -> None:
    files = [p for d in ("core", "ui", "views", "bench") for p in (ROOT / d).rglob("*.py")]
    sizes = {str(p.relative_to(ROOT)): len(p.read_text().splitlines()) for p in files}
    assert len(sizes) > 40
    assert {name: n for name, n in sizes.items() if n > 600} == {}
