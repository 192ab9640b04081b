"""Exact Hamming-radius search: every pair of codes within the radius, none missed.

Two exact routes, chosen by a cost model:
- brute force: every pair, XOR + popcount in a compiled loop (quadratic, but ~1 ns a pair);
- multi-index hashing (Norouzi et al., "Fast Exact Search in Hamming Space with Multi-Index
  Hashing"): the bits are split into m blocks with radii r_b, sum(r_b + 1) = radius + 1, so any pair
  within radius has some block b within r_b (pigeonhole). Each code probes the buckets of its block
  values flipped in at most r_b bits; a candidate pair is verified with the full popcount and
  reported only from the first block that qualifies, so each pair appears exactly once.
Both run in chunks of rows on threads (the kernels release the GIL), so memory stays bounded
by the pairs found plus one bucket table.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import combinations
from math import comb

import numpy as np
from numba import njit
from numpy.typing import NDArray

from core.data.types import Codes, ProgressFn, report

log = logging.getLogger("redex.neighbors")

MAX_BLOCK_BITS = 22  # bucket table of 2**22 offsets (32 MiB) at most
BRUTE_WEIGHT = 0.2  # a vectorised brute-force pair check costs about a fifth of an MIH probe or candidate
U = np.uint64


@dataclass(frozen=True)
class Pairs:
    """Pairs (i < j) within the search radius and their Hamming distances, sorted by (i, j)."""

    i: NDArray[np.int64]
    j: NDArray[np.int64]
    d: NDArray[np.int16]

    def __len__(self) -> int:
        return int(self.i.shape[0])

    def within(self, radius: int) -> Pairs:
        keep = self.d <= radius
        return Pairs(self.i[keep], self.j[keep], self.d[keep])

    def select(self, mask: NDArray[np.bool_]) -> Pairs:
        return Pairs(self.i[mask], self.j[mask], self.d[mask])


def to_words(codes: Codes) -> NDArray[np.uint64]:
    """(N, B) packed bytes to (N, ceil(B/8)) uint64 words (zero-padded); popcount is order-free."""
    n, b = codes.shape
    pad = (-b) % 8
    if pad:
        codes = np.concatenate([codes, np.zeros((n, pad), np.uint8)], axis=1)
    return np.ascontiguousarray(codes).view(np.uint64).reshape(n, -1)


@njit(inline="always")
def _pop(x: np.uint64) -> np.uint64:
    x = x - ((x >> U(1)) & U(0x5555555555555555))
    x = (x & U(0x3333333333333333)) + ((x >> U(2)) & U(0x3333333333333333))
    x = (x + (x >> U(4))) & U(0x0F0F0F0F0F0F0F0F)
    return (x * U(0x0101010101010101)) >> U(56)


@njit(inline="always")
def _dist(words: NDArray[np.uint64], i: int, j: int) -> int:
    d = 0
    for w in range(words.shape[1]):
        d += int(_pop(words[i, w] ^ words[j, w]))
    return d


@njit(nogil=True, cache=True)
def _grow(a: NDArray[np.int64], size: int) -> NDArray[np.int64]:
    out = np.empty(size, a.dtype)
    out[: a.shape[0]] = a
    return out


@njit(nogil=True, cache=True)
def _row_hits(words: NDArray[np.uint64], i: int, radius: int) -> int:
    """How many j > i lie within radius of row i: a branch-free loop the compiler vectorises."""
    n, nw = words.shape
    c = 0
    if nw == 1:
        wi = words[i, 0]
        for j in range(i + 1, n):
            c += int(_pop(wi ^ words[j, 0]) <= U(radius))
    else:
        for j in range(i + 1, n):
            c += int(_dist(words, i, j) <= radius)
    return c


@njit(nogil=True, cache=True)
def _brute_kernel(words: NDArray[np.uint64], lo: int, hi: int, radius: int) -> tuple[
        NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """Rows lo..hi against every later row; rows are counted first and scanned again only on a hit."""
    n = words.shape[0]
    cap = 1024
    ii = np.empty(cap, np.int64)
    jj = np.empty(cap, np.int64)
    dd = np.empty(cap, np.int64)
    k = 0
    for i in range(lo, hi):
        if _row_hits(words, i, radius) == 0:
            continue
        for j in range(i + 1, n):
            d = _dist(words, i, j)
            if d <= radius:
                if k == cap:
                    cap *= 2
                    ii, jj, dd = _grow(ii, cap), _grow(jj, cap), _grow(dd, cap)
                ii[k], jj[k], dd[k] = i, j, d
                k += 1
    return ii[:k], jj[:k], dd[:k]


@njit(nogil=True, cache=True)
def _mih_kernel(words: NDArray[np.uint64], blocks: NDArray[np.int64], radii: NDArray[np.int64], b: int,
                order: NDArray[np.int64], start: NDArray[np.int64], masks: NDArray[np.int64],
                lo: int, hi: int, radius: int) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    cap = 1024
    ii = np.empty(cap, np.int64)
    jj = np.empty(cap, np.int64)
    dd = np.empty(cap, np.int64)
    k = 0
    for i in range(lo, hi):
        v = blocks[i, b]
        for mask in masks:
            u = v ^ mask
            for p in range(start[u], start[u + 1]):
                j = order[p]
                if j <= i:
                    continue
                first = True  # report from the first block whose radius the pair meets
                for b2 in range(b):
                    if int(_pop(U(blocks[i, b2] ^ blocks[j, b2]))) <= radii[b2]:
                        first = False
                        break
                if not first:
                    continue
                d = _dist(words, i, j)
                if d <= radius:
                    if k == cap:
                        cap *= 2
                        ii, jj, dd = _grow(ii, cap), _grow(jj, cap), _grow(dd, cap)
                    ii[k], jj[k], dd[k] = i, j, d
                    k += 1
    return ii[:k], jj[:k], dd[:k]


@dataclass(frozen=True)
class Plan:
    """The route the search takes and its estimated cost (in pair checks)."""

    route: str  # "brute" or "mih"
    blocks: tuple[tuple[int, int], ...]  # (first bit, bit count) per block, for "mih"
    radii: tuple[int, ...]
    cost: float


def _split_bits(bits: int, m: int) -> tuple[tuple[int, int], ...]:
    sizes = [bits // m + (1 if b < bits % m else 0) for b in range(m)]
    starts = np.cumsum([0, *sizes[:-1]])
    return tuple((int(s), int(z)) for s, z in zip(starts, sizes))


def _radii(radius: int, m: int) -> tuple[int, ...]:
    """Block radii with sum(r + 1) >= radius + 1, as even as possible (all 0 when m > radius)."""
    if m > radius:
        return (0,) * m
    return tuple((radius + 1) // m - 1 + (1 if b < (radius + 1) % m else 0) for b in range(m))


def _block_values(words: NDArray[np.uint64], first: int, count: int) -> NDArray[np.int64]:
    """Bits [first, first+count) of each row's concatenated words, as integers."""
    out = np.zeros(len(words), np.uint64)
    got = 0
    while got < count:
        pos = first + got
        w, off = divmod(pos, 64)
        take = min(count - got, 64 - off)
        part = (words[:, w] >> U(off)) & U((1 << take) - 1)
        out |= part << U(got)
        got += take
    return out.astype(np.int64)


