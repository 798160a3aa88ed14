"""The torchrun launcher behind `labcon run --nproc N`: workers are started by torch.distributed.run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence


def _strip_nproc(argv: Sequence[str]) -> list[str]:
    """Drop --nproc N / --nproc=N so that the workers do not launch workers of their own."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            out.append(a)
    return out


def launch_command(argv: Sequence[str], nproc: int, module: str = "labcon") -> list[str]:
    """The torch.distributed.run command line that starts `nproc` workers running `python -m module argv`."""
    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise ValueError(f"nproc must be a whole number >= 1, got {nproc!r}")
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nnodes=1",
        f"--nproc-per-node={nproc}",
        "-m",
        module,
        *_strip_nproc(argv),
    ]


def launch(argv: Sequence[str], nproc: int, module: str = "labcon", env: dict[str, str] | None = None) -> int:
    """Run `nproc` workers of `python -m module argv` under torchrun; returns the job's exit status."""
    # A child process keeps torchrun's signal handlers and logging out of the caller's interpreter.
    proc = subprocess.Popen(launch_command(argv, nproc, module), env={**os.environ, **(env or {})})
    try:
        return proc.wait()
    except KeyboardInterrupt:
        # The terminal already sent SIGINT to torchrun (same process group); let it stop its workers.
        try:
            return proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)
            proc.wait()
            return 130
