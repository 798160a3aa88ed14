"""A FakeSession implementing the session protocol with fixed, realistic data (for TUI tests and benches)."""

from __future__ import annotations

import math
import queue
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from PIL import Image, ImageDraw

from labcon.session.messages import (
    BatchStats,
    CommandApplied,
    CommandFailed,
    EpochEnded,
    FitEnded,
    FitStarted,
    Log,
    Message,
    Progress,
    StateChanged,
    TelemetryUpdated,
)

N_TRAIN, N_VALID = 100, 20
LAYERS = (
    "stem.0",
    "stem.1",
    "layers.0.conv1",
    "layers.0.conv2",
    "layers.1.conv1",
    "layers.1.conv2",
    "head.fc",
)


@dataclass(frozen=True)
class Reply:
    """Same shape as the session's Reply."""

    ok: bool
    text: str
    data: dict | None = None


@dataclass(frozen=True)
class LayerStats:
    """Same fields as labcon.core.telemetry LayerStats."""

    mean: float
    std: float
    near_zero: float
    grad_norm: float
    update_ratio: float


def _lcg(seed: int):
    """A tiny deterministic pseudo-random stream (no global RNG state, identical on every platform)."""
    x = seed
    while True:
        x = (1103515245 * x + 12345) % (2**31)
        yield x / 2**31


class FakeTelemetry:
    """A TelemetrySnapshot look-alike: 60 reports for 7 layers, one dead and one exploding."""

    def __init__(self, train_iter: int = 300, n: int = 60) -> None:
        self.train_iter = train_iter
        self.layers = list(LAYERS)
        self.hist_range = (-4.0, 4.0)
        self.flags = {"layers.1.conv2": "dead", "head.fc": "exploding"}
        self._n = n
        self.latest = {name: self._stats(i, n - 1) for i, name in enumerate(self.layers)}

    def _stats(self, i: int, t: int) -> LayerStats:
        name = self.layers[i]
        decay = math.exp(-t / 25)
        if self.flags.get(name) == "dead":
            return LayerStats(0.01 * decay, 0.05 + 0.5 * decay, min(0.95, 0.3 + t / 70), 0.01, 1e-5)
        if self.flags.get(name) == "exploding":
            return LayerStats(0.2 + t / 20, 1.0 + (t / 12) ** 2, 0.02, 5.0 + t, 0.05)
        return LayerStats(0.1 * i * decay, 1.0 - 0.3 * decay + 0.02 * i, 0.1 + 0.05 * i * decay, 0.5, 1e-3)

    def history(self, layer: str) -> dict[str, list[float]]:
        """Per-report series for one layer."""
        i = self.layers.index(layer)
        rows = [self._stats(i, t) for t in range(self._n)]
        out: dict[str, list[float]] = {"iters": [float(t * 5) for t in range(self._n)]}
        for key in ("mean", "std", "near_zero", "grad_norm", "update_ratio"):
            out[key] = [getattr(r, key) for r in rows]
        return out

    def heatmap(self, layer: str) -> list[list[float]]:
        """Rows = time, 40 bins of raw counts: a Gaussian whose width follows the layer's std."""
        i = self.layers.index(layer)
        lo, hi = self.hist_range
        out = []
        for t in range(self._n):
            s = self._stats(i, t)
            row = []
            for b in range(40):
                x = lo + (b + 0.5) * (hi - lo) / 40
                z = (x - s.mean) / max(s.std, 1e-3)
                row.append(1000.0 * math.exp(-0.5 * z * z) + (800.0 * s.near_zero if b in (19, 20) else 0.0))
            out.append(row)
        return out


