"""Nearest neighbours by inner product for the candidates' cues: exact, or through an inverted-file index at scale.

Exact: on a CPU that computes bf16 natively (and on CUDA), every similarity in bf16 through the matrix
units, in the base's principal directions where few of them hold nearly all its energy (`principal_basis`:
112 of the 8-pixel cue's 192), then the best k + 16 of each query re-ranked in float32 over every dimension,
so the result equals an exact float32 search for all but a few queries in ten thousand (`make bench`, section
candidates, row "cue search": the share of queries with FAISS's flat index's neighbours, and the time). On CIFAR-10, in
every scope, the pairs at pair score >= 0.8 were the same as in every dimension; 6 of 1,028,821 across-class
pairs and 700 of 353,580 leakage pairs differed, all scored below 0.8. Smaller searches and other CPUs:
float32 through torch's matrix product (FAISS's flat index gives the same; torch's is faster here).
IVF: FAISS's inverted-file index (k-means cells of the base; each query searches the `nprobe` nearest
cells), for a base too large to compare with every vector; `make bench` measures its recall against the
exact search (docs/BENCHMARKS.md, docs/SCALE.md).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import torch
from numba import njit, prange
from numpy.typing import NDArray

from core.data.device import pick_device

RERANK = 16  # extra candidates per query re-ranked in float32 after the bf16 pass
BF16_FROM = 50_000_000  # query x base products from which the bf16 pass pays off
SIMILARITIES_PER_CHUNK = 2**28  # query x base similarities held at once (1 GB in float32; 16 GB at 4,096 x 1M)
NPROBE = 32  # IVF cells searched per query (`make bench`, section approximate, measures its recall)


def _bf16_available() -> bool:
    from core.features.training import cpu_has_native_bf16

    return pick_device() == "cuda" or cpu_has_native_bf16()


def exact_topk(queries: NDArray[np.float32], base: NDArray[np.float32], k: int, chunk: int = 4096,
               basis: NDArray[np.float32] | None | Literal["auto"] = "auto") -> tuple[
                   NDArray[np.int64], NDArray[np.float32]]:
    """Exact top-k of each query in base by inner product: (ids, similarities), best first. basis: the directions
    the bf16 pass compares in (`principal_basis`; "auto": the base's own, None: every dimension)."""
    k = min(k, len(base))
    if len(queries) == 0 or k == 0:
        return np.zeros((len(queries), k), np.int64), np.zeros((len(queries), k), np.float32)
    if uses_bf16(len(queries), len(base)):
        return _bf16_rerank(queries, base, k, chunk, principal_basis(base) if isinstance(basis, str) else basis)
    return _float32(queries, base, k, chunk)


def uses_bf16(n_queries: int, n_base: int) -> bool:
    """Whether a search of this size takes the bf16 pass (on CUDA, or a CPU that computes bf16 natively)."""
    return n_queries * n_base >= BF16_FROM and _bf16_available()


LOW_ENERGY = 0.995  # the bf16 pass compares in the base's principal directions that hold this share of its energy ...
LOW_SHARE = 0.75  # ... when they are at most this share of the dimensions (else in every dimension)
BASIS_SAMPLE = 20_000  # base vectors the principal directions are computed from


def principal_basis(base: NDArray[np.float32]) -> NDArray[np.float32] | None:
    """(d, m): the base's first m principal directions, uncentred (inner products are what is searched), m the fewest
    that hold LOW_ENERGY of its squared norm, rounded up to a multiple of 16; None where m > LOW_SHARE * d (random
    vectors, say) or the base is small. On CIFAR-10's 8-pixel cue, 112 of 192 dimensions."""
    n, d = base.shape
    if n < 2 * d:
        return None
    sample = base[:: max(1, n // BASIS_SAMPLE)].astype(np.float64)
    _, sv, vt = np.linalg.svd(sample, full_matrices=False)
    energy = np.cumsum(sv**2) / max(float(np.sum(sv**2)), 1e-300)
    m = min(d, -(-int(np.searchsorted(energy, LOW_ENERGY) + 1) // 16) * 16)
    return None if m > LOW_SHARE * d else np.ascontiguousarray(vt[:m].T, np.float32)


CPU_ROWS = 256  # queries per chunk on a CPU: see `_capped`


def _capped(chunk: int, n_base: int, device: str) -> int:
    """Queries per chunk, so that a chunk's similarities (queries x base) stay near 1 GB; on a CPU at most CPU_ROWS,
    so that they stay in the last-level cache while the top-k pass reads them (against 50,000 base vectors: 25 MB in
    bf16). On CIFAR-10's 8-pixel cue, 20,000 queries against 50,000 training images, that took one view from
    1.9-2.2 s to 1.2 s with the same neighbours (4,096 rows wrote and read back 410 MB a chunk)."""
    rows = min(chunk, CPU_ROWS) if device == "cpu" else chunk
    return max(1, min(rows, SIMILARITIES_PER_CHUNK // max(1, n_base)))


TOPK_BLOCK = 64  # similarities per block in `blocked_topk`


@njit(cache=True, nogil=True, inline="always")
def _offer(keys: NDArray[np.int32], ids: NDArray[np.int64], key: Any, idx: int) -> None:
    """Insert (key, idx) into the k best so far, kept best first in (keys, ids); equal keys keep the earlier."""
    b = len(keys) - 1
    if key <= keys[b]:
        return
    while b > 0 and keys[b - 1] < key:
        keys[b], ids[b] = keys[b - 1], ids[b - 1]
        b -= 1
    keys[b], ids[b] = key, idx


@njit(cache=True, nogil=True, inline="always")
def _bf16_key(v: Any) -> Any:
    """A bf16 number's int16 bits (as int32) mapped so that integer order is the numbers' order: a negative's
    magnitude bits are reversed."""
    return v ^ ((v >> 15) & 0x7FFF)


@njit(parallel=True, cache=True, nogil=True)
def _bf16_top_ids(bits: NDArray[np.int16], k: int, block: int, out: NDArray[np.int64]) -> None:
    """out[i] = the columns of row i's k largest values, best first (among equal values in any order), for bf16
    values read through their int16 view, ordered by `_bf16_key`. The two steps of `blocked_topk` in one pass over
    each row: each block's maximum, the k best of those; then the k best columns of every block whose maximum
    reaches the k-th."""
    q, n = bits.shape
    nb = n // block
    for i in prange(q):
        row = bits[i]
        maxima = np.empty(nb, np.int32)
        keys = np.empty(block, np.int16)
        best, where = np.full(k, -2**31, np.int32), np.full(k, -1, np.int64)
        for j in range(nb):
            for c in range(block):  # the keys first, in int16, then their maximum: both loops compile to vector code
                v = row[j * block + c]
                keys[c] = v ^ ((v >> np.int16(15)) & np.int16(0x7FFF))
            m = np.int32(keys.max())
            maxima[j] = m
            _offer(best, where, m, j)
        t = best[k - 1]  # the k block maxima are k values >= t: a value below t is not among the best k
        best[:] = -2**31
        for j in range(nb):
            if maxima[j] >= t:
                for c in range(j * block, j * block + block):
                    key = _bf16_key(np.int32(row[c]))
                    if key >= t:
                        _offer(best, where, key, c)
        for c in range(nb * block, n):  # the last, partial block
            key = _bf16_key(np.int32(row[c]))
            if key >= t:
                _offer(best, where, key, c)
        out[i] = where


def blocked_topk(s: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """torch.topk(s, k, dim=1) as (values, indices), in two steps: each row's best k blocks of TOPK_BLOCK columns
    by their maximum, then the best k of those blocks' columns. Exact: an element among the row's best k has a
    block maximum at least as large, so at most k - 1 blocks beat its block. The same values as torch.topk; among
    equal values the indices may differ. About 4x faster on a float32 row of 50,000 (a full top-k reads every
    element several times, a maximum once). On bf16 values on a CPU, both steps run as one compiled pass
    (`_bf16_top_ids`): 4,096 rows of 50,000 in 0.09 s against 0.18 s with torch's operations; its block maxima taken
    over int16 keys in vector code, 9.6 against 16.5 us a row (512 random rows of 50,000, 2 threads)."""
    q, n = s.shape
    nb = n // TOPK_BLOCK
    if nb < 4 * k:
        top = s.topk(k, dim=1)
        return top.values, top.indices
    if s.dtype == torch.bfloat16 and s.device.type == "cpu":  # torch reads bf16 through float conversions
        ids = np.empty((q, k), np.int64)
        _bf16_top_ids(s.contiguous().view(torch.int16).numpy(), k, TOPK_BLOCK, ids)
        indices = torch.from_numpy(ids)
        return s.gather(1, indices), indices
    blocks = s[:, : nb * TOPK_BLOCK].reshape(q, nb, TOPK_BLOCK).amax(2).topk(k, dim=1).indices
    cand = (blocks[:, :, None] * TOPK_BLOCK + torch.arange(TOPK_BLOCK, device=s.device)).reshape(q, -1)
    if n % TOPK_BLOCK:  # the last, partial block: its columns are always candidates
        cand = torch.cat([cand, torch.arange(nb * TOPK_BLOCK, n, device=s.device).expand(q, -1)], 1)
    top = s.gather(1, cand).topk(k, dim=1)
    return top.values, cand.gather(1, top.indices)


def _float32(queries: NDArray[np.float32], base: NDArray[np.float32], k: int,
             chunk: int) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
    """Every similarity in float32 (torch's matrix product), the top k of each query: FAISS's flat index gives the
    same up to rounding and ties, about 3x slower here (5,000 x 5,000 192-d vectors: 0.2 s against 0.59 s while
    another process shared the cores)."""
    device = pick_device()
    full = torch.from_numpy(np.ascontiguousarray(base, np.float32)).to(device)
    chunk = _capped(chunk, len(base), device)
    ids, sims = [], []
    with torch.inference_mode():
        for lo in range(0, len(queries), chunk):
            q = torch.from_numpy(np.ascontiguousarray(queries[lo : lo + chunk], np.float32)).to(device)
            values, indices = blocked_topk(q @ full.T, k)
            ids.append(indices.cpu().numpy().astype(np.int64))
            sims.append(values.cpu().numpy().astype(np.float32))
    return np.concatenate(ids), np.concatenate(sims)


def faiss_flat_topk(queries: NDArray[np.float32], base: NDArray[np.float32], k: int,
                    chunk: int = 4096) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
    """The library's exact search (FAISS IndexFlatIP): the reference the tests and `make bench` compare with."""
    import faiss

    k = min(k, len(base))
    index = faiss.IndexFlatIP(base.shape[1])
    index.add(np.ascontiguousarray(base, np.float32))
    ids, sims = [], []
    for lo in range(0, len(queries), chunk):
        d, i = index.search(np.ascontiguousarray(queries[lo : lo + chunk], np.float32), k)
        ids.append(i.astype(np.int64))
        sims.append(d.astype(np.float32))
    return np.concatenate(ids), np.concatenate(sims)


def _bf16_rerank(queries: NDArray[np.float32], base: NDArray[np.float32], k: int, chunk: int,
                 basis: NDArray[np.float32] | None) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
    """Every similarity in bf16 (in the directions of `basis` when given), each query's best k + RERANK of those
    re-ranked in float32 over every dimension."""
    device = pick_device()
    full = torch.from_numpy(np.ascontiguousarray(base, np.float32)).to(device)
    project = None if basis is None else torch.from_numpy(basis).to(device)
    with torch.inference_mode():
        low = (full if project is None else full @ project).to(torch.bfloat16)
    chunk = _capped(chunk, len(base), device)
    wide = min(len(base), k + RERANK)
    ids, sims = [], []
    with torch.inference_mode():
        for lo in range(0, len(queries), chunk):
            q = torch.from_numpy(np.ascontiguousarray(queries[lo : lo + chunk], np.float32)).to(device)
            q_low = (q if project is None else q @ project).to(torch.bfloat16)
            cand = blocked_topk(q_low @ low.T, wide)[1]  # in bf16: a float copy costs more
            exact = torch.einsum("qd,qkd->qk", q, full[cand])
            top = exact.topk(k, dim=1)
            ids.append(cand.gather(1, top.indices).cpu().numpy().astype(np.int64))
            sims.append(top.values.cpu().numpy().astype(np.float32))
    return np.concatenate(ids), np.concatenate(sims)


def ivf_cells(n: int) -> int:
    """Cells of the IVF index for a base of n vectors: about 4 sqrt(n), at least 1."""
    return max(1, min(n // 40, round(4 * math.sqrt(n))))


class IvfIndex:
    """A FAISS IVF-Flat index over `base` (k-means cells; each query searches the `nprobe` nearest cells), built
    once and searched by every query view."""

    def __init__(self, base: NDArray[np.float32], nprobe: int = NPROBE, cells: int | None = None,
                 seed: int = 0) -> None:
        import faiss

        self.n = len(base)
        d = base.shape[1]
        nlist = cells or ivf_cells(self.n)
        self.quantizer = faiss.IndexFlatIP(d)  # held: the index refers to it
        self.index = faiss.IndexIVFFlat(self.quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
        if self.n:
            rng = np.random.default_rng(seed)
            sample = base[np.sort(rng.choice(self.n, min(self.n, 64 * nlist), replace=False))]
            self.index.train(np.ascontiguousarray(sample, np.float32))
            self.index.add(np.ascontiguousarray(base, np.float32))
        self.index.nprobe = min(nprobe, nlist)

    def search(self, queries: NDArray[np.float32], k: int) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
        """Approximate top-k by inner product (-1 where a query finds fewer than k)."""
        k = min(k, self.n)
        if len(queries) == 0 or k == 0:
            return np.zeros((len(queries), k), np.int64), np.zeros((len(queries), k), np.float32)
        sims, ids = self.index.search(np.ascontiguousarray(queries, np.float32), k)
        return ids.astype(np.int64), sims.astype(np.float32)


class ExactIndex:
    """The exact search (exact_topk) behind the same interface as IvfIndex."""

    def __init__(self, base: NDArray[np.float32]) -> None:
        self.base = base
        self.basis: NDArray[np.float32] | None | Literal["auto"] = "auto"  # found once, at the first bf16 search

    def search(self, queries: NDArray[np.float32], k: int) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
        if isinstance(self.basis, str) and uses_bf16(len(queries), len(self.base)):
            self.basis = principal_basis(self.base)
        return exact_topk(queries, self.base, k, basis=self.basis)


def vector_index(base: NDArray[np.float32], search: str) -> IvfIndex | ExactIndex:
    """An index over base for many query sets: 'ivf' (built once) or 'exact'."""
    return IvfIndex(base) if search == "ivf" else ExactIndex(base)


def ivf_topk(queries: NDArray[np.float32], base: NDArray[np.float32], k: int, nprobe: int = NPROBE,
             cells: int | None = None, seed: int = 0) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
    """Approximate top-k by inner product through a FAISS IVF-Flat index (-1 where a query finds fewer than k)."""
    return IvfIndex(base, nprobe, cells, seed).search(queries, k)
