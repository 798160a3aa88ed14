"""One session contract (labcon/session/api.py), one body of assertions, three implementations: the real Session in
this process, a RemoteSession attached over the control socket to a real served Session, and the test fake.

Every front end relies on what is asserted here; the fake may only do what these tests prove the real ones do, so
a fake that answers differently from the real session fails them.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from labcon.commands import grammar as C
from labcon.commands.cmd_watch import USER_HOOK_OWNER
from labcon.remote.client import RemoteSession
from labcon.remote.server import ControlServer, control_socket_path
from labcon.session.api import Reply, SessionAPI, Subscription
from labcon.session.config import parse_config
from labcon.session.messages import (
    CommandApplied,
    CommandFailed,
    FitEnded,
    FitStarted,
    Log,
    Message,
    Profiled,
    StateChanged,
)
from labcon.session.session import Session
from tests.fake_data import N_TRAIN
from tests.fakes import FakeSession
from tests.helpers import make_image_folder, tiny_config

TIMEOUT = 60.0


@dataclass
class Impl:
    """One implementation under test and how to let its training move."""

    kind: str
    s: SessionAPI
    local: Session | None = None  # the real session behind it (None for the fake)
    closers: list[Callable[[], None]] = field(default_factory=list)

    @property
    def real(self) -> bool:
        return self.local is not None

    def batches(self, n: int) -> None:
        """Let n more training batches happen."""
        if isinstance(self.s, FakeSession):
            self.s.train_batches(n)
            return
        start = self.s.status()["train_iter"]
        _until(lambda: self.s.status()["train_iter"] >= start + n)

    def run_out(self) -> None:
        """Let the live fit finish."""
        if isinstance(self.s, FakeSession):
            while self.s.state == "running":
                self.s.train_batches(N_TRAIN)
            return
        assert self.s.wait(TIMEOUT), "the fit did not finish"


def _until(cond: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "condition not reached in time"
        time.sleep(0.02)


@pytest.fixture(scope="module")
def image_data() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="lcdata", dir="/tmp"))
    yield make_image_folder(d, n_train=24, n_valid=8)
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(params=["session", "remote", "fake"])
def impl(request: pytest.FixtureRequest, image_data: Path) -> Iterator[Impl]:
    if request.param == "fake":
        fake = FakeSession(state="idle")
        yield Impl("fake", fake, closers=[fake.close])
        return
    home = Path(tempfile.mkdtemp(prefix="lc", dir="/tmp"))  # short: a socket path has at most 107 bytes
    cfg = tiny_config(image_data, name="c", epochs=1, extra='schedule = "constant"\n')
    local = Session(parse_config(cfg), home)
    it = Impl(
        request.param, local, local, closers=[lambda: shutil.rmtree(home, ignore_errors=True), local.close]
    )
    if request.param == "remote":
        server = ControlServer(local, control_socket_path(home, local.name)).start()
        it.s = RemoteSession(server.path)
        it.closers += [server.close, it.s.close]
    try:
        yield it
    finally:
        for close in reversed(it.closers):
            close()


def _take(sub: Subscription, until: Callable[[Message], bool]) -> list[Message]:
    """Messages up to and including the first that satisfies `until`."""
    out: list[Message] = []
    end = time.monotonic() + TIMEOUT
    while time.monotonic() < end:
        m = sub.get(timeout=0.1)
        if m is None:
            continue
        out.append(m)
        if until(m):
            return out
    raise AssertionError(f"message not received; got {[type(m).__name__ for m in out]}")


def _applied(text: str) -> Callable[[Message], bool]:
    return lambda m: isinstance(m, CommandApplied) and m.text == text


def _lifecycle(msgs: list[Message]) -> list[tuple[Any, ...]]:
    """State changes, applied commands and fit ends: what every front end shows of a run's life."""
    out: list[tuple[Any, ...]] = []
    for m in msgs:
        if isinstance(m, StateChanged):
            out.append(("state", m.state, m.reason))
        elif isinstance(m, CommandApplied):
            out.append(("applied", m.text) + ((m.reply,) if not m.text.startswith("set") else ()))
        elif isinstance(m, FitEnded):
            out.append(("ended", m.status, m.reason))
        elif isinstance(m, CommandFailed):
            out.append(("failed", m.text, m.error))
    return out


