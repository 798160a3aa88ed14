"""Console overhead: training steps/s with the Textual console running (headless driver) vs without,
alternating in one process; and key-press-to-screen latency under training load.

    python bench/console_overhead.py [--seconds 4] [--rounds 3]            # synthetic trainer
    python bench/console_overhead.py --session [--rounds 6] [--epochs 2]   # real Session, built-in data
    python bench/console_overhead.py --attach [--rounds 8] [--seconds 8]  # what `labcon` does

Synthetic: a thread runs a small PyTorch MLP loop (~2 ms steps, the worst case for sharing the GIL) that
publishes Progress + BatchStats every batch (what the Session's bridge sends); the console reads them through
its pump. --session: the real Session on the built-in shapes set (what `labcon` trains by default), `fit N`
alternating between headless (the `labcon run` printer drains the messages) and the console, in one process
(`labcon open --in-process`). --attach: what `labcon` / `labcon open` do: the session trains in its own
`labcon serve` process; this process attaches a console in alternate windows and reads the trainer's progress
over the control socket.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from textual import events

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from fakes import FakeSession  # noqa: E402

from labcon.session.messages import BatchStats, Progress  # noqa: E402
from labcon.tui.app import build_app  # noqa: E402


class TrainingSession(FakeSession):
    """FakeSession whose messages come from a real training loop in a thread."""

    def train(self, seconds: float) -> float:
        """Train for `seconds`; return steps/s."""
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(256, 512), torch.nn.ReLU(), torch.nn.Linear(512, 10))
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        x, y = torch.randn(128, 256), torch.randint(0, 10, (128,))
        n, smooth = 0, 0.0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            v = loss.item()
            smooth = 0.98 * smooth + 0.02 * v
            el = time.perf_counter() - t0
            self.emit(
                Progress(0, "train", n % 100, 100, n, v, smooth, (0.01,), (0.9,), el, 1.0, seconds - el)
            )
            self.emit(BatchStats(n, (v,), (smooth,), (0.01,), (0.9,)))
            n += 1
        return n / (time.perf_counter() - t0)


def bare(session: TrainingSession, seconds: float) -> float:
    """Steps/s with nobody watching (a subscriber that drains, like a headless logger)."""
    sub = session.subscribe()
    stop = threading.Event()

    def drain() -> None:
        while not stop.is_set():
            sub.get(timeout=0.05)

    t = threading.Thread(target=drain)
    t.start()
    rate = session.train(seconds)
    stop.set()
    t.join()
    sub.close()
    return rate


# Each key's latencies by the pane it shows (printed with the totals: which pane is slow to come up).
BY_PANE: dict[str, list[float]] = {}


async def _switch_panes(app: Any, busy: Callable[[], bool], latencies: list[float] | None) -> None:
    """While `busy()`: every 0.1 s press a pane key and time it until the pane is on screen (if measuring)."""
    keys = "2134"
    i = 0
    while busy():
        if latencies is not None:
            key = keys[i % len(keys)]
            target = {"1": "training", "2": "telemetry", "3": "hooks", "4": "data"}[key]
            pane = app.query_one(f"#pane-{target}")
            t0 = time.perf_counter()
            # The key goes through the app's normal queue (pilot.press would also wait for idle).
            app.post_message(events.Key(key, key))
            # On screen = the pane got a region in a layout pass (the frame is painted right after).
            while app.query_one("#panes").active != target or pane.region.width == 0:
                await asyncio.sleep(0.001)
            latencies.append(time.perf_counter() - t0)
            BY_PANE.setdefault(target, []).append(latencies[-1])
            i += 1
        await asyncio.sleep(0.1)


async def with_console(
    session: TrainingSession, seconds: float, latencies: list[float] | None = None
) -> float:
    """Steps/s while the console runs headless; optionally measures key-to-screen latency meanwhile."""
    app = build_app(session, images="halfcell")
    result: list[float] = []
    async with app.run_test(size=(120, 40)) as pilot:
        # Steady state: let start-up (compose, first snapshot reads, CSS) finish before timing.
        await pilot.pause(1.5)
        await app.workers.wait_for_complete()
        t = threading.Thread(target=lambda: result.append(session.train(seconds)))
        t.start()
        await _switch_panes(app, t.is_alive, latencies)
        t.join()
    return result[0]


def _session_rate(session: Any, epochs: int) -> float:
    """Submit `fit epochs`, wait for it; training steps/s (wall time includes validation and checkpoints)."""
    it0, t0 = session.runner.train_iter, time.perf_counter()
    reply = session.submit(f"fit {epochs}")
    assert reply.ok, reply.text
    session.wait()
    return (session.runner.train_iter - it0) / (time.perf_counter() - t0)


async def _session_console(session: Any, epochs: int, latencies: list[float] | None = None) -> float:
    app = build_app(session, images="halfcell")
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(1.5)
        await app.workers.wait_for_complete()
        it0, t0 = session.runner.train_iter, time.perf_counter()
        reply = session.submit(f"fit {epochs}")
        assert reply.ok, reply.text
        if latencies is None:
            await asyncio.to_thread(session.wait)  # no polling: the loop stays idle, as the console would be
        else:
            await _switch_panes(app, lambda: not session.jobs.wait_idle(0), latencies)
        rate = (session.runner.train_iter - it0) / (time.perf_counter() - t0)
        UI_RATES.append(app.throttle.rate)
        return rate


# The console's update rate at the end of each console round (its throttle adapts to the UI's CPU cost).
UI_RATES: list[float] = []


def _abba(rounds: int, base: Callable[[], float], other: Callable[[], float], names: tuple[str, str]) -> None:
    """Alternate `base` and `other` rounds in ABBA order (drift hits both alike); print per round and summary."""
    if rounds < 1:
        return
    bs, os_ = [], []
    for i in range(rounds):
        if i % 2 == 0:
            b = base()
            o = other()
        else:
            o = other()
            b = base()
        bs.append(b)
        os_.append(o)
        extra = f"   (console updates/s at the end: {UI_RATES[-1]:.1f})" if UI_RATES else ""
        print(
            f"{names[0]} {b:7.1f} steps/s   {names[1]} {o:7.1f} steps/s   ratio {o / b:.3f}{extra}",
            flush=True,
        )
    ratios = [o / b for o, b in zip(os_, bs, strict=True)]
    print(
        f"median ratio {names[1]}/{names[0]}: {statistics.median(ratios):.3f}; ratio of mean rates "
        f"{statistics.mean(os_) / statistics.mean(bs):.3f} (target >= 0.95)"
    )


def session_main(rounds: int, epochs: int, workers: int | None) -> None:
    """Real Session on the built-in data: headless and console rounds alternate in one process."""
    from labcon.cli.printer import HeadlessPrinter
    from labcon.session.config import parse_config
    from labcon.session.session import Session

    text = 'name = "bench"\n' + (
        f'[data]\npreset = "shapes"\nnum_workers = {workers}\n' if workers is not None else ""
    )
    with tempfile.TemporaryDirectory() as home:
        session = Session(parse_config(text, source="<bench>"), home)
        try:
            _session_rate(session, 1)  # warm-up: data on disk, caches, first-epoch allocations

            def headless() -> float:
                printer = HeadlessPrinter(session, out=io.StringIO())
                try:
                    return _session_rate(session, epochs)
                finally:
                    printer.close()

            _abba(
                rounds,
                headless,
                lambda: asyncio.run(_session_console(session, epochs)),
                ("headless", "console"),
            )
            lat: list[float] = []
            asyncio.run(_session_console(session, epochs, lat))
            _print_latency(lat)
        finally:
            session.close()


def attach_main(rounds: int, seconds: float) -> None:
    """What `labcon` does: the session in its own process (spawn_session), the console attached to its socket.

    The trainer's steps/s with the console attached vs not attached, ABBA; then key-to-screen latency.
    """
    from labcon.remote.client import RemoteSession
    from labcon.remote.spawn import spawn_session

    with tempfile.TemporaryDirectory() as home:
        cfg = Path(home) / "bench.toml"
        cfg.write_text('name = "bench"\n[train]\nschedule = "constant"\n[data]\npreset = "shapes"\n')
        child = spawn_session(str(cfg), Path(home))
        remote = RemoteSession(child.socket)
        try:
            reply = remote.submit("fit 1000")
            assert reply.ok, reply.text

            def it() -> int:
                return int(remote.status().get("train_iter", 0))

            while it() < 40:  # past data generation and the first batches
                time.sleep(0.5)

            async def attached(latencies: list[float] | None = None) -> float:
                app = build_app(remote, images="halfcell")
                async with app.run_test(size=(120, 40)) as pilot:
                    await pilot.pause(1.5)
                    a, t = it(), time.perf_counter()
                    end = t + seconds
                    await _switch_panes(app, lambda: time.perf_counter() < end, latencies)
                    return (it() - a) / (time.perf_counter() - t)

            def detached() -> float:
                a, t = it(), time.perf_counter()
                time.sleep(seconds)
                return (it() - a) / (time.perf_counter() - t)

            _abba(rounds, detached, lambda: asyncio.run(attached()), ("detached", "attached"))
            lat: list[float] = []
            asyncio.run(attached(lat))
            _print_latency(lat)
        finally:
            remote.close()
            child.shutdown()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--session", action="store_true", help="real Session on the built-in data")
    ap.add_argument("--attach", action="store_true", help="console in its own process on a headless run")
    ap.add_argument("--epochs", type=int, default=2, help="--session: epochs per round")
    ap.add_argument("--workers", type=int, default=None, help="--session: data workers (default: config's)")
    ap.add_argument("--threads", type=int, default=None, help="--session: torch threads (default: torch's)")
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument(
        "--switch", type=float, default=None, help="sys.setswitchinterval for the experiment (both sides)"
    )
    args = ap.parse_args()
    if args.switch:
        sys.setswitchinterval(args.switch)
    if args.attach:
        attach_main(args.rounds, args.seconds)
        return
    if args.session:
        if args.threads:
            torch.set_num_threads(args.threads)
        session_main(args.rounds, args.epochs, args.workers)
        return
    torch.set_num_threads(1)
    session = TrainingSession(state="running")
    session.train(0.5)  # warm-up
    ratios, b_rates, c_rates = [], [], []
    for _ in range(args.rounds):
        b = bare(session, args.seconds)
        c = asyncio.run(with_console(session, args.seconds))
        b_rates.append(b)
        c_rates.append(c)
        ratios.append(c / b)
        print(f"bare {b:8.1f} steps/s   console {c:8.1f} steps/s   ratio {c / b:.3f}")
    print(f"median ratio console/bare: {statistics.median(ratios):.3f} (target >= 0.95)")
    lat: list[float] = []
    asyncio.run(with_console(session, args.seconds * 2, lat))
    _print_latency(lat)


def _print_latency(lat: list[float]) -> None:
    lat = sorted(lat)
    p50 = lat[len(lat) // 2] * 1000
    p95 = lat[min(len(lat) - 1, int(0.95 * len(lat)))] * 1000
    print(
        f"key-press-to-screen under training load: n={len(lat)} p50 {p50:.1f} ms  p95 {p95:.1f} ms (target < 100)"
    )
    per = ", ".join(
        f"{k} {1000 * statistics.median(v):.0f}/{1000 * max(v):.0f}" for k, v in sorted(BY_PANE.items())
    )
    print(f"  by pane, median/max ms: {per}")
    BY_PANE.clear()


if __name__ == "__main__":
    main()
