"""Every page renders on digits; each slider moves the number it should; export writes a full manifest."""

from __future__ import annotations