def queued(text: str) -> Reply:
    return Reply(True, f"queued: '{text}' applies at the next batch")


# -- the contract -----------------------------------------------------------------------------------
def test_is_a_session_api(impl: Impl) -> None:
    assert isinstance(impl.s, SessionAPI)
    assert impl.s.remote == (impl.kind == "remote")


def test_snapshots_have_the_contract_shapes(impl: Impl) -> None:
    s = impl.s
    st = s.status()
    assert set(st) == {
        "name", "state", "epoch", "n_epochs", "iter", "n_iter", "train_iter", "run_id", "device", "model", "opt",
        "hypers", "cbs", "built", "last_error", "fit", "bound", "input_share",
    }  # fmt: skip
    assert st["state"] == "idle" and st["name"] == s.name
    assert all(isinstance(v, list) for v in st["hypers"].values()) and isinstance(
        st["built"], list
    )  # empty until the optimizer exists
    paths = s.module_paths()
    assert paths[0] == "" and all(isinstance(p, str) for p in paths) and len(paths) > 3
    assert s.context().state == "idle" and list(s.context().module_paths) == paths
    for h in s.hooks_table():
        assert set(h) == {"id", "module", "kind", "owner", "scope"} and h["module"] in paths
    assert isinstance(s.data_summary(), str) and s.data_summary()
    assert isinstance(s.sample_batch_image(augment=False), Image.Image)
    assert s.text_batch() is None  # image data: no text batch (the Data pane draws images)
    assert set(s.batch_history()) == {"losses", "smooth_losses", "lrs", "moms"}


def test_subscription_times_out_with_none_and_closes(impl: Impl) -> None:
    sub = impl.s.subscribe()
    t0 = time.monotonic()
    assert sub.get(timeout=0.1) is None  # a timeout is None, never an exception
    assert time.monotonic() - t0 >= 0.09
    assert not sub.closed
    sub.close()
    assert sub.closed


def test_bad_commands_are_refused_with_one_message(impl: Impl) -> None:
    s = impl.s
    sub = s.subscribe()
    r = s.submit("frobnicate 3")
    assert not r.ok and r.text.startswith("unknown command 'frobnicate'")
    assert _take(sub, lambda m: isinstance(m, CommandFailed))[-1] == CommandFailed("frobnicate 3", r.text)
    assert s.submit("pause") == Reply(False, "nothing to pause: the session is idle")
    assert s.submit("set lr=0.01") == Reply(
        True, "set lr=0.01; later fits start from this lr"
    )  # idle: at once


def test_fit_pause_set_resume_stop_replies_and_messages_in_order(impl: Impl) -> None:
    s = impl.s
    sub = s.subscribe()
    st0 = s.status()
    assert s.submit("fit 1000") == Reply(True, "started: 'fit 1000'")
    msgs = _take(sub, lambda m: isinstance(m, FitStarted))
    n_train = msgs[-1].n_train  # type: ignore[attr-defined]
    impl.batches(2)
    want = {"start_epoch": st0["epoch"], "n": 1000, "start_iter": st0["train_iter"], "total": 1000 * n_train}
    assert s.status()["fit"] == want  # the fit's position, one source for status bar and bars
    refused = "cannot start 'fit' while the session is running; stop it first or wait"
    assert s.submit("fit 2") == Reply(False, refused)
    assert s.submit("pause") == queued("pause")
    msgs += _take(sub, _applied("pause"))
    st = s.status()
    assert st["state"] == "paused"
    assert s.submit("set lr=0.01") == queued("set lr=0.01")
    msgs += _take(sub, _applied("set lr=0.01"))
    assert s.status()["hypers"]["lr"] == [0.01] * len(st["hypers"]["lr"])
    assert s.submit("resume") == queued("resume")
    assert s.submit("stop") == queued("stop")
    msgs += _take(sub, lambda m: isinstance(m, FitEnded))
    assert s.status()["state"] == "idle"
    life = _lifecycle(msgs)
    paused = next(x for x in life if x[:2] == ("applied", "pause"))
    assert paused[2] == f"paused at epoch {st['epoch']}, batch {st['iter']}"
    assert [x for x in life if x is not paused and x[0] != "failed"] == [
        ("state", "running", "starting 'fit 1000'"),
        ("applied", "fit 1000", "started"),
        ("state", "running", ""),
        ("state", "paused", "paused by command"),
        ("applied", "set lr=0.01"),
        ("state", "running", ""),
        ("applied", "resume", "resumed"),
        ("applied", "stop", "stopping at the next batch"),
        ("state", "idle", "stopped by user"),
        ("ended", "stopped", "stopped by user"),
    ]


