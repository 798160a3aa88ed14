"""A FakeSession implementing the session protocol with fixed, realistic data (for TUI tests and benches)."""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from fakes_data import (
    LAYERS,
    N_TRAIN,
    N_VALID,
    FakeJournal,
    FakeTelemetry,
    make_batch_history,
    make_history,
)
from PIL import Image, ImageDraw

from labcon.core.telemetry_history import LayerStats
from labcon.session.bus import Reply
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

__all__ = [
    "LAYERS",
    "N_TRAIN",
    "N_VALID",
    "FakeJournal",
    "FakeSession",
    "FakeSubscription",
    "FakeTelemetry",
    "LayerStats",
    "Reply",
    "make_batch_history",
    "make_history",
    "screen_text",
]


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