class FakeJournal:
    """A Journal look-alike: five runs, a tiny query language (words, field:value, name>number)."""

    def __init__(self) -> None:
        base = {"model": "xresnet18", "opt": "adam", "bs": 64}
        self.runs: dict[int, dict[str, Any]] = {}
        specs = [
            (1, "baseline", "done", 1e-3, 0.412, 0.871, "first try"),
            (2, "mixup", "done", 3e-3, 0.388, 0.889, "mixup alpha=0.4"),
            (3, "high-lr", "failed", 1e-1, float("nan"), 0.1, "diverged at epoch 2"),
            (4, "one-cycle", "done", 4e-3, 0.351, 0.902, "fit_one_cycle 5"),
            (5, "current", "running", 2e-3, 0.402, 0.880, "live run"),
        ]
        for rid, name, status, lr, vl, acc, note in specs:
            self.runs[rid] = {
                "id": rid,
                "name": name,
                "status": status,
                "started": f"2026-11-0{rid} 10:00",
                "epochs": 5,
                "lr": lr,
                "valid_loss": vl,
                "accuracy": acc,
                "note": note,
                "config": {**base, "lr": lr, "epochs": 5},
            }
        self.queries: list[str] = []

    def search(self, query: str) -> list[dict[str, Any]]:
        """Runs matching every term of `query` (free text, status:X, name>N / name<N)."""
        self.queries.append(query)
        if "((" in query:
            raise ValueError("unbalanced parenthesis in query; close every '(' with ')'")
        out = []
        for run in self.runs.values():
            if all(self._match(run, term) for term in query.split()):
                out.append({k: v for k, v in run.items() if k != "config"})
        return out

    @staticmethod
    def _match(run: dict[str, Any], term: str) -> bool:
        m = re.fullmatch(r"([a-z_]+)([<>])([-+.\deE]+)", term)
        if m:
            v = run.get(m[1])
            if not isinstance(v, float | int) or math.isnan(v):
                return False
            return v > float(m[3]) if m[2] == ">" else v < float(m[3])
        if ":" in term:
            k, v = term.split(":", 1)
            return str(run.get(k, "")) == v
        return term.lower() in (run["name"] + " " + run["note"]).lower()

    def get_run(self, run_id: int) -> dict[str, Any]:
        """One run's record."""
        return dict(self.runs[int(run_id)])

    def diff(self, a: int, b: int) -> dict[str, Any]:
        """Config and metric differences between two runs."""
        ra, rb = self.runs[int(a)], self.runs[int(b)]
        config = {
            k: (ra["config"].get(k), rb["config"].get(k))
            for k in ra["config"]
            if ra["config"].get(k) != rb["config"].get(k)
        }
        metrics = {k: (ra[k], rb[k]) for k in ("valid_loss", "accuracy")}
        return {"a": int(a), "b": int(b), "config": config, "metrics": metrics}

    def events(self, run_id: int) -> list[dict[str, Any]]:
        """Commands applied during the run."""
        return [{"epoch": 1, "iter": 40, "kind": "command", "text": "set lr=0.002"}]

    def epochs(self, run_id: int) -> list[dict[str, Any]]:
        """Epoch rows of the run."""
        return make_history(3)


def make_history(n: int) -> list[dict[str, float]]:
    """n deterministic epoch rows."""
    return [
        {
            "epoch": e,
            "train_loss": round(1.9 * 0.62**e + 0.25, 4),
            "valid_loss": round(1.7 * 0.66**e + 0.3, 4),
            "accuracy": round(0.95 - 0.55 * 0.6**e, 4),
            "time": 12.0 + e,
        }
        for e in range(n)
    ]


def make_batch_history(n: int) -> dict[str, list[float]]:
    """n deterministic batches of one-cycle training."""
    rnd = _lcg(7)
    losses, smooth, lrs, moms = [], [], [], []
    avg = 0.0
    for i in range(n):
        base = 2.3 * math.exp(-i / 120) + 0.3
        loss = base + 0.25 * (next(rnd) - 0.5)
        avg = 0.98 * avg + 0.02 * loss
        losses.append(loss)
        smooth.append(avg / (1 - 0.98 ** (i + 1)))
        pct = i / max(1, n - 1)
        if pct < 0.25:
            lr = 1e-3 * (0.1 + 0.9 * math.sin(math.pi * pct / 0.25 / 2))
        else:
            lr = 1e-3 * (1 + math.cos(math.pi * (pct - 0.25) / 0.75)) / 2
        lrs.append(lr)
        moms.append(0.95 - 0.1 * (lr / 1e-3))
    return {"losses": losses, "smooth_losses": smooth, "lrs": lrs, "moms": moms}