def plan_search(words: NDArray[np.uint64], radius: int, bits: int) -> Plan:
    """Pick brute force or the cheapest block count for multi-index hashing.

    MIH cost per block = probes x (n + sum of squared bucket counts): the squared counts are
    the candidates an exact probe meets, read off the real occupancy, so skewed real hashes
    (many near-blank images share buckets) are not mistaken for uniform ones.
    """
    n = len(words)
    best = Plan("brute", (), (), BRUTE_WEIGHT * n * (n - 1) / 2 * words.shape[1])
    m_min = max(2, -(-bits // MAX_BLOCK_BITS))
    for m in range(m_min, min(bits // 4, max(m_min, radius + 1) + 2) + 1):
        blocks, radii = _split_bits(bits, m), _radii(radius, m)
        cost = 0.0
        for (first, count), r in zip(blocks, radii):
            probes = sum(comb(count, k) for k in range(r + 1))
            occ = np.bincount(_block_values(words, first, count)).astype(np.float64)
            cost += probes * (n + float((occ**2).sum()))  # probes, plus candidates per probe
        if cost < best.cost:
            best = Plan("mih", blocks, radii, cost)
    return best


def _masks(count: int, r: int) -> NDArray[np.int64]:
    out = [0]
    for k in range(1, r + 1):
        out += [sum(1 << b for b in c) for c in combinations(range(count), k)]
    return np.array(out, np.int64)


def _spans(n: int, parts: int, triangular: bool) -> list[tuple[int, int]]:
    """Row ranges of about equal work (brute force rows get cheaper as i grows)."""
    if n == 0:
        return []
    if not triangular:
        edges = np.linspace(0, n, parts + 1).astype(int)
    else:
        frac = np.linspace(0, 1, parts + 1)
        edges = (n * (1 - np.sqrt(1 - frac))).astype(int)
    edges[-1] = n
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:]) if b > a]


@dataclass(frozen=True)
class Part:
    """One independent piece of a search: rows lo..hi against later rows (block -1, brute force),
    or rows lo..hi probing MIH block `block`. Parts of one plan never report the same pair."""

    block: int
    lo: int
    hi: int


def partition(plan: Plan, n: int, pieces: int) -> list[Part]:
    """Split a plan into parts of about equal work (pieces per block for MIH)."""
    if plan.route == "brute":
        return [Part(-1, lo, hi) for lo, hi in _spans(n, pieces, True)]
    return [Part(b, lo, hi) for b in range(len(plan.blocks)) for lo, hi in _spans(n, pieces, False)]


def _table(vals: NDArray[np.int64], count: int) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Bucket table of one block: row order sorted by block value, and each value's start offset."""
    order = np.argsort(vals, kind="stable").astype(np.int64)
    start = np.zeros((1 << count) + 1, np.int64)
    np.cumsum(np.bincount(vals, minlength=1 << count), out=start[1:])
    return order, start


class _Search:
    """A plan's shared state: the block values and the bucket tables, built once and read by every part."""

    def __init__(self, words: NDArray[np.uint64], plan: Plan, radius: int, needed: set[int] | None = None) -> None:
        self.words, self.plan, self.radius = words, plan, radius
        self.tables: dict[int, tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]] = {}
        if plan.route == "mih":
            self.blocks = np.stack([_block_values(words, f, c) for f, c in plan.blocks], axis=1)
            self.radii = np.array(plan.radii, np.int64)
            for b, ((_, count), r) in enumerate(zip(plan.blocks, plan.radii)):
                if needed is None or b in needed:
                    self.tables[b] = (*_table(self.blocks[:, b], count), _masks(count, r))

    def run(self, part: Part) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
        if part.block < 0:
            return _brute_kernel(self.words, part.lo, part.hi, self.radius)  # type: ignore[no-any-return]
        order, start, masks = self.tables[part.block]
        return _mih_kernel(self.words, self.blocks, self.radii, part.block, order, start,  # type: ignore[no-any-return]
                           masks, part.lo, part.hi, self.radius)


