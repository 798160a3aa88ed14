"""Host memory kept for reuse between steps: a pattern of frees that glibc hands back to the kernel by default
page-faults every round; after keep_freed_memory() it reuses the memory. Counted, not timed, in a fresh process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from labcon.core.allocator import _glibc

pytestmark = pytest.mark.skipif(_glibc() is None, reason="glibc's malloc only")

# Ten 1 MiB blocks allocated, touched and freed per round, as a training step's activations are: the freed heap
# top (10 MiB) passes glibc's default trim threshold, so each round faults the pages in again.
CHILD = """
import json, resource, sys
from labcon.core import allocator
kept = allocator.keep_freed_memory() if sys.argv[1] == "keep" else False
import ctypes
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
def round_():
    blocks = [libc.malloc(1 << 20) for _ in range(10)]
    for b in blocks:
        ctypes.memset(b, 1, 1 << 20)
    for b in blocks:
        libc.free(b)
for _ in range(5):
    round_()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(50):
    round_()
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(json.dumps({"kept": kept, "faults": faults, "env": allocator.host_memory()}))
"""


def _child(mode: str, **env: str) -> dict:
    """The child's report; its stderr rides along as "stderr"."""
    out = subprocess.run(
        [sys.executable, "-c", CHILD, mode],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
        check=True,
    )
    return {**json.loads(out.stdout), "stderr": out.stderr}


def test_freed_memory_is_reused_instead_of_faulted_in_again() -> None:
    default, kept = _child("default"), _child("keep")
    assert not default["kept"] and kept["kept"] and kept["env"] == "kept for reuse (glibc)"
    # 50 rounds x 10 MiB = 128,000 pages touched: by default most are faulted in again, kept almost none.
    assert default["faults"] > 50_000, default
    assert kept["faults"] < 1_000, kept


def test_the_environment_can_decline_it() -> None:
    declined = _child("keep", LABCON_KEEP_HOST_MEMORY="0")
    assert not declined["kept"] and "LABCON_KEEP_HOST_MEMORY=0" in declined["env"]
    assert declined["faults"] > 50_000


def test_a_value_that_is_neither_yes_nor_no_is_named_not_guessed_silently() -> None:
    kept = _child("keep", LABCON_KEEP_HOST_MEMORY="nope")
    assert kept["kept"] and "LABCON_KEEP_HOST_MEMORY='nope' is neither 1 nor 0" in kept["stderr"]
    assert "set it to 0" in kept["stderr"]


def test_a_session_process_keeps_freed_memory_and_journals_it(tmp_path) -> None:
    """The real Session turns it on in its process, and a run's environment record says so."""
    code = (
        "import sys, json\n"
        "from labcon.session.config import parse_config\n"
        "from labcon.session.session import Session\n"
        "from labcon.session.journal_env import environment\n"
        "before = environment()['host_memory']\n"
        "s = Session(parse_config(''), sys.argv[1], journal=False)\n"
        "s.close()\n"
        "print(json.dumps([before, environment()['host_memory']]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=300, check=True
    )
    before, after = json.loads(out.stdout.strip().splitlines()[-1])
    assert before == "returned to the OS (default)" and after == "kept for reuse (glibc)"
