"""The pair score's compiled CPU kernels (core.features.pair_score), and the tables of the lags they read.

Each runs over a batch of images or pairs in one pass with numba, on every core (prange), where torch would make a
dozen passes over arrays of the batch's size; the torch route in pair_score is the reference they are tested
against (tests/test_pair_score.py) and the one a GPU takes.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic
from numpy.typing import NDArray


@njit(parallel=True, cache=True, nogil=True)
def centre_and_sum(x: NDArray[np.float32], s: int, one: NDArray[np.float64], two: NDArray[np.float64]) -> None:
    """Mean-centre each image of x (U, C, h, w) in place; then one[u, a, b] and two[u, a, b]: the sum of its values and
    of their squares over the overlap of shift (a - s, b - s) (rows [max(d, 0), h + min(d, 0)) for d = a - s, columns
    likewise), all sums in float64, from running sums along each row and then down each column: one pass where torch
    took four (the mean, the centring, then a matrix product per axis for each sum)."""
    n, channels, h, w = x.shape
    lags = 2 * s + 1
    for u in prange(n):
        img = x[u]
        total = 0.0
        for c in range(channels):
            for i in range(h):
                for j in range(w):
                    total += img[c, i, j]
        mean = np.float32(total / (channels * h * w))
        flat = np.zeros((2, h, w))
        for c in range(channels):
            for i in range(h):
                for j in range(w):
                    v = img[c, i, j] - mean
                    img[c, i, j] = v
                    flat[0, i, j] += v
                    flat[1, i, j] += np.float64(v) * v
        across = np.empty((h, lags))  # each row summed over each shift's columns
        run = np.empty(max(h, w) + 1)
        for k in range(2):
            dest = one if k == 0 else two
            for i in range(h):
                run[0] = 0.0
                for j in range(w):
                    run[j + 1] = run[j] + flat[k, i, j]
                for b in range(lags):
                    across[i, b] = run[w + min(b - s, 0)] - run[max(b - s, 0)]
            for b in range(lags):
                run[0] = 0.0
                for i in range(h):
                    run[i + 1] = run[i] + across[i, b]
                for a in range(lags):
                    dest[u, a, b] = run[h + min(a - s, 0)] - run[max(a - s, 0)]


@dataclass(frozen=True)
class Lags:
    """What turns the cross-power spectra of pairs into their sums of products at the lags -s..s: the inverse DFT at
    those lags only, as one real matrix per orientation (the mirror image's phase ramp folded into its own), and the
    bins -ky that make the mirror image's conjugate spectrum out of an image's own."""

    kernel: torch.Tensor  # (H * (W // 2 + 1) * 2, (2s+1)^2) float32: [re, im] of each bin to the lags
    mirror: torch.Tensor  # the same for the mirror image, its ramp folded in
    rows: torch.Tensor  # (H,) int64, the bins -ky
    n: torch.Tensor  # (2s+1, 2s+1) float64: values in each overlap (times C)
    by_row: NDArray[np.float32]  # (2, 2s+1, H): [re, im] of the lag factors along ky (`lag_sums`)
    by_column: NDArray[np.float32]  # (2, 2, 2s+1, LANES): [orientation, re/im, dx, kx], zero past W // 2 + 1


def _real_kernel(e: torch.Tensor) -> torch.Tensor:
    """(K, L) complex to (2K, L) real, so that Re(X @ e) = [Re X, Im X] @ kernel."""
    return torch.cat([e.real, -e.imag]).to(torch.float32)


@lru_cache(maxsize=8)
def lag_tables(c: int, h: int, w: int, s: int, device: str) -> Lags:
    """corr[dy, dx] = Re(sum over bins of X[ky, kx] ey[dy, ky] ex[kx, dx]): asking 49 lags of 1,225 this way is
    one matrix product for a whole batch of pairs, many times faster than an inverse FFT followed by picking the
    lags. The mirror image's spectrum: G[ky, kx] = exp(-2 pi i kx (w - 1) / W) * conj(X[-ky, kx]), so conj(G) =
    ramp * X[-ky, kx] with ramp = exp(2 pi i kx (w - 1) / W) (conjugate symmetry of a real signal, plus a phase
    ramp), and the ramp, one factor per bin, goes into the mirror's matrix."""
    big_h, big_w = h + s, w + s
    d = torch.arange(-s, s + 1, dtype=torch.float64)
    ky, kx = torch.arange(big_h, dtype=torch.float64), torch.arange(big_w // 2 + 1, dtype=torch.float64)
    weight = torch.full((len(kx),), 2.0, dtype=torch.float64)  # each bin stands for itself and its mirror ...
    weight[0] = 1.0  # ... but the constant one
    if big_w % 2 == 0:
        weight[-1] = 1.0  # ... and the Nyquist one
    ey = torch.exp(2j * torch.pi * d[:, None] * ky[None, :] / big_h)  # (L, H)
    ex = weight[:, None] * torch.exp(2j * torch.pi * kx[:, None] * d[None, :] / big_w) / (big_h * big_w)  # (W2, L)
    e = torch.einsum("ay,xb->yxab", ey, ex).reshape(big_h, len(kx), -1)  # bin -> lag
    ramp = torch.exp(2j * torch.pi * kx * (w - 1) / big_w)
    dd = d.abs()
    n = c * (h - dd)[:, None] * (w - dd)[None, :]
    columns = torch.stack([ex, ramp[:, None] * ex]).transpose(1, 2)  # (orientation, dx, kx)
    by_column = np.zeros((2, 2, len(d), max(LANES, len(kx))), np.float32)
    by_column[:, 0, :, : len(kx)], by_column[:, 1, :, : len(kx)] = columns.real.numpy(), columns.imag.numpy()
    return Lags(_real_kernel(e.reshape(-1, e.shape[-1])).to(device),
                 _real_kernel((ramp[None, :, None] * e).reshape(-1, e.shape[-1])).to(device),
                 ((-torch.arange(big_h)) % big_h).to(device), n.to(device),
                 np.stack([ey.real.numpy(), ey.imag.numpy()]).astype(np.float32), by_column)


@intrinsic
def _prefetch(typingctx: Any, arr: Any, offset: Any) -> Any:
    """Ask the CPU to start loading the cache line of arr's element at flat `offset` (LLVM's prefetch: for reading,
    kept in every cache level); it changes no value and cannot fault."""
    sig = types.void(arr, types.intp)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        ptr = builder.gep(data, [args[1]])
        i32 = ir.IntType(32)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [ptr.type, i32, i32, i32]),
                                            "llvm.prefetch.p0")  # opaque pointers: LLVM 15 on (numba pinned)
        builder.call(fn, [ptr, ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return sig, codegen


@njit(parallel=True, cache=True, nogil=True, fastmath=True)
def cross_power(a: NDArray[np.float32], b: NDArray[np.float32], ia: NDArray[np.int64], ib: NDArray[np.int64],
                 rows: NDArray[np.int64], out: NDArray[np.float32]) -> None:
    """out[p, 0] = sum over channels of a[ia[p]] * conj(b[ib[p]]), and with a second orientation in out,
    out[p, 1] = sum over channels of a[ia[p]] * b[ib[p]] at the bins (rows[ky], kx). Spectra are (U, 2, C, H, W2)
    float32 (real parts, then imaginary parts), out (P, O, 2, H, W2); the innermost loops run along kx, over
    contiguous values, so that they compile to vector instructions. Gathering and multiplying in one pass is
    several times faster than torch's separate steps. The second images come from anywhere in a bank of up to 2 GiB;
    prefetching the next pair's, row by row while this one is multiplied, takes nearly half off (4.9 to 2.6 us a pair
    on CIFAR-sized spectra in a bank of 40,000 images, 2 threads; 3.6 us when all of it was asked for at once)."""
    channels, big_h, half = a.shape[2], a.shape[3], a.shape[4]
    mirror = out.shape[1] == 2
    n = len(ia)
    for p in prange(n):
        # the next pair's second image, anywhere in the bank: each of its rows is asked for as this pair reaches the
        # same row, so its load overlaps this pair's work without flooding the CPU's queue of pending loads
        x, y, o, z = a[ia[p]], b[ib[p]], out[p], b[ib[min(p + 1, n - 1)]]
        o[:] = 0.0
        for c in range(channels):
            for ky in range(big_h):
                for part in range(2):
                    _prefetch(z[part, c, ky], 0)  # type: ignore[call-arg]
                    _prefetch(z[part, c, ky], half - 1)  # type: ignore[call-arg]
                ry = rows[ky]
                for kx in range(half):
                    xr, xi = x[0, c, ky, kx], x[1, c, ky, kx]
                    yr, yi = y[0, c, ky, kx], y[1, c, ky, kx]
                    o[0, 0, ky, kx] += xr * yr + xi * yi
                    o[0, 1, ky, kx] += xi * yr - xr * yi
                if mirror:
                    for kx in range(half):
                        xr, xi = x[0, c, ky, kx], x[1, c, ky, kx]
                        mr, mi = y[0, c, ry, kx], y[1, c, ry, kx]
                        o[1, 0, ky, kx] += xr * mr - xi * mi
                        o[1, 1, ky, kx] += xr * mi + xi * mr


LANES = 24  # the bins kx of a row (W // 2 + 1) that `lag_sums` takes at once, padded: CIFAR-10's 18, digits' 5


@njit(parallel=True, cache=True, nogil=True, fastmath=True)
def lag_sums(a: NDArray[np.float32], b: NDArray[np.float32], ia: NDArray[np.int64], ib: NDArray[np.int64],
              rows: NDArray[np.int64], by_row: NDArray[np.float32], by_column: NDArray[np.float32],
              out: NDArray[np.float32]) -> None:
    """out[p, o, dy, dx]: the sum of products of pair p at lag (dy, dx), orientation o: `cross_power` and the matrix
    product with the lags' kernel in one pass, the inverse DFT at the lags taken one axis at a time (ky to dy, then
    kx to dx: a third of the kernel's operations), the bins kx of a row padded to LANES, so that every inner loop
    runs whole vectors. Per pair and term on CIFAR-sized spectra about 0.75x the time of the two steps (the same
    sums to float32 rounding: tests/test_pair_score.py)."""
    channels, big_h, half = a.shape[2], a.shape[3], a.shape[4]
    orientations, lags = out.shape[1], out.shape[2]
    n = len(ia)
    for p in prange(n):
        x, y, z = a[ia[p]], b[ib[p]], b[ib[min(p + 1, n - 1)]]
        ur = np.zeros((2, lags, LANES), np.float32)  # sum over ky of row ky's cross-power times the ky factor
        ui = np.zeros((2, lags, LANES), np.float32)
        xr = np.zeros((2, LANES), np.float32)  # row ky's cross-power spectrum, per orientation
        xi = np.zeros((2, LANES), np.float32)
        for ky in range(big_h):
            for c in range(channels):  # the next pair's second image, row by row (see `cross_power`)
                for part in range(2):
                    _prefetch(z[part, c, ky], 0)  # type: ignore[call-arg]
                    _prefetch(z[part, c, ky], half - 1)  # type: ignore[call-arg]
            ry = rows[ky]
            xr[:, :] = 0.0
            xi[:, :] = 0.0
            for c in range(channels):
                for kx in range(half):
                    ar, ai = x[0, c, ky, kx], x[1, c, ky, kx]
                    br, bi = y[0, c, ky, kx], y[1, c, ky, kx]
                    mr, mi = y[0, c, ry, kx], y[1, c, ry, kx]
                    xr[0, kx] += ar * br + ai * bi
                    xi[0, kx] += ai * br - ar * bi
                    xr[1, kx] += ar * mr - ai * mi
                    xi[1, kx] += ar * mi + ai * mr
            for o in range(orientations):
                for dy in range(lags):
                    er, ei = by_row[0, dy, ky], by_row[1, dy, ky]
                    for kx in range(LANES):
                        ur[o, dy, kx] += er * xr[o, kx] - ei * xi[o, kx]
                        ui[o, dy, kx] += er * xi[o, kx] + ei * xr[o, kx]
        for o in range(orientations):
            for dy in range(lags):
                for dx in range(lags):
                    acc = np.float32(0.0)
                    for kx in range(LANES):
                        acc += ur[o, dy, kx] * by_column[o, 0, dx, kx] - ui[o, dy, kx] * by_column[o, 1, dx, kx]
                    out[p, o, dy, dx] = acc


@njit(parallel=True, cache=True, nogil=True)
def normalised_best(sab: NDArray[np.float32], one_a: NDArray[np.float64], two_a: NDArray[np.float64],
                     one_b: NDArray[np.float64], two_b: NDArray[np.float64], ia: NDArray[np.int64],
                     ib: NDArray[np.int64], n: NDArray[np.float64], out: NDArray[np.float64]) -> None:
    """out[p] = the largest correlation of pair p over its lags and orientations, from its sums of products sab
    (P, O, L, L) and the overlap sums of both images: the same float64 operations in the same order as the torch
    version in `pair_score._best`, in one pass instead of a dozen over (P, O, L, L) arrays."""
    lags = n.shape[0]
    for p in prange(len(ia)):
        ja, jb = ia[p], ib[p]
        best = -np.inf
        for dy in range(lags):
            for dx in range(lags):
                sa, saa, nn = one_a[ja, dy, dx], two_a[ja, dy, dx], n[dy, dx]
                va = max(saa - sa * sa / nn, 0.0)
                for o in range(sab.shape[1]):
                    # as the second image, its overlap at (dy, dx) is its own region at (-dy, -dx); mirrored, (-dy, dx)
                    rx = lags - 1 - dx if o == 0 else dx
                    sb, sbb = one_b[jb, lags - 1 - dy, rx], two_b[jb, lags - 1 - dy, rx]
                    den = np.sqrt(va * max(sbb - sb * sb / nn, 0.0))
                    best = max(best, (np.float64(sab[p, o, dy, dx]) - sa * sb / nn) / max(den, 1e-6))
        out[p] = best