class FakeSubscription:
    """A thread-safe queue of messages; get raises queue.Empty on timeout, like the real one."""

    def __init__(self, owner: FakeSession) -> None:
        self._q: queue.Queue[Message] = queue.Queue()
        self._owner = owner
        self.closed = False

    def put(self, msg: Message) -> None:
        self._q.put(msg)

    def get(self, timeout: float | None = None) -> Message:
        return self._q.get(timeout=timeout)

    def close(self) -> None:
        self.closed = True
        self._owner._unsubscribe(self)


@dataclass
class FakeSession:
    """The session protocol over fixed data: records every submitted command in `received`."""

    name: str = "fake"
    state: str = "paused"
    epoch: int = 3
    n_epochs: int = 5
    received: list[str] = field(default_factory=list)
    journal: Any = field(default_factory=FakeJournal)
    detached: bool = False

    def __post_init__(self) -> None:
        self._subs: list[FakeSubscription] = []
        self._lock = threading.Lock()
        self._history = make_history(self.epoch)
        self._batches = make_batch_history(self.epoch * N_TRAIN)
        self._telemetry = FakeTelemetry(train_iter=self.epoch * N_TRAIN)
        self.hypers: dict[str, list[float]] = {"lr": [1e-3], "mom": [0.9], "wd": [0.01]}
        self.cbs = ["TrainEval", "Device", "Recorder", "Telemetry", "ProgressBridge"]
        self._hooks = [
            {"id": i + 1, "module": m, "kind": "forward", "owner": "Telemetry", "scope": "fit"}
            for i, m in enumerate(LAYERS)
        ]
        self._hooks.append(
            {"id": 8, "module": "layers.1.conv2", "kind": "backward", "owner": "user", "scope": "session"}
        )
        self._next_hook = 9
        self.train_iter = self.epoch * N_TRAIN
        self._live: threading.Thread | None = None
        self._stop_live = threading.Event()
        self.n_image_calls = 0

    # -- protocol ---------------------------------------------------------------------------------
    def subscribe(self) -> FakeSubscription:
        sub = FakeSubscription(self)
        with self._lock:
            self._subs.append(sub)
        return sub

    def _unsubscribe(self, sub: FakeSubscription) -> None:
        with self._lock:
            if sub in self._subs:
                self._subs.remove(sub)

    def emit(self, msg: Message) -> None:
        """Publish to every subscriber."""
        with self._lock:
            subs = list(self._subs)
        for s in subs:
            s.put(msg)

    def status(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "state": self.state,
            "epoch": self.epoch,
            "n_epochs": self.n_epochs,
            "iter": 40,
            "n_iter": N_TRAIN,
            "train_iter": self.train_iter,
            "run_id": 5,
            "device": "cpu",
            "model": "xresnet18(c_in=3, n_out=10)",
            "opt": "Adam",
            "hypers": {k: list(v) for k, v in self.hypers.items()},
            "cbs": list(self.cbs),
            "last_error": None,
        }

    def history(self) -> list[dict[str, float]]:
        return [dict(r) for r in self._history]

    def batch_history(self) -> dict[str, list[float]]:
        return {k: list(v) for k, v in self._batches.items()}

    def telemetry_snapshot(self) -> FakeTelemetry:
        return self._telemetry

    def hooks_table(self) -> list[dict[str, Any]]:
        return [dict(h) for h in self._hooks]

    def data_summary(self) -> str:
        return (
            "DataBlock summary (imagenette-tiny, 10 classes)\n"
            "1. items        get_image_files: 1000 items, e.g. train/n01440764/ILSVRC_1.JPEG\n"
            "2. split        GrandparentSplitter: 800 train / 200 valid\n"
            "3. label        parent_label -> 'n01440764' -> 0 (tench)\n"
            "4. item tfms    Resize(64): (160, 213, 3) uint8 -> (64, 64, 3) uint8\n"
            "5. collate      batch of 64: x (64, 3, 64, 64) uint8, y (64,) int64\n"
            "6. batch tfms   IntToFloat, Normalize(imagenet), Flip(p=0.5), Rotate(10)\n"
            "   -> x (64, 3, 64, 64) float32 mean 0.02 std 0.98\n"
        )

    def sample_batch_image(self, augment: bool = True) -> Image.Image:
        """A 4x2 grid of coloured tiles with labels (redrawn with a different shift when augmented)."""
        self.n_image_calls += 1
        shift = (self.n_image_calls * 7) % 20 if augment else 0
        img = Image.new("RGB", (256, 128), (20, 20, 30))
        draw = ImageDraw.Draw(img)
        for k in range(8):
            x0, y0 = (k % 4) * 64, (k // 4) * 64
            colour = ((40 * k) % 256, (90 + 20 * k) % 256, (200 - 25 * k) % 256)
            draw.rectangle([x0 + 4, y0 + 4, x0 + 60, y0 + 60], fill=colour)
            draw.ellipse([x0 + 14 + shift // 2, y0 + 14, x0 + 44 + shift // 2, y0 + 44], fill=(240, 240, 240))
        return img

    def detach(self) -> None:
        self.detached = True

    def submit(self, text: str) -> Reply:
        """A small command interpreter with the session's replies and messages."""
        self.received.append(text)
        words = text.split()
        if not words:
            return Reply(False, "empty command; type help")
        head = words[0]
        if head == "boom":
            raise RuntimeError("the fake session exploded")
        if head in ("fit", "fit_one_cycle"):
            if self.state in ("running", "paused"):
                return Reply(False, "a fit is already live; stop it first (s)")
            n = int(words[1]) if len(words) > 1 and words[1].isdigit() else 1
            self.n_epochs = self.epoch + n
            self._set_state("running")
            self.emit(
                FitStarted(run_id=6, epoch_start=self.epoch, n_epochs=n, n_train=N_TRAIN, n_valid=N_VALID)
            )
            return Reply(True, f"fit {n} started (run 6)")
        if head in ("pause", "resume", "stop"):
            want = {"pause": "running", "resume": "paused", "stop": None}[head]
            if want and self.state != want:
                return Reply(False, f"cannot {head}: the session is {self.state}")
            if head == "stop":
                if self.state == "idle":
                    return Reply(False, "nothing to stop: no fit is live")
                self._set_state("idle")
                self.emit(FitEnded("stopped", "stopped by user"))
            else:
                self._set_state("paused" if head == "pause" else "running")
            return Reply(True, "queued")
        if head == "set":
            for w in words[1:]:
                if "=" not in w:
                    return Reply(False, f"set expects NAME=VALUE, got {w!r}")
                k, v = w.split("=", 1)
                if k not in self.hypers:
                    return Reply(False, f"unknown hyper-parameter {k!r}; one of lr, mom, wd")
                self.hypers[k] = [float(v)]
            self.emit(CommandApplied(text, self.epoch, 40, "applied"))
            return Reply(True, "queued")
        if head == "cb" and len(words) >= 3 and words[1] in ("add", "rm"):
            name = words[2]
            if words[1] == "add":
                self.cbs.append(name)
            elif name in self.cbs:
                self.cbs.remove(name)
            else:
                self.emit(CommandFailed(text, f"no callback named {name!r}"))
                return Reply(True, "queued")
            self.emit(
                CommandApplied(
                    text, self.epoch + 1, 0, f"callback {name} {'added' if words[1] == 'add' else 'removed'}"
                )
            )
            return Reply(True, "queued (applies at the next epoch)")
        if head == "hook" and len(words) >= 3:
            if self.state != "paused":
                return Reply(False, "hooks can be changed only while paused; press space first")
            if words[1] == "add":
                kind = "backward" if "kind=backward" in words else "forward"
                self._hooks.append(
                    {
                        "id": self._next_hook,
                        "module": words[2],
                        "kind": kind,
                        "owner": "user",
                        "scope": "session",
                    }
                )
                self._next_hook += 1
                return Reply(True, f"hook {self._next_hook - 1} added on {words[2]}")
            if words[1] == "rm":
                before = len(self._hooks)
                self._hooks = [h for h in self._hooks if str(h["id"]) != words[2]]
                return Reply(
                    len(self._hooks) < before,
                    f"hook {words[2]} {'removed' if len(self._hooks) < before else 'not found'}",
                )
        if head == "save":
            return Reply(True, f"saved sessions/{self.name}/checkpoints/epoch{self.epoch}.pt")
        if head == "replay" and len(words) == 2:
            return Reply(True, f"replaying run {words[1]} as run 7")
        if head == "help":
            return Reply(True, "commands: fit N, pause, resume, stop, set NAME=VALUE, cb add|rm NAME, save")
        return Reply(False, f"unknown command {head!r}; type help")

    def _set_state(self, state: str) -> None:
        self.state = state
        self.emit(StateChanged(state))

    # -- driving ----------------------------------------------------------------------------------
    def train_batches(self, n: int, telemetry_every: int = 10) -> None:
        """Publish the messages n training batches would produce (deterministic, synchronous)."""
        hist = make_batch_history(self.train_iter + n)
        for _ in range(n):
            i = self.train_iter
            it = i % N_TRAIN
            self.emit(
                Progress(
                    self.epoch,
                    "train",
                    it + 1,
                    N_TRAIN,
                    i + 1,
                    hist["losses"][i],
                    hist["smooth_losses"][i],
                    (hist["lrs"][i],),
                    (hist["moms"][i],),
                    12.0 * it / N_TRAIN,
                    12.0 * (N_TRAIN - it) / N_TRAIN,
                    60.0,
                )
            )
            self.emit(
                BatchStats(
                    i,
                    (hist["losses"][i],),
                    (hist["smooth_losses"][i],),
                    (hist["lrs"][i],),
                    (hist["moms"][i],),
                )
            )
            for k in self._batches:
                self._batches[k].append(hist[k][i])
            self.train_iter += 1
            if self.train_iter % telemetry_every == 0:
                self.emit(TelemetryUpdated(self.train_iter))
            if self.train_iter % N_TRAIN == 0:
                row = make_history(self.epoch + 1)[-1]
                self._history.append(row)
                self.emit(EpochEnded(self.epoch, row))
                self.epoch += 1

    def error(self, text: str) -> None:
        """Publish an error log line."""
        self.emit(Log("error", text))

    def start_live(self, batches_per_s: float = 200.0) -> None:
        """Publish training messages from a thread until stop_live (for tmux and bench runs)."""
        self._stop_live.clear()

        def loop() -> None:
            while not self._stop_live.is_set():
                if self.state == "running":
                    self.train_batches(1)
                time.sleep(1.0 / batches_per_s)

        self._live = threading.Thread(target=loop, daemon=True)
        self._live.start()

    def stop_live(self) -> None:
        """Stop the live publisher."""
        self._stop_live.set()
        if self._live is not None:
            self._live.join(2)


def screen_text(app: Any) -> str:
    """The app's current screen as plain text (what a user would read), for assertions and debugging."""
    import io

    from rich.console import Console

    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), force_terminal=True, record=True)
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens))
    return console.export_text()
