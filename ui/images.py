"""Thumbnail grids composed into one image, so hundreds of tiny images cost one st.image call."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw

KEPT = (46, 160, 67)
REDUNDANT = (214, 39, 40)


def tile_side(image_side: int) -> int:
    """Nearest-neighbour upscale so 8x8 digits and 32x32 CIFAR images are visible (at least 64 px)."""
    return image_side * max(1, int(np.ceil(64 / image_side)))


def compose(images: NDArray[np.uint8], cols: int, borders: list[tuple[int, int, int] | None] | None = None,
            labels: list[str] | None = None, gap: int = 4) -> Image.Image:
    """(K, H, W, C) images into one RGB grid; optional coloured border and a short label per tile."""
    k, h, w, c = images.shape
    side = tile_side(max(h, w))
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
