"""The page list as data: app.py builds the navigation from it and the smoke test runs each file."""

from __future__ import annotations

PAGES: list[tuple[str, str, str]] = [
    ("views/home.py", "Home", ":material/home:"),
    ("views/map.py", "Map", ":material/scatter_plot:"),
    ("views/near_duplicates.py", "Near-duplicates", ":material/content_copy:"),
    ("views/review.py", "Review pairs", ":material/rule:"),
    ("views/check.py", "Check new images", ":material/upload_file:"),
    ("views/semantic.py", "Semantic redundancy", ":material/hub:"),
    ("views/experiments.py", "Experiments", ":material/science:"),
    ("views/report.py", "Report", ":material/summarize:"),
    ("views/export.py", "Export", ":material/download:"),
]
