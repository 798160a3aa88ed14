"""The one test fake of labcon.session.api.SessionAPI: a session without torch, with fixed, realistic data.

It answers like the real Session (tests/test_contract.py runs the same assertions on both and on a RemoteSession):
commands go through the real grammar and checks, replies and messages have the real texts and order, the telemetry
is a real TelemetrySnapshot and the journal a real Journal (in a temporary folder) holding real rows. What it
adds is a way to drive it: `train_batches(n)` publishes what n batches would, at once and deterministically, and
batch-point commands take effect at once ("the next batch" comes immediately).
"""

from __future__ import annotations

import math
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from labcon.commands import grammar as C
from labcon.commands.cmd_watch import USER_HOOK_OWNER
from labcon.core.profiler import ProfileReport
from labcon.core.schedules import Schedule, one_cycle_scheds, scaled
from labcon.core.telemetry_history import TelemetrySnapshot
from labcon.errors import CommandError, LabconError
from labcon.session.answers import format_status
from labcon.session.api import Reply, SnapshotContext
from labcon.session.bus import Bus, BusSubscription
from labcon.session.journal import Journal
from labcon.session.messages import (
    BatchStats,
    CommandApplied,
    CommandFailed,
    EpochEnded,
    FitEnded,
    FitStarted,
    Log,
    Message,
    Profiled,
    Progress,
    StateChanged,
    TelemetryUpdated,
)
from tests.fake_data import (
    INPUT_BOUND,
    LAYERS,
    N_TRAIN,
    N_VALID,
    fake_telemetry,
    fill_journal,
    make_batch_history,
    make_history,
)


