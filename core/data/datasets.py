"""One dataset object for every source: scikit-learn's digits, torchvision sets, image folders.

Images are uint8 arrays (N, H, W, C) with C = 1 for gray sources and 3 otherwise; an image
folder is decoded once, in parallel and in bounded memory, into a memory-mapped array in the
cache, so the second open of 60,000 JPEGs costs a file map instead of ten seconds of decoding.
Unreadable files never stop a load: each one is listed in `Dataset.skipped` with its reason.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageOps, UnidentifiedImageError

from core.data import cache
from core.data.types import Images, Labels, ProgressFn, report

log = logging.getLogger("redex.datasets")

TRAIN, TEST = 0, 1
SPLIT_NAMES = ("train", "test")
MAX_PIXELS = 64_000_000  # a larger declared size is treated as a decompression bomb
AUTO_MAX_SIDE = 128  # auto image size: the first image's size, if no side exceeds this
POOL_THRESHOLD = 2_000  # folders with more files than this are decoded in worker processes

TORCHVISION_SOURCES: dict[str, tuple[str, str]] = {
    # name: (torchvision class, files expected under the root folder)
    "cifar10": ("CIFAR10", "cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}"),
    "cifar100": ("CIFAR100", "cifar-100-python/{train, test, meta}"),
    "mnist": ("MNIST", "MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte"),
    "fashion-mnist": ("FashionMNIST", "FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte"),
    "svhn": ("SVHN", "{train_32x32.mat, test_32x32.mat}"),
}
SOURCES = ("digits", *TORCHVISION_SOURCES, "imagefolder", "scale")  # scale: a result folder of `core scale`


class DatasetError(ValueError):
    """A dataset cannot be opened; the message says what was expected and where."""


@dataclass(frozen=True)
class Skipped:
    """A file that was not used, and why."""

    path: str
    reason: str


class LazyImages(Protocol):
    """Images read on demand (a Ray result folder's source): indexing decodes only what is asked for."""

    shape: tuple[int, int, int, int]

    def __len__(self) -> int: ...

    def __getitem__(self, index: Any) -> Images: ...


@dataclass(frozen=True, eq=False)
class Dataset:
    """Images with labels, splits and stable ids; `fingerprint` identifies the content for the cache."""

    name: str
    images: Images | LazyImages  # (N, H, W, C) uint8, possibly memory-mapped, or read on demand
    labels: Labels  # (N,) int64 index into `classes`
    split: NDArray[np.int8]  # (N,) TRAIN or TEST
    classes: tuple[str, ...]
    ids: NDArray[np.str_]  # (N,) relative file path, or "<source>/<split>/<index>"
    sizes: NDArray[np.int32]  # (N, 2) original (height, width) before any resize
    fingerprint: str
    root: str | None = None  # the image folder the ids are relative to
    skipped: tuple[Skipped, ...] = field(default=())
    origin: str | None = None  # a Ray result folder: the source its job read (its images come from there)
    job: dict[str, Any] = field(default_factory=dict)  # a Ray result folder: the job's record (its steps, figures)
    hint: str = ""  # what to run where a step needs pixels this dataset reads on demand

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def in_memory(self) -> bool:
        """Whether every pixel is at hand (an array, possibly memory-mapped), not read on demand."""
        return isinstance(self.images, np.ndarray)

    def pixels(self, purpose: str) -> Images:
        """All images as one array, or DatasetError saying why `purpose` cannot run on this dataset."""
        reason = self.missing_pixels(purpose)
        if reason:
            raise DatasetError(reason)
        assert isinstance(self.images, np.ndarray)
        return self.images

    def missing_pixels(self, purpose: str) -> str | None:
        """Why `purpose`, which needs every image decoded here, cannot run on this dataset; None when it can.

        Only a step that needs pixels asks: every other result reads the cache, where a Ray result
        folder's opener stored what its job computed.
        """
        if isinstance(self.images, np.ndarray):
            return None
        hint = self.hint or "run it with `python -m core scale` on the cluster"
        return (f"{purpose} needs every image decoded on this machine, and {self.name} is a Ray result folder "
                f"({len(self):,} images read on demand): {hint}, or open the source itself as the dataset")

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (int(self.images.shape[1]), int(self.images.shape[2]), int(self.images.shape[3]))

    def indices(self, split: int) -> NDArray[np.int64]:
        return np.flatnonzero(self.split == split)

    def counts(self) -> dict[str, dict[str, int]]:
        """Images per class name and split name."""
        out: dict[str, dict[str, int]] = {}
        for s, sname in enumerate(SPLIT_NAMES):
            per = np.bincount(self.labels[self.split == s], minlength=len(self.classes))
            out[sname] = {c: int(n) for c, n in zip(self.classes, per)}
        return out


def fingerprint_arrays(*arrays: NDArray[Any], extra: str = "") -> str:
    """A content fingerprint: blake2b over the arrays' bytes, shapes and dtypes."""
    h = hashlib.blake2b(digest_size=16)
    h.update(extra.encode())
    for a in arrays:
        h.update(f"{a.dtype.str}{a.shape}".encode())
        flat = a.reshape(len(a), -1) if a.ndim > 1 else a.reshape(-1, 1)
        step = max(1, (1 << 24) // max(1, flat.itemsize * flat.shape[1]))
        for lo in range(0, len(flat), step):  # in slices, so a memory-mapped array is never loaded whole
            h.update(np.ascontiguousarray(flat[lo : lo + step]).tobytes())
    return h.hexdigest()


def make_dataset(name: str, images: Images, labels: NDArray[Any], split: NDArray[Any], classes: tuple[str, ...],
          ids: NDArray[np.str_], sizes: NDArray[Any] | None = None, root: str | None = None,
          skipped: tuple[Skipped, ...] = (), fingerprint: str | None = None) -> Dataset:
    """A Dataset from arrays: gray images get their channel axis, the fingerprint covers pixels, labels and ids."""
    if images.ndim == 3:
        images = images[..., None]
    labels = np.asarray(labels, dtype=np.int64)
    split = np.asarray(split, dtype=np.int8)
    if sizes is None:
        sizes = np.tile(np.array(images.shape[1:3], dtype=np.int32), (len(labels), 1))
    fp = fingerprint or fingerprint_arrays(images, labels, split, ids, extra=json.dumps(classes))
    return Dataset(name, images, labels, split, classes, ids, np.asarray(sizes, np.int32), fp, root, skipped)


# --- scikit-learn digits: the embedded default ----------------------------------------------


def load_digits() -> Dataset:
    """scikit-learn's 1,797 8x8 digits as uint8, with a fixed stratified 75/25 train/test split."""
    from sklearn.datasets import load_digits as sk_digits
    from sklearn.model_selection import train_test_split

    bunch = sk_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    labels = bunch.target.astype(np.int64)
    _, test_idx = train_test_split(np.arange(len(labels)), test_size=0.25, random_state=0, stratify=labels)
    split = np.zeros(len(labels), np.int8)
    split[test_idx] = TEST
    ids = np.array([f"digits/{SPLIT_NAMES[s]}/{i:04d}" for i, s in enumerate(split)])
    return make_dataset("digits", images, labels, split, tuple(str(c) for c in range(10)), ids)


# --- torchvision datasets ----------------------------------------------------------------------


def load_torchvision(source: str, root: str | Path, download: bool = False) -> Dataset:
    """CIFAR-10/100, MNIST, Fashion-MNIST or SVHN from `root`, train and test splits together.

    With `download=True` torchvision fetches the files (online users); offline and missing,
    the error names the files expected under `root`.
    """
    import torchvision.datasets as tvd

    cls_name, expected = TORCHVISION_SOURCES[source]
    cls = getattr(tvd, cls_name)
    root = Path(root).expanduser()
    parts = []
    for s, sname in enumerate(SPLIT_NAMES):
        try:
            ds = cls(str(root), split=sname, download=download) if source == "svhn" else cls(
                str(root), train=(sname == "train"), download=download)
        except (RuntimeError, FileNotFoundError, OSError) as exc:
            raise DatasetError(
                f"{source} not found under {root}: expected {expected} there "
                f"(or pass --download when online). ({exc})") from None
        data = np.asarray(ds.data)
        if source == "svhn":
            data = data.transpose(0, 2, 3, 1)
            targets = np.asarray(ds.labels)
            classes: tuple[str, ...] = tuple(str(c) for c in range(10))
        else:
            targets = np.asarray(ds.targets)
            classes = tuple(ds.classes)
        parts.append((data, targets, np.full(len(targets), s, np.int8)))
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    split = np.concatenate([p[2] for p in parts])
    ids = np.array([f"{source}/{SPLIT_NAMES[s]}/{i}" for s, n in enumerate([len(p[1]) for p in parts])
                    for i in range(n)])
    return make_dataset(source, images, labels, split, classes, ids, root=str(root))


# --- image folders -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Entry:
    rel: str
    label: int
    split: int


def _is_split_layout(root: Path) -> bool:
    """root/{train,test}/<class>/...: a split folder exists and every other folder is hidden."""
    dirs = [p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return bool(dirs) and all(d in SPLIT_NAMES for d in dirs)


def scan_folder(root: Path) -> tuple[list[_Entry], tuple[str, ...], list[Skipped]]:
    """List image candidates under `root/<class>/...` or `root/{train,test}/<class>/...`.

    Symbolic links to folders are not followed (no loops); files outside a class folder and
    empty class folders are reported.
    """
    skipped: list[Skipped] = []
    bases = [(root / s, i) for i, s in enumerate(SPLIT_NAMES) if (root / s).is_dir()] if _is_split_layout(
        root) else [(root, TRAIN)]
    class_dirs: dict[str, list[tuple[Path, int]]] = {}
    for base, split in bases:
        for child in sorted(base.iterdir()):
            rel = child.relative_to(root).as_posix()
            if child.is_symlink() and child.is_dir():
                skipped.append(Skipped(rel, "symbolic link to a folder: not followed"))
            elif child.is_dir():
                class_dirs.setdefault(child.name, []).append((child, split))
            else:
                skipped.append(Skipped(rel, "not inside a class folder"))
    classes = tuple(sorted(class_dirs))
    entries: list[_Entry] = []
    for label, name in enumerate(classes):
        for cdir, split in class_dirs[name]:
            found = 0
            for dirpath, dirnames, filenames in os.walk(cdir, followlinks=False):
                dirnames.sort()
                for d in dirnames:
                    if (Path(dirpath) / d).is_symlink():
                        skipped.append(Skipped((Path(dirpath) / d).relative_to(root).as_posix(),
                                               "symbolic link to a folder: not followed"))
                for fname in sorted(filenames):
                    rel = (Path(dirpath) / fname).relative_to(root).as_posix()
                    if fname.startswith("."):
                        skipped.append(Skipped(rel, "hidden file"))
                        continue
                    entries.append(_Entry(rel, label, split))
                    found += 1
            if not found:
                skipped.append(Skipped(cdir.relative_to(root).as_posix(), "empty class folder"))
    return entries, classes, skipped


def _to_rgb(im: Image.Image) -> Image.Image:
    """Any Pillow mode to RGB: 16/32-bit gray scaled to 8 bits, transparency over white."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        top = 65535.0 if im.mode.startswith("I;16") or arr.max() > 255 else 255.0
        im = Image.fromarray(np.clip(np.rint(arr * (255.0 / top)), 0, 255).astype(np.uint8), "L")
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im.convert("RGB")


def decode_image(path: str | Path | bytes, size: tuple[int, int] | None) -> tuple[
        NDArray[np.uint8], tuple[int, int]]:
    """Decode one file (or its bytes) to (H, W, 3) uint8 at `size` (height, width); returns it and its own size.

    Raises ValueError/OSError with a readable reason for anything that is not a usable image.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(path) if isinstance(path, bytes) else path) as im:
                if im.width * im.height > MAX_PIXELS:
                    raise ValueError(f"declared size {im.width}x{im.height} exceeds {MAX_PIXELS:,} pixels")
                im.seek(0)
                im.load()
                rgb = _to_rgb(ImageOps.exif_transpose(im) or im)
        except Image.DecompressionBombError as exc:
            raise ValueError(f"decompression bomb: {exc}") from None
        except Image.DecompressionBombWarning as exc:
            raise ValueError(f"decompression bomb: {exc}") from None
        except UnidentifiedImageError:
            raise ValueError("not an image Pillow can read") from None
        except (OSError, SyntaxError) as exc:
            raise ValueError(f"unreadable image: {exc}") from None
    own = (rgb.height, rgb.width)
    if size is not None and own != size:
        rgb = rgb.resize((size[1], size[0]), Image.Resampling.LANCZOS)
    return np.asarray(rgb, dtype=np.uint8), own


def _decode_chunk(root: str, rels: list[str], size: tuple[int, int]) -> tuple[
        NDArray[np.uint8], NDArray[np.int32], NDArray[np.bool_], list[str]]:
    """Worker: decode a chunk; failures leave a zero image, ok=False and a reason."""
    out = np.zeros((len(rels), size[0], size[1], 3), np.uint8)
    sizes = np.zeros((len(rels), 2), np.int32)
    ok = np.zeros(len(rels), bool)
    reasons = [""] * len(rels)
    for k, rel in enumerate(rels):
        try:
            out[k], own = decode_image(os.path.join(root, rel), size)
            sizes[k] = own
            ok[k] = True
        except (ValueError, OSError) as exc:
            reasons[k] = str(exc) or type(exc).__name__
    return out, sizes, ok, reasons


def auto_size(h: int, w: int) -> tuple[int, int]:
    """The common size of a folder: its first image's, unless a side exceeds AUTO_MAX_SIDE."""
    return (h, w) if max(h, w) <= AUTO_MAX_SIDE else (AUTO_MAX_SIDE, AUTO_MAX_SIDE)


def _first_size(root: Path, entries: list[_Entry]) -> tuple[int, int] | None:
    for e in entries:
        try:
            _, (h, w) = decode_image(root / e.rel, None)
        except (ValueError, OSError):
            continue
        return auto_size(h, w)
    return None


def _chunks(n: int, step: int) -> Iterator[tuple[int, int]]:
    for lo in range(0, n, step):
        yield lo, min(n, lo + step)


def _decode_all(root: Path, entries: list[_Entry], size: tuple[int, int], out_dir: Path,
                workers: int, on_progress: ProgressFn | None) -> tuple[NDArray[np.bool_], list[str]]:
    """Decode into out_dir/images.npy (memory-mapped) in chunks; returns ok mask and reasons."""
    n = len(entries)
    arr = np.lib.format.open_memmap(out_dir / "raw.npy", mode="w+", dtype=np.uint8, shape=(n, *size, 3))
    sizes = np.zeros((n, 2), np.int32)
    ok = np.zeros(n, bool)
    reasons = [""] * n
    rels = [e.rel for e in entries]
    step = 512
    spans = list(_chunks(n, step))
    done = 0
    report(on_progress, "decode", 0, n, f"decoding {n:,} images")
    if workers > 1 and n > POOL_THRESHOLD:
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(_decode_chunk, str(root), rels[lo:hi], size) for lo, hi in spans]
            for (lo, hi), fut in zip(spans, futures):
                arr[lo:hi], sizes[lo:hi], ok[lo:hi], reasons[lo:hi] = fut.result()
                done += hi - lo
                report(on_progress, "decode", done, n)
    else:
        for lo, hi in spans:
            arr[lo:hi], sizes[lo:hi], ok[lo:hi], reasons[lo:hi] = _decode_chunk(str(root), rels[lo:hi], size)
            done += hi - lo
            report(on_progress, "decode", done, n)
    arr.flush()
    keep = np.flatnonzero(ok)
    final = np.lib.format.open_memmap(out_dir / "images.npy", mode="w+", dtype=np.uint8, shape=(len(keep), *size, 3))
    for lo, hi in _chunks(len(keep), 8192):
        final[lo:hi] = arr[keep[lo:hi]]
    final.flush()
    del arr, final
    (out_dir / "raw.npy").unlink()
    np.save(out_dir / "sizes.npy", sizes[keep])
    return ok, reasons


def _folder_key(root: Path, entries: list[_Entry], classes: tuple[str, ...], image_size: int | None) -> str:
    h = hashlib.sha256()
    for e in entries:
        try:
            st = (root / e.rel).stat()
            stamp = f"{st.st_size}\0{st.st_mtime_ns}"
        except OSError as exc:  # dangling link, no permission: decoding will report it
            stamp = type(exc).__name__
        h.update(f"{e.rel}\0{e.label}\0{e.split}\0{stamp}\n".encode())
    return cache.make_key("folder", {"root": str(root), "image_size": image_size, "classes": classes}, h.hexdigest())


def load_image_folder(root: str | Path, image_size: int | None = None, workers: int | None = None,
                      on_progress: ProgressFn | None = None) -> Dataset:
    """An image folder `root/<class>/*` or `root/{train,test}/<class>/*`, decoded once and cached.

    `image_size` resizes every image to a square of that side; None keeps the first image's
    size (capped at AUTO_MAX_SIDE) and resizes the others to it. The folder is only read.
    """
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise DatasetError(f"image folder not found: {root} (expected {root}/<class>/<image> "
                           f"or {root}/train/<class>/<image>)")
    entries, classes, scan_skipped = scan_folder(root)
    key = _folder_key(root, entries, classes, image_size)

    def build(out: Path) -> None:
        size = (image_size, image_size) if image_size else _first_size(root, entries)
        if size is None:
            raise DatasetError(f"no readable images under {root}: expected {root}/<class>/<image>")
        ok, reasons = _decode_all(root, entries, size, out, workers or min(8, os.cpu_count() or 1), on_progress)
        kept = [e for e, good in zip(entries, ok) if good]
        bad = [Skipped(e.rel, r) for e, good, r in zip(entries, ok, reasons) if not good]
        np.savez(out / "meta.npz", labels=np.array([e.label for e in kept], np.int64),
                 split=np.array([e.split for e in kept], np.int8), ids=np.array([e.rel for e in kept], dtype=str))
        images = np.load(out / "images.npy", mmap_mode="r")
        digest = fingerprint_arrays(images)
        cache.write_json(out / "manifest.json", {"digest": digest, "classes": classes,
                                                 "skipped": [[s.path, s.reason] for s in bad]})

    loaded = cache.cached_dir(key, build, _read_folder_cache)
    images, sizes, meta, manifest = loaded
    skipped = tuple(scan_skipped) + tuple(Skipped(p, r) for p, r in manifest["skipped"])
    for s in skipped:
        log.warning("skipped %s: %s", s.path, s.reason)
    if len(meta["labels"]) == 0:
        raise DatasetError(f"no readable images under {root}: {len(skipped)} files skipped")
    fp = fingerprint_arrays(meta["labels"], meta["split"], meta["ids"], extra=manifest["digest"] + json.dumps(classes))
    return make_dataset(f"imagefolder:{root}", images, meta["labels"], meta["split"], tuple(manifest["classes"]),
                 meta["ids"], sizes, str(root), skipped, fp)


def _read_folder_cache(path: Path) -> tuple[Images, NDArray[np.int32], dict[str, NDArray[Any]], dict[str, Any]]:
    """Open a decoded folder, verifying the pixels against the digest written last."""
    manifest = json.loads((path / "manifest.json").read_text())
    images = np.load(path / "images.npy", mmap_mode="r")
    if fingerprint_arrays(images) != manifest["digest"]:
        raise ValueError("decoded images do not match their digest")
    meta = cache.read_npz(path / "meta.npz")
    sizes = np.load(path / "sizes.npy", allow_pickle=False)
    if not len(images) == len(sizes) == len(meta["labels"]):
        raise ValueError("decoded folder entries disagree in length")
    return images, sizes, meta, manifest


# --- one entry point -----------------------------------------------------------------------------


def parse_spec(spec: str) -> tuple[str, str | None]:
    """'digits' or 'SOURCE:PATH' to (source, path), with a message listing the valid sources."""
    source, _, path = spec.partition(":")
    source = source.strip().lower()
    if source not in SOURCES:
        raise DatasetError(f"unknown dataset {spec!r}: must be one of {', '.join(SOURCES)} "
                           "(as 'digits' or 'SOURCE:ROOT', e.g. 'imagefolder:/data/photos')")
    if source != "digits" and not path:
        raise DatasetError(f"dataset {source!r} needs a root folder: '{source}:/path/to/root'")
    return source, path or None


Opener = Callable[[str, "ProgressFn | None"], "Dataset"]
_OPENERS: dict[str, Opener] = {}
_PROVIDERS = {"scale": "core.pipelines.results"}  # the module that registers each source opened from above


def register_source(name: str, opener: Opener) -> None:
    """Let a module above this one open a source: `opener(path, on_progress)` returns its Dataset.

    A Ray result folder (`scale:`) is opened by core.pipelines.results, which builds on this module and
    registers itself when imported; the data layer never imports the pipelines above it.
    """
    _OPENERS[name] = opener


def load_dataset(spec: str = "digits", *, download: bool = False, image_size: int | None = None,
                 on_progress: ProgressFn | None = None) -> Dataset:
    """Open any source by its spec string ('digits', 'cifar10:ROOT', 'imagefolder:PATH', ...)."""
    source, path = parse_spec(spec)
    if source == "digits":
        return load_digits()
    assert path is not None
    if source == "imagefolder":
        return load_image_folder(path, image_size=image_size, on_progress=on_progress)
    if source in _PROVIDERS:
        if source not in _OPENERS:
            raise DatasetError(f"the source {source!r} is opened by {_PROVIDERS[source]}, which is not loaded here: "
                               f"import {_PROVIDERS[source]} first (the app and the CLI do)")
        return _OPENERS[source](path, on_progress)
    return load_torchvision(source, path, download=download)