def run_parts(words: NDArray[np.uint64], plan: Plan, parts: list[Part], radius: int) -> Pairs:
    """Run some parts of a plan (what one distributed worker does); tables only for their blocks."""
    search = _Search(words, plan, radius, {p.block for p in parts})
    return merge([search.run(p) for p in parts])


def merge(results: Sequence[tuple[NDArray[np.int64], ...] | Pairs]) -> Pairs:
    """Concatenate the pairs of disjoint parts, sorted by (i, j)."""
    triples = [(r.i, r.j, r.d) if isinstance(r, Pairs) else r for r in results]
    if not triples:
        return Pairs(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int16))
    i = np.concatenate([radius[0] for radius in triples]).astype(np.int64)
    j = np.concatenate([radius[1] for radius in triples]).astype(np.int64)
    d = np.concatenate([radius[2] for radius in triples]).astype(np.int16)
    order = np.lexsort((j, i))
    return Pairs(i[order], j[order], d[order])


def check_radius(codes: Codes, radius: int) -> None:
    bits = codes.shape[1] * 8
    if not 0 <= radius <= bits:
        raise ValueError(f"radius must be between 0 and {bits} for {bits}-bit hashes, got {radius}")


def find_pairs(codes: Codes, radius: int, *, threads: int | None = None, plan: Plan | None = None,
               on_progress: ProgressFn | None = None) -> Pairs:
    """Every pair (i < j) of rows of `codes` within Hamming distance `radius`, exactly."""
    check_radius(codes, radius)
    words = to_words(codes)
    n = len(words)
    plan = plan or plan_search(words, radius, codes.shape[1] * 8)
    threads = threads or min(8, os.cpu_count() or 1)
    log.info("hamming search: n=%d radius=%d route=%s blocks=%d", n, radius, plan.route, len(plan.blocks))
    parts = partition(plan, n, 64 * threads if plan.route == "brute" else 16 * threads)
    search = _Search(words, plan, radius)
    results = []
    with ThreadPoolExecutor(threads) as pool:
        futures: list[Future[tuple[NDArray[np.int64], ...]]] = [pool.submit(search.run, p) for p in parts]
        for k, fut in enumerate(futures):
            results.append(fut.result())
            report(on_progress, "search", k + 1, len(futures), f"{plan.route} search, radius {radius}")
    return merge(results)


def brute_force_pairs(codes: Codes, radius: int) -> Pairs:
    """Plain numpy reference (quadratic memory per chunk): used by tests to check the kernels."""
    words = to_words(codes)
    ii, jj, dd = [], [], []
    for lo in range(0, len(words), 512):
        x = words[lo : lo + 512, None, :] ^ words[None, :, :]
        d = np.bitwise_count(x).sum(axis=2)
        a, b = np.nonzero(d <= radius)
        a = a + lo
        keep = b > a
        ii.append(a[keep])
        jj.append(b[keep])
        dd.append(d[a[keep] - lo, b[keep]])
    i, j, d_ = (np.concatenate(v) if v else np.zeros(0, np.int64) for v in (ii, jj, dd))
    order = np.lexsort((j, i))
    return Pairs(i[order].astype(np.int64), j[order].astype(np.int64), d_[order].astype(np.int16))
