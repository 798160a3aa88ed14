"""`labcon bench matmul | backprop`: the course's foundations, timed in the terminal (table and bar chart);
`labcon profile CONFIG`: where a training step's time goes."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from labcon.cli.argtypes import session_name
from labcon.core.allocator import ram_bytes
from labcon.errors import LabconError

# On a small shared machine torch's threads can wait on each other for longer than a small product takes.
THREADS_HELP = "torch CPU threads (default: torch's choice; 1 gives steadier times on a busy machine)"


def _threads(n: int) -> None:
    if n < 0:
        raise LabconError(f"--threads must be 0 (torch's choice) or more, got {n}")
    if n:
        import torch

        torch.set_num_threads(n)


def _check_memory(need: int, what: str, fix: str) -> None:
    """Refuse a benchmark before it allocates more memory than the machine has free."""
    free = ram_bytes(free=True)
    if need > free:
        raise LabconError(
            f"{what} needs about {_fmt_bytes(need)} of memory, more than the {_fmt_bytes(free)} available; {fix}"
        )


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.3g} {unit}"
        n /= 1000
    return f"{n:.3g} TB"


@contextmanager
def _out_of_memory(what: str, fix: str) -> Iterator[None]:
    """An allocation that fails anyway (the estimate is rough; the GPU has its own memory) as one line."""
    import torch

    try:
        yield
    except torch.OutOfMemoryError:
        raise LabconError(f"{what}: the GPU ran out of memory; {fix}") from None
    except RuntimeError as e:
        # torch reports a failed CPU allocation as a plain RuntimeError; anything else is a real failure.
        if "allocate" not in str(e):
            raise
        raise LabconError(f"{what}: out of memory ({str(e).split(':')[-1].strip()}); {fix}") from None


def register(subparsers: Any) -> None:
    """Add the `bench` command and its subcommands."""
    p = subparsers.add_parser(
        "bench",
        help="time the foundations: matmul ladder, hand-written backprop",
        description="Time the course's foundations on this machine: the matrix-product ladder from Python "
        "loops to torch, and a hand-written MLP backward pass against autograd.",
    )
    sub = p.add_subparsers(dest="bench_command", metavar="WHAT", required=True)
    q = sub.add_parser(
        "matmul",
        help="matrix product by Python loops, broadcasting, einsum, torch (and GPU)",
        description="Time one matrix product written several ways (Python loops, broadcasting, einsum, "
        "torch.matmul, and the GPU when there is one), each with its error against a float64 reference.",
    )
    q.add_argument(
        "--size",
        type=int,
        nargs="+",
        default=[32],
        metavar="N",
        help="N (N x N by N x N) or M K N (M x K by K x N); default 32 (every variant runs)",
    )
    q.add_argument(
        "--max-seconds",
        type=float,
        default=5.0,
        help="skip a variant whose estimated time is above this (default 5)",
    )
    q.add_argument("--no-gpu", action="store_true", help="leave the GPU out even when there is one")
    q.add_argument("--threads", type=int, default=0, help=THREADS_HELP)
    q.add_argument("--no-chart", action="store_true", help="the table only")
    q.set_defaults(func=cmd_matmul)
    q = sub.add_parser(
        "backprop",
        help="a from-scratch MLP's gradients vs autograd's, and their times",
        description="Compute an MLP's gradients with a hand-written backward pass, compare them with "
        "autograd's and time both.",
    )
    q.add_argument("--n", type=int, default=256, help="batch size (default 256)")
    q.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[64, 50, 10],
        help="layer sizes, input first (default 64 50 10)",
    )
    q.add_argument("--threads", type=int, default=0, help=THREADS_HELP)
    q.add_argument("--no-chart", action="store_true", help="the table only")
    q.set_defaults(func=cmd_backprop)

    p = subparsers.add_parser(
        "profile",
        help="time N training steps part by part: data, forward, loss, backward, step, callbacks",
        description="Train a session's model for N steps and report where each step's time goes: loading "
        "the batch, forward, loss, backward, optimizer step and callbacks.",
    )
    p.add_argument(
        "target",
        nargs="?",
        help="CONFIG.toml, a preset, a data folder or a saved session; default: built-in shapes",
    )
    p.add_argument("--steps", type=int, default=20, help="steps to time, after one warm-up step (default 20)")
    p.add_argument("--session", type=session_name, help="session name (default: the config's name)")
    p.add_argument("--no-chart", action="store_true", help="the table only")
    p.set_defaults(func=cmd_profile)


def _fmt_s(s: float | None) -> str:
    if s is None:
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if s >= scale:
            return f"{s / scale:.3g} {unit}"
    return f"{s / 1e-9:.3g} ns"


def bar_chart(labels: list[str], values: list[float], title: str, width: int = 70) -> str:
    """A horizontal bar chart as text (colourless when stdout is not a terminal)."""
    import plotext as plt

    plt.clear_figure()
    plt.bar(labels, values, orientation="h", width=0.5)
    plt.plotsize(width, 2 * len(labels) + 4)
    plt.theme("clear")
    plt.title(title)
    text = plt.build()
    plt.clear_figure()
    return text if sys.stdout.isatty() else plt.uncolorize(text)


def cmd_matmul(args: argparse.Namespace) -> int:
    """Print the matmul ladder: time per product, speed-up, error vs a float64 reference."""
    from labcon.foundations.matmul import bench_matmul, matmul_bytes

    _threads(args.threads)
    if len(args.size) not in (1, 3):
        raise LabconError(f"--size takes N or M K N, got {len(args.size)} numbers")
    m, k, n = args.size * 3 if len(args.size) == 1 else args.size
    if min(m, k, n) < 1 or args.max_seconds <= 0:
        raise LabconError("--size values and --max-seconds must be positive")
    what, fix = f"matmul {m}x{k} @ {k}x{n}", "choose a smaller --size"
    _check_memory(matmul_bytes(m, k, n), what, fix)
    with _out_of_memory(what, fix):
        rows = bench_matmul(m, k, n, max_seconds=args.max_seconds, gpu=False if args.no_gpu else None)
    print(f"matmul {m}x{k} @ {k}x{n}  (every result checked against a float64 product)")
    print(f"{'variant':<10} {'time':>10} {'speed-up':>10} {'max error':>10}  note")
    for r in rows:
        sp = f"{r.speedup:,.0f}x" if r.speedup is not None else "-"
        err = f"{r.max_abs_err:.1e}" if r.max_abs_err is not None else "-"
        print(f"{r.name:<10} {_fmt_s(r.seconds):>10} {sp:>10} {err:>10}  {r.note}")
    ran = [r for r in rows if r.speedup is not None]
    print("speed-up is relative to the slowest variant that ran")
    if not args.no_chart and len(ran) > 1:
        print(bar_chart([r.name for r in ran], [math.log10(r.speedup) for r in ran], "log10 speed-up"))
    return 0


def cmd_backprop(args: argparse.Namespace) -> int:
    """Print hand-written vs autograd gradients (largest difference) and times, for MSE and cross-entropy."""
    from labcon.foundations.backprop import backprop_bytes, bench_backprop

    _threads(args.threads)
    if args.n < 1 or len(args.sizes) < 2 or min(args.sizes) < 1:
        raise LabconError(
            "--n must be positive and --sizes needs at least two positive sizes (input ... output)"
        )
    what, fix = (
        f"an MLP {' -> '.join(map(str, args.sizes))} on a batch of {args.n}",
        "choose smaller --sizes or --n",
    )
    _check_memory(backprop_bytes(args.n, tuple(args.sizes)), what, fix)
    with _out_of_memory(what, fix):
        rows = bench_backprop(n=args.n, sizes=tuple(args.sizes))
    print(
        f"MLP {' -> '.join(map(str, args.sizes))}, batch {args.n}, float64: hand-written backward vs autograd"
    )
    print(f"{'loss':<14} {'by hand':>10} {'autograd':>10} {'max |grad diff|':>16}")
    for r in rows:
        print(f"{r.loss:<14} {_fmt_s(r.manual_s):>10} {_fmt_s(r.autograd_s):>10} {r.max_grad_diff:>16.1e}")
    worst = max(r.max_grad_diff for r in rows)
    print(
        "gradients equal autograd's"
        if worst < 1e-9
        else f"gradients DIFFER from autograd's (max {worst:.1e})"
    )
    if not args.no_chart:
        labels = [f"{r.loss} {kind}" for r in rows for kind in ("hand", "auto")]
        values = [1e3 * v for r in rows for v in (r.manual_s, r.autograd_s)]
        print(bar_chart(labels, values, "ms per forward+backward"))
    return 0 if worst < 1e-9 else 1


def cmd_profile(args: argparse.Namespace) -> int:
    """Profile a config's training step in a session (journaled as an event), print the table and a chart."""
    from labcon.session.messages import Log
    from labcon.session.session import Session
    from labcon.session.target import resolve_target

    if args.steps < 1:
        raise LabconError(f"--steps must be at least 1, got {args.steps}")
    t = resolve_target(args.target, args.sessions_dir)
    if t.config is None:  # a saved session: profile it as it stands
        session = Session.resume(args.session or t.name, args.sessions_dir)
    else:
        config = t.config.replace(name=args.session) if args.session else t.config
        session = Session.from_config(config, args.sessions_dir)
    sub = session.subscribe()
    try:
        reply = session.submit(f"profile {args.steps}")
        if not reply.ok:
            raise LabconError(reply.text)
        session.wait()
        errors = []
        while (msg := sub.get(timeout=0)) is not None:
            if isinstance(msg, Log) and msg.level == "error":
                errors.append(msg.text)
        rep = session.last_profile
        if rep is None:
            raise LabconError(errors[-1] if errors else "the profile produced no result")
    finally:
        sub.close()
        session.close()
    print(rep.table())
    if not args.no_chart:
        # One bar for all callbacks together: the table has them one by one.
        cbs = sum(sec for name, sec in rep.rows if name.startswith("cb "))
        rows = [(name, sec) for name, sec in rep.rows if not name.startswith("cb ")] + [("callbacks", cbs)]
        print(bar_chart([n for n, _ in rows], [1e3 * sec for _, sec in rows], "ms per step"))
    return 0
