"""Training steps/s with the control socket publishing a Progress message every batch to two subscribers
(one reading, one never reading: a stalled `labcon attach`) vs no server; same process, alternating runs.
Also: parse() throughput of the command language.

Run: python bench/control_overhead.py
"""

from __future__ import annotations

import socket
import tempfile
import threading
import time
from pathlib import Path

import torch
from torch import nn

from labcon.commands.grammar import parse
from labcon.core.events import Callback
from labcon.core.runner import Runner
from labcon.data.loaders import DataLoaders
from labcon.remote.client import ControlClient
from labcon.remote.server import ControlServer
from labcon.session.messages import Progress


class Publish(Callback):
    """Publishes a Progress per training batch (what a headless session does, unthrottled)."""

    def __init__(self, server: ControlServer):
        self.server = server

    def after_batch(self) -> None:
        r = self.runner
        if r.training:
            self.server.publish(
                Progress(
                    r.epoch, "train", r.iter, r.n_iter, r.train_iter, 1.0, 1.0, (1e-3,), (0.9,), 0.0, 0.0, 0.0
                )
            )


class Idle:
    def subscribe(self):  # never used: follow=False
        raise NotImplementedError


def make_runner() -> Runner:
    torch.manual_seed(0)
    x, y = torch.randn(32 * 64, 1, 28, 28), torch.randint(0, 10, (32 * 64,))
    # Small batches: many steps per second, so per-message costs would show.
    batches = [(x[i : i + 16], y[i : i + 16]) for i in range(0, len(x), 16)]
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, 2, 1),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, 2, 1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(16 * 49, 10),
    )
    return Runner(model, DataLoaders(batches, batches[:2]), lr=1e-3, device="cpu")


def steps_per_s(runner: Runner) -> float:
    t0 = time.perf_counter()
    runner.fit(1)
    return len(runner.dls.train) / (time.perf_counter() - t0)


def main() -> None:
    torch.set_num_threads(1)  # OpenMP spin-waiting on a shared 2-core box skews paired runs
    d = Path(tempfile.mkdtemp(prefix="lcb", dir="/tmp"))
    server = ControlServer(Idle(), d / "s" / "control.sock", follow=False, queue_size=64).start()
    reader = ControlClient(server.path)
    reader.subscribe()
    stalled = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stalled.connect(str(server.path))
    stalled.sendall(b'{"id": 1, "op": "subscribe"}\n')  # and never reads again
    stop = threading.Event()
    got = [0]

    def drain() -> None:
        while not stop.is_set():
            if reader.get_message(timeout=0.1) is not None:
                got[0] += 1

    threading.Thread(target=drain, daemon=True).start()
    runner, cb = make_runner(), Publish(server)
    steps_per_s(runner)  # warm-up
    ratios, a, b = [], [], []
    for i in range(11):  # paired, alternating which goes first (ABBA): the machine is shared and noisy
        for with_server in (False, True) if i % 2 == 0 else (True, False):
            if with_server:
                with runner.added_cbs([cb]):
                    b.append(steps_per_s(runner))
            else:
                a.append(steps_per_s(runner))
        ratios.append(b[-1] / a[-1])
    med = sorted(ratios)[len(ratios) // 2]
    print(
        f"steps/s without server (median): {sorted(a)[5]:.1f}  with server + 2 subscribers (1 stalled): {sorted(b)[5]:.1f}"
    )
    print(
        f"ratio with/without (median of 11 paired runs): {med:.3f}   messages read by the live client: {got[0]}"
    )
    print(
        f"messages dropped for the stalled client (queue_size=64): {sum(c.dropped for c in server._clients)}"
    )
    stop.set()

    n = 20000
    msg = Progress(0, "train", 1, 100, 1, 1.0, 1.0, (1e-3,), (0.9,), 0.0, 0.0, 0.0)
    t0 = time.perf_counter()
    for _ in range(n):
        server.publish(msg)
    dt = time.perf_counter() - t0
    print(f"publish(): {dt / n * 1e6:.1f} us per message to 2 subscribers (1 stalled)")

    lines = [
        "set lr=1e-3 wd=0.01 group=1",
        "fit_one_cycle 5 lr=3e-3",
        "cb add mixup alpha=0.4",
        "note looks good",
    ]
    n = 20000
    t0 = time.perf_counter()
    for i in range(n):
        parse(lines[i % len(lines)])
    dt = time.perf_counter() - t0
    print(f"parse: {n / dt:,.0f} commands/s ({dt / n * 1e6:.1f} us each)")
    reader.close()
    stalled.close()
    server.close()


if __name__ == "__main__":
    main()
