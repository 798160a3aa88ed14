"""Matrix multiplication five ways, from three Python loops to the GPU: checked equal, timed, laddered."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor


def matmul_loops(a: Tensor, b: Tensor) -> Tensor:
    """Three nested Python loops over scalars: the definition, and about as slow as Python gets."""
    (ar, ac), (br, bc) = a.shape, b.shape
    if ac != br:
        raise ValueError(f"cannot multiply {ar}x{ac} by {br}x{bc}: inner sizes differ")
    c = torch.zeros(ar, bc, dtype=a.dtype)
    for i in range(ar):
        for j in range(bc):
            for k in range(ac):
                c[i, j] += a[i, k] * b[k, j]
    return c


def matmul_broadcast(a: Tensor, b: Tensor) -> Tensor:
    """One Python loop over rows; each row times the whole of b by broadcasting, then summed."""
    (ar, ac), (br, bc) = a.shape, b.shape
    if ac != br:
        raise ValueError(f"cannot multiply {ar}x{ac} by {br}x{bc}: inner sizes differ")
    c = torch.zeros(ar, bc, dtype=a.dtype)
    for i in range(ar):
        c[i] = (a[i, :, None] * b).sum(0)
    return c


def matmul_einsum(a: Tensor, b: Tensor) -> Tensor:
    """Einstein summation: the index expression of the definition, no Python loop."""
    return torch.einsum("ik,kj->ij", a, b)


def matmul_torch(a: Tensor, b: Tensor) -> Tensor:
    """torch's matmul (BLAS on the CPU)."""
    return a @ b


# Rough cost per multiply-add of each variant on a CPU (measured on a busy 2-core box, generous), used only
# to skip variants too slow for a size before running them.
_COST_PER_MAC = {"loops": 3e-5, "broadcast": 5e-9}
VARIANTS: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "loops": matmul_loops,
    "broadcast": matmul_broadcast,
    "einsum": matmul_einsum,
    "torch": matmul_torch,
}


@dataclass(frozen=True)
class MatmulRow:
    """One variant's result: seconds per product (None when skipped), speed-up vs the slowest run, a note."""

    name: str
    seconds: float | None
    speedup: float | None
    max_abs_err: float | None
    note: str = ""


def _time(fn: Callable[[], Tensor], sync: Callable[[], None], budget: float) -> tuple[float, Tensor]:
    """Best of at least three timed runs after a warm-up, more while within `budget` seconds; a variant whose
    first run alone exceeds the budget is timed by that run (the first call of a kernel can be slow: thread
    pools, lazy initialisation, so it is never the figure when there is time for more)."""
    t = time.perf_counter()
    out = fn()  # also the result to check
    sync()
    first = time.perf_counter() - t
    if first > budget:
        return first, out
    best, spent, runs = float("inf"), 0.0, 0
    while runs < 3 or spent < budget:
        t = time.perf_counter()
        fn()
        sync()
        dt = time.perf_counter() - t
        best, spent, runs = min(best, dt), spent + dt, runs + 1
    return best, out
    best = float("inf")  # the first run was a warm-up
    while spent < budget:
        t = time.perf_counter()
        fn()
        sync()
        dt = time.perf_counter() - t
        best, spent = min(best, dt), spent + dt
    return best, out


def matmul_bytes(m: int, k: int, n: int) -> int:
    """About the most memory bench_matmul holds at once: float32 inputs, their float64 copies and reference,
    a result and its float64 error check, and the broadcast variant's k x n temporary."""
    return 12 * (m * k + k * n) + 28 * m * n + 4 * k * n


def bench_matmul(
    m: int = 64, k: int = 64, n: int = 64, max_seconds: float = 5.0, gpu: bool | None = None
) -> list[MatmulRow]:
    """Time each variant on an m x k by k x n product; check every result equals torch's; a variant whose
    estimated time exceeds `max_seconds` is skipped with a note. gpu: None = when CUDA is available."""
    if min(m, k, n) < 1:
        raise ValueError(f"matrix sizes must be positive, got {m}x{k} @ {k}x{n}")
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(m, k, generator=g), torch.randn(k, n, generator=g)
    ref = a.double() @ b.double()
    tol = 1e-4 * k**0.5  # float32 sums of k products, against a float64 reference
    macs = m * k * n
    raw: list[tuple[str, float | None, float | None, str]] = []
    for name, fn in VARIANTS.items():
        est = _COST_PER_MAC.get(name, 0.0) * macs
        if est > max_seconds:
            raw.append(
                (name, None, None, f"skipped: about {est:.0f} s at this size (limit {max_seconds:g} s)")
            )
            continue
        secs, out = _time(lambda fn=fn: fn(a, b), lambda: None, min(1.0, max_seconds))
        raw.append((name, secs, float((out.double() - ref).abs().max()), ""))
    use_gpu = torch.cuda.is_available() if gpu is None else gpu
    if use_gpu:
        if not torch.cuda.is_available():
            raw.append(("gpu", None, None, "skipped: no CUDA device"))
        else:
            ga, gb = a.cuda(), b.cuda()
            secs, out = _time(lambda: ga @ gb, torch.cuda.synchronize, 1.0)
            raw.append(("gpu", secs, float((out.double().cpu() - ref).abs().max()), "cuda, synchronized"))
    bad = [(n_, e) for n_, _, e, _ in raw if e is not None and e > tol]
    if bad:
        raise AssertionError(f"matmul variants disagree with the reference: {bad} (tolerance {tol:.2g})")
    slowest = max(s for _, s, _, _ in raw if s is not None)
    return [MatmulRow(n_, s, slowest / s if s else None, e, note) for n_, s, e, note in raw]
