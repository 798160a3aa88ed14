"""Host memory kept for reuse between training steps (glibc's malloc).

A CPU training step allocates and frees the same activation and gradient buffers every batch. By default glibc
hands freed memory at the top of its heap back to the kernel once it passes a small trim threshold, and serves
large blocks with mmap, so every step page-faults the same memory in again: ~470 faults a step for the built-in
job (x1.13 steps/s without them), ~1,200 for a hand-written loop over a small CNN (x1.22; bench/host_memory.py).
Raising the two thresholds keeps that memory for the next step. The process's peak memory does not change; it is only not handed back between steps.

The setting is per process and cannot be undone, so it is made by the processes labcon owns (the session), and
`LABCON_KEEP_HOST_MEMORY=0` in the environment declines it. Never imports torch.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
import warnings

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# The largest mmap threshold glibc accepts on 64-bit: blocks below it come from the heap and are reused.
_MMAP_THRESHOLD = 32 * 1024 * 1024
_TRIM_THRESHOLD = 2**31 - 1  # mallopt takes a C int: free heap top up to ~2 GiB is kept
_YES = ("1", "true", "yes", "on", "")
_NO = ("0", "false", "no", "off")
_lock = threading.Lock()
_state: str | None = None  # "kept", "declined" or "unsupported" once decided


def _glibc() -> ctypes.CDLL | None:
    """This process's C library when it is glibc (the only one whose mallopt takes these settings)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    if not hasattr(libc, "gnu_get_libc_version") or not hasattr(libc, "mallopt"):
        return None  # musl and other C libraries
    return libc


def keep_freed_memory() -> bool:
    """Keep freed host memory for reuse (glibc's trim and mmap thresholds raised), once per process; True when in
    effect. False where the C library is not glibc or the environment says LABCON_KEEP_HOST_MEMORY=0."""
    global _state
    with _lock:
        if _state is None:
            said = os.environ.get("LABCON_KEEP_HOST_MEMORY", "1").strip().lower()
            if said not in _YES + _NO:
                warnings.warn(
                    f"LABCON_KEEP_HOST_MEMORY={said!r} is neither 1 nor 0 (yes/no, on/off, true/false): keeping "
                    "freed host memory for reuse, as when it is unset; set it to 0 to hand it back to the OS",
                    stacklevel=2,
                )
            if said in _NO:
                _state = "declined"
            else:
                libc = _glibc()
                ok = (
                    libc is not None
                    and libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD) == 1
                    and libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD) == 1
                )
                _state = "kept" if ok else "unsupported"
        return _state == "kept"


def host_memory() -> str:
    """How this process treats freed host memory, for the journal's environment record."""
    return {
        "kept": "kept for reuse (glibc)",
        "declined": "returned to the OS (LABCON_KEEP_HOST_MEMORY=0)",
        "unsupported": "returned to the OS (not glibc)",
    }.get(_state or "", "returned to the OS (default)")


def ram_bytes(free: bool = False) -> float:
    """This machine's RAM in bytes; with `free`, what a new allocation can still get (Linux's MemAvailable,
    else the total). inf when the platform will not say."""
    if free:
        try:
            with open("/proc/meminfo", encoding="ascii") as f:
                for line in f:
                    if line.startswith("MemAvailable:"):
                        return float(int(line.split()[1]) * 1024)
        except (OSError, ValueError, IndexError):
            pass  # not Linux: the total below
    try:
        return float(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (OSError, ValueError, AttributeError):
        return float("inf")