class FakeSession:
    """SessionAPI over fixed data; every submitted line is recorded in `received`."""

    remote = False

    def __init__(self, name: str = "fake", state: str = "paused", epoch: int = 3, n_epochs: int = 5) -> None:
        self.name = name
        self.state = state
        self.epoch, self.n_epochs = epoch, n_epochs
        self.received: list[str] = []
        self.raise_on: set[str] = (
            set()
        )  # fault injection: submit raises for these lines (a bug, a lost socket)
        self.detached = False
        self.n_image_calls = 0
        self.bus = Bus()
        self._dir = Path(tempfile.mkdtemp(prefix="labcon-fake-"))
        self._journal: Journal | None = Journal(self._dir / "journal.db")
        self.run_id = fill_journal(self._journal, name)
        self._history = make_history(epoch)
        self._batches = make_batch_history(epoch * N_TRAIN)
        self.train_iter = epoch * N_TRAIN
        self.hypers: dict[str, list[float]] = {"lr": [1e-3], "mom": [0.9], "wd": [0.01]}
        self.cbs = ["train_eval", "device", "recorder", "telemetry", "session_control", "session_bridge"]
        self._hooks = [
            {"id": i + 1, "module": m, "kind": "forward", "owner": "telemetry", "scope": "fit"}
            for i, m in enumerate(LAYERS)
        ]
        self._hooks.append(
            {
                "id": 8,
                "module": "layers.1.conv2",
                "kind": "backward",
                "owner": USER_HOOK_OWNER,
                "scope": "session",
            }
        )
        self._next_hook = 9
        self._epoch_q: list[C.Command] = []
        live = state in ("running", "paused")
        self._plan = (
            {"start_epoch": 0, "n": n_epochs, "start_iter": 0, "total": n_epochs * N_TRAIN} if live else None
        )
        self._live: threading.Thread | None = None
        self._profile_report: dict[str, Any] | None = None
        self.input_share: float | None = None  # share of training time waiting for data (None: no reading)
        self._stop_live = threading.Event()
        # The one-cycle schedules of the live fit (the real ones, so the plan is what a real session plans).
        self._scheds: dict[str, Schedule] = {}

    # -- the protocol ------------------------------------------------------------------------------
    @property
    def folder(self) -> Path:
        """The fake's session folder (in its temporary directory)."""
        return self._dir / self.name

    @property
    def journal(self) -> Journal | None:
        """A real Journal with five finished runs (and the ones this fake's fits add)."""
        return self._journal

    def subscribe(self) -> BusSubscription:
        """A subscription on the same Bus the real session uses."""
        return self.bus.subscribe()

    def status(self) -> dict[str, Any]:
        """The real status keys, with fixed values."""
        return {
            "name": self.name,
            "state": self.state,
            "epoch": self.epoch,
            "n_epochs": self.n_epochs,
            "iter": self.train_iter % N_TRAIN,
            "n_iter": N_TRAIN,
            "train_iter": self.train_iter,
            "run_id": self.run_id,
            "device": "cpu",
            "model": "XResNet (1,234,567 params)",
            "opt": "Adam",
            "hypers": {k: list(v) for k, v in self.hypers.items()},
            "cbs": list(self.cbs),
            "built": [],  # what the build chose or changed (notes); nothing here
            "last_error": None,
            "fit": dict(self._plan) if self._plan else None,
            # The input meter's reading, as the real status words it (None until a test sets a share).
            "bound": None
            if self.input_share is None
            else "input"
            if self.input_share >= INPUT_BOUND
            else "compute",
            "input_share": self.input_share,
        }

    def history(self) -> list[dict[str, float]]:
        """Epoch rows."""
        return [dict(r) for r in self._history]

    def batch_history(self) -> dict[str, list[float]]:
        """Per-batch series."""
        return {k: list(v) for k, v in self._batches.items()}

    def telemetry_snapshot(self) -> TelemetrySnapshot:
        """A real snapshot of 60 reports for 7 layers: one dead, one exploding."""
        return fake_telemetry(self.train_iter)

    def hooks_table(self) -> list[dict[str, Any]]:
        """Installed hooks."""
        return [dict(h) for h in self._hooks]

    def module_paths(self) -> list[str]:
        """The model's module paths ('' first, parents before children)."""
        paths = [""]
        for layer in LAYERS:
            parts = layer.split(".")
            paths += [p for p in (".".join(parts[: i + 1]) for i in range(len(parts))) if p not in paths]
        return paths

    def model_summary(self) -> dict[str, Any]:
        """Fixed per-module rows: every LAYERS module a conv, containers summing their subtree."""
        leaves = {m: (100 * (i + 1), 1000 * (i + 1)) for i, m in enumerate(LAYERS)}
        rows = []
        for path in self.module_paths():
            under = [v for k, v in leaves.items() if not path or k == path or k.startswith(path + ".")]
            n = sum(p for p, _ in under)
            kind = "Conv2d" if path in leaves else "Sequential"
            rows.append(
                {"path": path, "kind": kind, "shape": [16, 8, 8], "params": n, "trainable": n,
                 "macs": sum(m for _, m in under)}
            )  # fmt: skip
        return {"batch": 2, "rows": rows}

    def schedule_plan(self) -> dict[str, Any] | None:
        """The live fit's schedules sampled over the whole fit, as the real session samples them."""
        if self._plan is None or self.state == "idle":
            return None
        n = 161
        series = {k: [float(f(i / (n - 1))) for i in range(n)] for k, f in self._scheds.items()}
        return {"start_iter": self._plan["start_iter"], "total": self._plan["total"], "pos": self._pos(),
                "series": series}  # fmt: skip

    def _pos(self) -> float:
        return (self.train_iter - self._plan["start_iter"]) / self._plan["total"] if self._plan else 0.0

    def data_summary(self) -> str:
        """A DataBlock summary's text."""
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
        """A 4x2 grid of coloured tiles (redrawn with a different shift when augmented)."""
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

    def text_batch(self, draw: int = 0) -> None:
        """Image data, as the real sessions answer for an image session: no text batch."""
        return None

    def context(self) -> SnapshotContext:
        """Validation context from this fake's own snapshots (never stale: the fake changes at once)."""
        return SnapshotContext(self, max_age=0.0)

    def wait(self, timeout: float | None = None) -> bool:
        """Fits here only move when driven: True unless a fit is live."""
        return self.state not in ("running", "paused")

    def detach(self) -> None:
        """Remember that the front end left."""
        self.detached = True

    def close(self) -> None:
        """Drop the temporary journal."""
        self.stop_live()
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        shutil.rmtree(self._dir, ignore_errors=True)

    # -- submit: the real grammar, checks, replies and message order ------------------------------
    def submit(self, text: str) -> Reply:
        """Parse and check with the real grammar, then answer as Session.dispatch does."""
        if text in self.raise_on:
            raise RuntimeError(f"the session failed on {text!r}")
        self.received.append(text)
        try:
            cmd = C.validate(C.parse(text), self.context())
            return self._dispatch(cmd)
        except (CommandError, LabconError, ValueError, KeyError) as e:
            msg = str(e).strip("'\"") or type(e).__name__
            self.emit(CommandFailed(text=text, error=msg))
            return Reply(False, msg)

    def _dispatch(self, cmd: C.Command) -> Reply:
        if isinstance(cmd, C.Status):
            st = self.status()
            return Reply(True, format_status(st), data=st)
        if isinstance(cmd, C.Help):
            return Reply(True, C.help_text(cmd.topic))
        if isinstance(cmd, C.Replay):
            return self._replay(cmd)
        if isinstance(cmd, (C.Fit, C.FitOneCycle)):
            return self._start_fit(cmd)
        if isinstance(cmd, C.Profile):
            return self._profile(cmd)
        if cmd.when == "now" and not isinstance(cmd, C.Save):
            raise CommandError(f"'{cmd.text}' is not answered by the test fake")
        if self.state == "idle":
            return Reply(True, self._apply(cmd))
        if cmd.when == "epoch" and self.state != "paused":
            self._epoch_q.append(cmd)
            return Reply(
                True,
                f"queued: '{cmd.text}' applies at the end of this epoch{cmd.queued_note(self.context())}",
            )
        reply = Reply(
            True, f"queued: '{cmd.text}' applies at the next batch{cmd.queued_note(self.context())}"
        )
        self._apply(cmd)  # the next batch comes at once here
        return reply

    def _apply(self, cmd: C.Command) -> str:
        if isinstance(cmd, C.Pause):
            self._set_state("paused", "paused by command")
            reply = f"paused at epoch {self.epoch}, batch {self.train_iter % N_TRAIN}"
        elif isinstance(cmd, C.Resume):
            self._set_state("running")
            reply = "resumed"
        elif isinstance(cmd, C.Stop):
            reply = "stopping at the next batch"
            self.emit(CommandApplied(cmd.text, self.epoch, self.train_iter, reply))
            self._end_fit("stopped", "stopped by user")
            return reply
        elif isinstance(cmd, C.Save):
            reply = f"saved {self._dir / self.name / 'checkpoints' / f'epoch{self.epoch}.pt'}"
        elif isinstance(cmd, C.Set):
            for name, v in cmd.values:
                self.hypers[name] = [float(x) for x in v] if isinstance(v, tuple) else [float(v)]
                now = self._scheds[name](self._pos()) if name in self._scheds and self.state != "idle" else 0
                if now:  # as the real scheduler: the rest of the schedule is rescaled so it is this value now
                    self._scheds[name] = scaled(self._scheds[name], self.hypers[name][-1] / now)
            reply = "set " + " ".join(f"{n}={self.hypers[n][0]:g}" for n, _ in cmd.values)
            if self.state == "idle" and any(n == "lr" for n, _ in cmd.values):
                reply += "; later fits start from this lr"  # as the real `set` says between fits
        elif isinstance(cmd, C.CbAdd):
            self.cbs.append(cmd.cb)
            reply = f"added callback {cmd.cb}"
        elif isinstance(cmd, C.CbRm):
            self.cbs.remove(cmd.cb)
            reply = f"removed callback {cmd.cb}"
        elif isinstance(cmd, C.HookAdd):
            hook = {"id": self._next_hook, "module": cmd.module, "kind": cmd.kind}
            self._hooks.append({**hook, "owner": USER_HOOK_OWNER, "scope": "session"})
            self._next_hook += 1
            reply = f"hook {hook['id']}: {cmd.kind} stats on {cmd.module or '(model)'} (hook rm {hook['id']} to remove)"
        elif isinstance(cmd, C.HookRm):
            self._hooks = [h for h in self._hooks if h["id"] != cmd.id]
            reply = f"removed hook {cmd.id}"
        else:
            raise CommandError(f"'{cmd.text}' is not applied by the test fake")
        self.emit(CommandApplied(cmd.text, self.epoch, self.train_iter, reply))
        return reply

    def _start_fit(self, cmd: C.Command) -> Reply:
        n = int(cmd.n)  # type: ignore[attr-defined]
        self._set_state("running", f"starting '{cmd.text}'")
        self.emit(CommandApplied(cmd.text, self.epoch, self.train_iter, "started"))
        assert self._journal is not None
        self.run_id = self._journal.start_run(
            self.name, "[train]\nepochs = 5\n", 0, env={}, code_version="test"
        )
        self.n_epochs = n
        self._plan = {"start_epoch": self.epoch, "n": n, "start_iter": self.train_iter, "total": n * N_TRAIN}
        lr = cmd.lr if isinstance(cmd.lr, float) else self.hypers["lr"][-1]  # type: ignore[attr-defined]
        one = isinstance(cmd, C.FitOneCycle)
        self._scheds = dict(one_cycle_scheds(lr, cmd.pct_start or 0.25)) if one else {}  # type: ignore[attr-defined]
        self.emit(FitStarted(self.run_id, self.epoch, n, N_TRAIN, N_VALID))
        self._set_state("running")
        self._fit_end = self.epoch + n
        return Reply(True, f"started: '{cmd.text}'")

    def _profile(self, cmd: C.Profile) -> Reply:
        """As the real session's profile job: running, the table as a Log, the figures, idle again."""
        if self.state != "idle":
            raise CommandError(
                f"cannot start 'profile' while the session is {self.state}; stop it first or wait"
            )
        self._set_state("running", "profile")
        rows = (
            ("data: wait for workers", 4e-3),
            ("forward", 3e-3),
            ("backward", 2e-3),
            ("cb recorder.after_batch", 1e-3),
        )
        rep = ProfileReport(cmd.n, sum(s for _, s in rows), rows, 1e-5, "wall", 0.4)
        self._profile_report = rep.as_dict()
        self.emit(Log(level="info", text=f"{cmd.text}:\n{rep.table()}"))
        self.emit(Profiled(rep.as_dict()))
        self._set_state("idle")
        return Reply(True, f"started: '{cmd.text}'")

    def profile_report(self) -> dict[str, Any] | None:
        """The last profile's figures (None before the first)."""
        return self._profile_report

    def _end_fit(self, status: str, reason: str = "") -> None:
        assert self._journal is not None
        last = self._history[-1] if self._history else {}
        final = {k: v for k, v in last.items() if k not in ("epoch", "time")}
        self._journal.end_run(self.run_id, status, final)
        if status == "done":
            self._plan = None  # a stopped fit keeps its plan, to be continued
        self._set_state("idle", reason)
        self.emit(FitEnded(status=status, reason=reason))

    def _replay(self, cmd: C.Replay) -> Reply:
        assert self._journal is not None
        run_id = self._journal.resolve_run(cmd.run)
        name = f"{self._journal.get_run(run_id)['session']}-replay{run_id}"
        log = self._dir / name / "replay.log"
        return Reply(
            True,
            f"replaying run {run_id} as session '{name}' in process 0: `labcon attach {name}` to watch it, "
            f"`labcon journal show {name}` for its run; log {log}",
            data={"run": run_id, "session": name, "pid": 0, "log": str(log)},
        )

    def _set_state(self, state: str, reason: str = "") -> None:
        self.state = state
        self.emit(StateChanged(state, reason))

    # -- driving ----------------------------------------------------------------------------------
    def emit(self, msg: Message) -> None:
        """Publish to every subscriber."""
        self.bus.publish(msg)

    def error(self, text: str) -> None:
        """Publish an error log line."""
        self.emit(Log("error", text))

    def lose_connection(self) -> None:
        """What a RemoteSession's subscriptions do when the session's process goes: they close."""
        for sub in list(self.bus._subs):
            sub.close()

    def train_batches(self, n: int, telemetry_every: int = 10) -> None:
        """Publish the messages n training batches would produce (deterministic, synchronous)."""
        hist = make_batch_history(self.train_iter + n)
        for _ in range(n):
            i = self.train_iter
            it = i % N_TRAIN
            lr, mom = hist["lrs"][i], hist["moms"][i]
            self.emit(
                Progress(
                    self.epoch, "train", it + 1, N_TRAIN, i + 1, hist["losses"][i], hist["smooth_losses"][i],
                    (lr,), (mom,), 12.0 * it / N_TRAIN, 12.0 * (N_TRAIN - it) / N_TRAIN, 60.0,
                )
            )  # fmt: skip
            self.emit(BatchStats(i, (hist["losses"][i],), (hist["smooth_losses"][i],), (lr,), (mom,)))
            for k in self._batches:
                self._batches[k].append(hist[k][i])
            self.train_iter += 1
            if self.train_iter % telemetry_every == 0:
                self.emit(TelemetryUpdated(self.train_iter))
            if self.train_iter % N_TRAIN == 0:
                self._epoch_end()

    def _epoch_end(self) -> None:
        row = make_history(self.epoch + 1)[-1]
        self._history.append(row)
        if self._journal is not None and self.state in ("running", "paused"):
            self._journal.log_epoch(self.run_id, self.epoch, {k: v for k, v in row.items() if k != "epoch"})
        self.emit(EpochEnded(self.epoch, row))
        queued, self._epoch_q = self._epoch_q, []
        for cmd in queued:
            self._apply(cmd)
        self.epoch += 1
        if self.state == "running" and self.epoch >= getattr(self, "_fit_end", math.inf):
            self._end_fit("done")

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
            self._live = None


def fake_app(**kw: Any) -> tuple[FakeSession, Any]:
    """A FakeSession (kw as its constructor's) and the console built on it (half-cell images)."""
    from labcon.tui.app import build_app

    fake = FakeSession(**kw)
    return fake, build_app(fake, images="halfcell")
