"""Thumbnail grids composed into one image (hundreds of tiny images cost one st.image call, or one
inlined PNG in the report), and the status colours every page and the report share."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw

# One colour per status, on every page and in the report: kept green, redundant red, leaked purple.
STATUS_COLORS = {"kept": "#2ca02c", "redundant": "#d62728", "leaked": "#9467bd", "test": "#bbbbbb"}


def _rgb(hex_color: str) -> tuple[int, int, int]:
    return int(hex_color[1:3], 16), int(hex_color[3:5], 16), int(hex_color[5:7], 16)


KEPT = _rgb(STATUS_COLORS["kept"])
REDUNDANT = _rgb(STATUS_COLORS["redundant"])
LEAKED = _rgb(STATUS_COLORS["leaked"])


def tile_side(image_side: int, at_least: int = 64) -> int:
    """Nearest-neighbour upscale so 8x8 digits and 32x32 CIFAR images are visible (at least 64 px)."""
    return image_side * max(1, int(np.ceil(at_least / image_side)))


def compose(images: NDArray[np.uint8], cols: int, borders: Sequence[tuple[int, int, int] | None] | None = None,
            labels: list[str] | None = None, gap: int = 4, at_least: int = 64) -> Image.Image:
    """(K, H, W, C) images into one RGB grid; optional coloured border and a short label per tile."""
    k, h, w, c = images.shape
    side = tile_side(max(h, w), at_least)
    scale = side // max(h, w)
    cols = max(1, min(cols, k))
    rows = max(1, -(-k // cols))
    label_h = 14 if labels else 0
    cell_w, cell_h = w * scale + 2 * gap, h * scale + 2 * gap + label_h
    canvas = Image.new("RGB", (cols * cell_w, rows * cell_h), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for n in range(k):
        img = images[n]
        rgb = np.repeat(img, 3, axis=2) if c == 1 else img
        tile = Image.fromarray(rgb, "RGB").resize((w * scale, h * scale), Image.Resampling.NEAREST)
        x, y = (n % cols) * cell_w + gap, (n // cols) * cell_h + gap
        canvas.paste(tile, (x, y))
        color = borders[n] if borders else None
        if color:
            draw.rectangle([x - 3, y - 3, x + w * scale + 2, y + h * scale + 2], outline=color, width=3)
        if labels:
            draw.text((x, y + h * scale + 2), labels[n][:14], fill=(40, 40, 40))
    return canvas


def png_data_uri(image: Image.Image) -> str:
    """An image as a data: URI (PNG), for a page that must open offline and request nothing."""
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
