"""Redundancy Explorer's core: datasets, hashes, near-duplicates, embeddings, clusterings.

Pure Python over numpy arrays and small frozen dataclasses; no Streamlit import, so the
same functions serve the CLI (`python -m core`), the app's pages, tests and notebooks.
"""

__all__ = ["__version__"]
__version__ = "0.1.0"
