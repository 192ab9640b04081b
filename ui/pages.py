"""The page list as data: app.py builds the navigation from it and the smoke test runs each file."""

from __future__ import annotations

PAGES: list[tuple[str, str, str]] = [
    ("pages/home.py", "Home", ":material/home:"),
    ("pages/map.py", "Map", ":material/scatter_plot:"),
    ("pages/near_duplicates.py", "Near-duplicates", ":material/content_copy:"),
    ("pages/semantic.py", "Semantic redundancy", ":material/hub:"),
    ("pages/experiments.py", "Experiments", ":material/science:"),
    ("pages/export.py", "Export", ":material/download:"),
]