def test_hooks_are_added_and_removed_while_training(impl: Impl) -> None:
    s = impl.s
    sub = s.subscribe()
    module = s.module_paths()[2]
    add = C.parse(f"hook add {module}").text
    s.submit("fit 1000")
    impl.batches(1)
    assert s.status()["state"] == "running"
    assert s.submit(add) == queued(add)
    applied = _take(sub, _applied(add))[-1]
    assert isinstance(applied, CommandApplied)
    mine = [h for h in s.hooks_table() if h["owner"] == USER_HOOK_OWNER and h["module"] == module]
    assert len(mine) == 1 and mine[0]["kind"] == "forward" and mine[0]["scope"] == "session"
    hid = mine[0]["id"]
    assert applied.reply == f"hook {hid}: forward stats on {module} (hook rm {hid} to remove)"
    assert s.status()["state"] == "running"
    assert s.submit(f"hook rm {hid}") == queued(f"hook rm {hid}")
    assert _take(sub, _applied(f"hook rm {hid}"))[-1].reply == f"removed hook {hid}"  # type: ignore[attr-defined]
    assert all(h["id"] != hid for h in s.hooks_table())
    s.submit("stop")
    _take(sub, lambda m: isinstance(m, FitEnded))


def test_journal_rows_carry_final_metrics(impl: Impl) -> None:
    s = impl.s
    assert s.submit("fit 1") == Reply(True, "started: 'fit 1'")
    impl.run_out()
    assert s.journal is not None
    newest = s.journal.search("")[0]
    assert {"id", "session", "status", "started", "ended", "parent_id", "final_metrics", "tags"} <= set(
        newest
    )
    assert newest["session"] == s.name and newest["status"] == "done" and newest["id"] == s.status()["run_id"]
    assert s.status()["fit"] is None  # a finished fit leaves nothing to continue
    assert set(newest["final_metrics"]) == {"train_loss", "valid_loss", "accuracy"}
    last = s.history()[-1]
    assert newest["final_metrics"]["valid_loss"] == pytest.approx(last["valid_loss"])
    epochs = s.journal.epochs(newest["id"])
    assert epochs[-1]["epoch"] == last["epoch"]
    assert set(epochs[-1]) == {"epoch", "train_loss", "valid_loss", "accuracy", "time"}
    assert s.journal.get_run(newest["id"])["final_metrics"] == newest["final_metrics"]


def test_replay_starts_a_session_process_and_says_where(impl: Impl) -> None:
    s = impl.s
    s.submit("fit 1")
    impl.run_out()
    assert s.journal is not None
    run = s.journal.search("")[0]
    name = f"{run['session']}-replay{run['id']}"
    r = s.submit(f"replay {run['id']}")
    assert r.ok, r.text
    assert r.data is not None and r.data["run"] == run["id"] and r.data["session"] == name
    assert r.text == (
        f"replaying run {run['id']} as session '{name}' in process {r.data['pid']}: `labcon attach {name}` to "
        f"watch it, `labcon journal show {name}` for its run; log {r.data['log']}"
    )
    assert Path(r.data["log"]).name == "replay.log" and Path(r.data["log"]).parent.name == name
    assert s.status()["state"] == "idle"  # the session that got the command is untouched
    if impl.kind == "remote":
        for proc in impl.local.children:  # type: ignore[union-attr]
            proc.kill()  # the local variant above sees one through; this one need not use the CPU
            proc.wait()
    if impl.kind == "session":  # a real process ran (once is enough): its run is in the journal, linked
        (proc,) = impl.local.children  # type: ignore[union-attr]
        assert proc.wait(120) == 0, Path(r.data["log"]).read_text()
        replayed = s.journal.search(f"session:{name}")
        assert replayed and replayed[0]["parent_id"] == run["id"] and replayed[0]["status"] == "done"
        assert replayed[0]["final_metrics"]["valid_loss"] == pytest.approx(run["final_metrics"]["valid_loss"])


