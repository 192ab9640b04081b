"""The benchmark sections, registered in the order `make bench` runs them."""

from bench.sections import hashing, search  # noqa: F401, I001  (the order of the sections)
from bench.sections import candidates, approximate, pipeline, semantic, app, scale  # noqa: F401, I001
