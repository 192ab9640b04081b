"""The bad-input corpus: every awkward file a user's folder may hold, with its expected outcome.

`build(root)` writes it; CASES says, per file, whether it is used (converted) or skipped, and
the words the skip reason must contain.
"""

from __future__ import annotations

import io
import os
import struct
from pathlib import Path

import numpy as np
from PIL import Image

USED, SKIPPED = "used", "skipped"

# relative path -> (outcome, substring of the reason for skipped files)
CASES: dict[str, tuple[str, str]] = {
    "train/cats/ok.png": (USED, ""),
    "train/cats/zero.jpg": (SKIPPED, "not an image"),
    "train/cats/truncated.jpg": (SKIPPED, "unreadable"),
    "train/cats/truncated.png": (SKIPPED, "unreadable"),
    "train/cats/text.jpg": (SKIPPED, "not an image"),
    "train/cats/bomb.png": (SKIPPED, "exceeds"),
    "train/cats/cmyk.jpg": (USED, ""),
    "train/cats/gray16.png": (USED, ""),
    "train/cats/palette.png": (USED, ""),
    "train/cats/palette_transparent.png": (USED, ""),
    "train/cats/rgba.png": (USED, ""),
    "train/cats/animated.gif": (USED, ""),
    "train/cats/exif_rotated.jpg": (USED, ""),
    "train/cats/huge_and_tiny/big.png": (USED, ""),
    "train/cats/huge_and_tiny/tiny.png": (USED, ""),
    "train/cats/.DS_Store": (SKIPPED, "hidden"),
    "train/cats/dangling.jpg": (SKIPPED, "unreadable"),
    "train/cats/loop": (SKIPPED, "symbolic link"),
    "train/empty_class": (SKIPPED, "empty class folder"),
    "train/only_one/one.png": (USED, ""),
    "train/ünïcode-クラス/a.png": (USED, ""),
    "train/<img src=x onerror=alert(1)>/x.png": (USED, ""),
    "train/stray.png": (SKIPPED, "not inside a class folder"),
    "test/cats/t.png": (USED, ""),
}


def _rgb(seed: int, size: tuple[int, int] = (24, 24)) -> Image.Image:
    arr = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(arr, "RGB")


def _bomb_png(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares width x height (Pillow refuses it before decoding)."""
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def build(root: Path) -> None:
    def path(rel: str) -> Path:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    _rgb(0).save(path("train/cats/ok.png"))
    path("train/cats/zero.jpg").write_bytes(b"")
    buf = io.BytesIO()
    _rgb(1).save(buf, "JPEG")
    path("train/cats/truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    buf = io.BytesIO()
    _rgb(2).save(buf, "PNG")
    path("train/cats/truncated.png").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    path("train/cats/text.jpg").write_text("this is not a JPEG\n")
    path("train/cats/bomb.png").write_bytes(_bomb_png(100_000, 100_000))
    _rgb(3).convert("CMYK").save(path("train/cats/cmyk.jpg"))
    Image.fromarray(np.arange(24 * 24, dtype=np.uint16).reshape(24, 24) * 100).save(
        path("train/cats/gray16.png"))
    _rgb(4).convert("P").save(path("train/cats/palette.png"))
    pal = _rgb(5).convert("P")
    pal.info["transparency"] = 0
    pal.save(path("train/cats/palette_transparent.png"), transparency=0)
    rgba = _rgb(6).convert("RGBA")
    rgba.putalpha(128)
    rgba.save(path("train/cats/rgba.png"))
    frames = [_rgb(7 + k).convert("P") for k in range(3)]
    frames[0].save(path("train/cats/animated.gif"), save_all=True, append_images=frames[1:], duration=100)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 on display
    _rgb(10, (30, 20)).save(path("train/cats/exif_rotated.jpg"), exif=exif)
    _rgb(11, (400, 300)).save(path("train/cats/huge_and_tiny/big.png"))
    _rgb(12, (3, 5)).save(path("train/cats/huge_and_tiny/tiny.png"))
    path("train/cats/.DS_Store").write_bytes(b"\0\1")
    os.symlink(root / "train/cats/missing-target.jpg", path("train/cats/dangling.jpg"))
    os.symlink(root / "train", path("train/cats/loop"))
    (root / "train/empty_class").mkdir(parents=True)
    _rgb(13).save(path("train/only_one/one.png"))
    _rgb(14).save(path("train/ünïcode-クラス/a.png"))
    _rgb(15).save(path("train/<img src=x onerror=alert(1)>/x.png"))
    _rgb(16).save(path("train/stray.png"))
    _rgb(17).save(path("test/cats/t.png"))