def test_model_summary_and_schedule_plan(impl: Impl) -> None:
    s = impl.s
    sub = s.subscribe()
    summary = s.model_summary()
    rows = summary["rows"]
    assert summary["batch"] >= 1 and [r["path"] for r in rows] == s.module_paths()
    for r in rows:
        assert set(r) == {"path", "kind", "shape", "params", "trainable", "macs"}
        assert isinstance(r["shape"], list) and r["trainable"] <= r["params"] and r["macs"] >= 0
    root, children = rows[0], [r for r in rows if r["path"] and "." not in r["path"]]
    assert root["params"] == sum(r["params"] for r in children) > 0  # counts are over the subtree
    assert root["macs"] == sum(r["macs"] for r in children) > 0
    assert s.schedule_plan() is None  # no fit running
    assert s.submit("fit_one_cycle 1000 lr=0.01").ok
    impl.batches(2)
    plan = s.schedule_plan()
    assert plan is not None
    fit = s.status()["fit"]
    assert (plan["start_iter"], plan["total"]) == (fit["start_iter"], fit["total"]) and 0 <= plan[
        "pos"
    ] < 0.01
    lr = plan["series"]["lr"]
    peak = max(range(len(lr)), key=lr.__getitem__)
    assert lr[0] == pytest.approx(0.01 / 25) and lr[peak] == pytest.approx(0.01)
    assert peak == round(0.25 * (len(lr) - 1)) and lr[-1] == pytest.approx(0.01 / 1e5)
    assert [r["path"] for r in s.model_summary()["rows"]] == s.module_paths()  # also while training
    assert s.submit("set lr=0.001").ok
    _take(sub, _applied("set lr=0.001"))
    after = s.schedule_plan()
    assert after is not None
    ratios = {round(b / a, 6) for a, b in zip(lr, after["series"]["lr"], strict=True) if a > 1e-9}
    assert len(ratios) == 1 and ratios != {1.0}  # rescaled, shape kept
    assert s.submit("pause").ok
    _take(sub, _applied("pause"))
    assert s.model_summary()["rows"][0]["params"] == root["params"]  # a paused fit answers too
    s.submit("stop")
    _take(sub, lambda m: isinstance(m, FitEnded))
    assert s.schedule_plan() is None


def test_a_profile_is_published_and_kept_for_clients_that_come_later(impl: Impl) -> None:
    s = impl.s
    assert s.profile_report() is None  # none yet (nor in a fresh journal)
    sub = s.subscribe()
    assert s.submit("profile 2") == Reply(True, "started: 'profile 2'")
    msgs = _take(sub, lambda m: isinstance(m, StateChanged) and m.state == "idle")
    (table,) = [m for m in msgs if isinstance(m, Log) and m.text.startswith("profile 2:")]
    (done,) = [m for m in msgs if isinstance(m, Profiled)]
    assert msgs.index(table) < msgs.index(done)  # the words first, then the figures the console charts
    rep = done.report
    assert {"n_steps", "step_ms", "parts", "overhead_ms", "overhead_share", "clock", "input_share", "bound",
            "worker_parts", "workers", "notes"} <= set(rep)  # fmt: skip
    assert rep["n_steps"] == 2 and rep["bound"] in ("input", "compute") and rep["clock"] == "wall"
    assert all(set(p) == {"part", "ms", "share"} for p in rep["parts"]) and "forward" in table.text
    assert {"forward", "backward"} <= {p["part"] for p in rep["parts"]}
    assert sum(p["ms"] for p in rep["parts"]) == pytest.approx(rep["step_ms"], rel=0.05)
    assert s.profile_report() == rep  # what a console attaching now is shown
    assert s.status()["state"] == "idle"
