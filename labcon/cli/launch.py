"""The torchrun launcher behind `labcon run --nproc N`: workers are started by torch.distributed.run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence

# The launcher's own options: the workers must not see them (or they would launch workers of their own).
LAUNCH_OPTIONS = ("--nproc", "--nnodes", "--node-rank", "--rdzv")


def _strip_launch_options(argv: Sequence[str]) -> list[str]:
    """Drop --nproc N / --nnodes N / --node-rank K / --rdzv HOST:PORT (and their --opt=value forms)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a in LAUNCH_OPTIONS:
            skip = True
        elif not a.startswith(tuple(f"{o}=" for o in LAUNCH_OPTIONS)):
            out.append(a)
    return out


def _whole(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be a whole number >= {low}, got {value!r}")
    return value


def check_nodes(nproc: int, nnodes: int = 1, node_rank: int = 0, rdzv: str | None = None) -> None:
    """The launcher's settings, each refused with what is allowed (ValueError): counts, the node's rank among
    the nodes, and a rendezvous only (and always) for several nodes."""
    _whole("--nproc", nproc, 1)
    _whole("--nnodes", nnodes, 1)
    _whole("--node-rank", node_rank, 0)
    if node_rank >= nnodes:
        raise ValueError(
            f"--node-rank {node_rank} needs --nnodes {node_rank + 1} or more (a node's rank is 0..nnodes-1); "
            "give --nnodes with the number of machines"
        )
    if rdzv and nnodes == 1:
        raise ValueError(
            "--rdzv is node 0's address for a multi-node run; give --nnodes N too, or drop --rdzv"
        )
    if nnodes > 1:
        host, _, port = (rdzv or "").rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(
                f"--rdzv must be HOST:PORT of node 0 (e.g. 10.0.0.1:29500) for --nnodes {nnodes}, got {rdzv!r}"
            )


def launch_command(
    argv: Sequence[str],
    nproc: int,
    module: str = "labcon",
    *,
    nnodes: int = 1,
    node_rank: int = 0,
    rdzv: str | None = None,
) -> list[str]:
    """The torch.distributed.run command line that starts `nproc` workers running `python -m module argv`.

    With `nnodes` > 1 this is node `node_rank` of a static rendezvous at `rdzv` (HOST:PORT of node 0), as
    torchrun's --nnodes/--node-rank/--master-addr/--master-port."""
    check_nodes(nproc, nnodes, node_rank, rdzv)
    if nnodes == 1:
        where = ["--standalone", "--nnodes=1"]
    else:
        host, _, port = (rdzv or "").rpartition(":")
        where = [
            f"--nnodes={nnodes}",
            f"--node-rank={node_rank}",
            f"--master-addr={host}",
            f"--master-port={port}",
        ]
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        *where,
        f"--nproc-per-node={nproc}",
        "-m",
        module,
        *_strip_launch_options(argv),
    ]


def launch(
    argv: Sequence[str],
    nproc: int,
    module: str = "labcon",
    env: dict[str, str] | None = None,
    **where: object,
) -> int:
    """Run `nproc` workers of `python -m module argv` under torchrun; returns the job's exit status.

    `where` is nnodes / node_rank / rdzv for a multi-node job (see launch_command)."""
    # A child process keeps torchrun's signal handlers and logging out of the caller's interpreter.
    cmd = launch_command(argv, nproc, module, **where)  # type: ignore[arg-type]
    proc = subprocess.Popen(cmd, env={**os.environ, **(env or {})})
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
