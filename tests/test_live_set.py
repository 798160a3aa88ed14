"""Changes that stick, against a real Session: `set` rescales a schedule, `fixed`/`sched` replace it, `fit` starts
from the configured lr, and bad hyper-parameters are refused at submit time (before anything is queued)."""

from __future__ import annotations

import time

import pytest

from labcon import Callback
from labcon.core.schedules import one_cycle_scheds, sched_cos
from labcon.session import messages as M
from labcon.session.config import parse_config
from labcon.session.session import Session
from tests.helpers import tiny_config


class LrLog(Callback):
    """What the optimizer will step with in each training batch: (train_iter, pct_train, lr, mom)."""

    order = 5  # after the command point (-30) and the ParamScheduler (1)
    run_in_probe = False

    def __init__(self) -> None:
        self.rows: list[tuple[int, float, float, float]] = []

    def before_batch(self) -> None:
        if self.runner.training:
            g = self.runner.opt.param_groups[0]
            self.rows.append((self.runner.train_iter, self.runner.pct_train, g["lr"], g["mom"]))


def _session(data, home, epochs: int = 30) -> tuple[Session, LrLog]:
    s = Session(parse_config(tiny_config(data, "t", epochs, telemetry=False)), home)
    log = LrLog()
    s.runner.add_cbs([log])
    return s, log


def _wait(cond, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while not cond():
        assert time.time() < deadline, "timed out"
        time.sleep(0.005)


def _applied(sub, text: str, timeout: float = 60.0) -> M.CommandApplied:
    deadline = time.time() + timeout
    while time.time() < deadline:
        m = sub.get(timeout=0.5)
        if isinstance(m, M.CommandApplied) and m.text == text:
            return m
        assert not isinstance(m, M.CommandFailed), m
    raise AssertionError(f"{text!r} never applied")


def _row(log: LrLog, it: int) -> tuple[int, float, float, float]:
    _wait(lambda: any(r[0] == it for r in log.rows))
    return next(r for r in log.rows if r[0] == it)


def test_set_rescales_the_one_cycle_schedule(data, tmp_path):
    s, log = _session(data, tmp_path)
    sub = s.subscribe()
    assert s.submit("fit_one_cycle 30").ok
    _wait(lambda: s.runner.train_iter >= 4)
    reply = s.submit("set lr=0.002")
    # Said at queue time, to whoever sent it: the schedule is rescaled, not overwritten next batch.
    assert reply.ok and "queued" in reply.text and "rescaled" in reply.text and "fixed" in reply.text
    applied = _applied(sub, "set lr=0.002")
    assert "rescaled" in applied.reply
    f = one_cycle_scheds(1e-2)["lr"]
    t0 = applied.iter
    _, p0, lr0, _ = _row(log, t0)
    assert lr0 == pytest.approx(0.002, rel=1e-9)  # the batch it was applied at uses the new value
    it, p2, lr2, _ = _row(log, t0 + 2)  # two batches later: the rescaled schedule, not the old one
    assert lr2 == pytest.approx(f(p2) * 0.002 / f(p0), rel=1e-9)
    assert abs(lr2 - f(p2)) > 0.1 * f(p2)
    s.submit("stop")
    assert s.wait(60)
    s.close()


def test_set_fixed_and_sched_replace_the_schedule(data, tmp_path):
    s, log = _session(data, tmp_path)
    sub = s.subscribe()
    assert s.submit("fit_one_cycle 30").ok
    _wait(lambda: s.runner.train_iter >= 3)
    reply = s.submit("set lr=0.003 fixed")
    assert reply.ok and "replaced by this constant" in reply.text
    t0 = _applied(sub, "set lr=0.003 fixed").iter
    moms = [_row(log, t0 + k)[3] for k in range(3)]
    assert [_row(log, t0 + k)[2] for k in range(3)] == [0.003] * 3
    assert len(set(moms)) == 3  # momentum keeps its own schedule
    assert s.submit("sched lr=cos:1e-3:1e-5").ok
    t1 = _applied(sub, "sched lr=cos:1e-3:1e-5").iter
    _, p1, lr1, _ = _row(log, t1)
    _, p3, lr3, _ = _row(log, t1 + 2)
    assert lr1 == pytest.approx(1e-3)  # the replacement starts now, over the rest of the fit
    assert lr3 == pytest.approx(sched_cos(1e-3, 1e-5)((p3 - p1) / (1 - p1)))
    plan = s.submit("show sched")
    assert plan.ok and "lr: cos 0.001 -> 1e-05 over the rest of the fit" in plan.text and "mom:" in plan.text
    s.submit("stop")
    assert s.wait(60)
    s.close()


def test_fit_starts_from_the_configured_lr_and_takes_lr(data, tmp_path):
    s, log = _session(data, tmp_path, epochs=1)
    assert s.submit("fit_one_cycle 3").ok and s.wait(60)
    assert s.runner.hyper("lr")[0] < 1e-3  # what one-cycle leaves behind (config lr = 1e-2)
    n = len(log.rows)
    assert s.submit("fit 1").ok and s.wait(60)
    assert log.rows[n][2] == pytest.approx(1e-2)  # the config's lr, not the annealed leftover
    n = len(log.rows)
    assert s.submit("fit 1 lr=3e-3").ok and s.wait(60)
    assert {r[2] for r in log.rows[n:]} == {3e-3}
    # A schedule given while idle runs in every later fit; `set` while idle moves what `fit` starts from.
    assert s.submit("sched wd=lin:0:0.1").ok
    assert "wd: lin 0 -> 0.1" in s.submit("show sched").text
    assert s.submit("set lr=2e-3").ok
    n = len(log.rows)
    assert s.submit("fit 1").ok and s.wait(60)
    assert log.rows[n][2] == pytest.approx(2e-3)
    assert s.runner.hyper("wd")[0] > 0.05
    s.close()


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("save 日本", "ASCII letters"),
        ("lr_find start_lr=10 end_lr=1", "start_lr must be below end_lr"),
        ("set mom=nan", "got 'nan'"),
        ("set mom=5", "mom must be a number >= 0 and < 1"),
        ("fit_one_cycle 1 lr=-1", "lr must be a number > 0"),
        ("fit 0", "at least 1"),
        ("set lr=abc", "got 'abc'"),
        ("sched lr=cos:1e-3:-1", "lr must be a number > 0"),
        ("sched lr=sin:1:2", "unknown annealer 'sin'"),
    ],
)
def test_bad_values_refused_at_submit(data, tmp_path, text, fragment):
    s, _ = _session(data, tmp_path, epochs=1)
    sub = s.subscribe()
    reply = s.submit(text)
    assert not reply.ok and fragment in reply.text and "queued" not in reply.text
    assert "\n" not in reply.text and "Traceback" not in reply.text and "signature" not in reply.text
    failed = [m for m in sub.drain() if isinstance(m, M.CommandFailed)]
    assert [m.error for m in failed] == [reply.text]  # quotes kept: nothing stripped on the way
    s.close()


def test_queue_time_reply_reaches_a_socket_client(data, tmp_path):
    """`labcon send` / attach get the same words: the reply is made by the session, at queue time."""
    import shutil
    import tempfile
    from pathlib import Path

    from labcon.remote.client import RemoteSession
    from labcon.remote.server import ControlServer, control_socket_path

    s, _ = _session(data, tmp_path)
    short = Path(tempfile.mkdtemp(prefix="lc", dir="/tmp"))  # socket paths must be short
    server = ControlServer(s, control_socket_path(short, "live"), follow=False).start()
    try:
        rs = RemoteSession(control_socket_path(short, "live"))
        assert rs.submit("fit_one_cycle 30").ok
        _wait(lambda: s.runner.train_iter >= 2)
        reply = rs.submit("set lr=0.002")
        assert reply.ok and "rescaled" in reply.text
        bad = rs.submit("set mom=nan")
        assert not bad.ok and bad.text.endswith("got 'nan'")
        rs.submit("stop")
        assert s.wait(60)
    finally:
        server.close()
        shutil.rmtree(short, ignore_errors=True)
        s.close()


def test_sched_mid_fit_applies_to_a_plain_fit(data, tmp_path):
    s, log = _session(data, tmp_path)
    sub = s.subscribe()
    assert s.submit("fit 30").ok
    _wait(lambda: s.runner.train_iter >= 2)
    reply = s.submit("sched lr=lin:1e-3:1e-4")
    assert reply.ok and "rest of this fit" in reply.text
    applied = _applied(sub, "sched lr=lin:1e-3:1e-4")
    assert "over the rest of this fit" in applied.reply
    _, p0, lr0, _ = _row(log, applied.iter)
    _, p2, lr2, _ = _row(log, applied.iter + 2)
    assert lr0 == pytest.approx(1e-3) and lr2 == pytest.approx(1e-3 + (1e-4 - 1e-3) * (p2 - p0) / (1 - p0))
    s.submit("stop")
    assert s.wait(60)
    s.close()


def test_a_rescaled_schedule_survives_stop_and_resume_from_the_checkpoint(data, tmp_path):
    s, log = _session(data, tmp_path)
    sub = s.subscribe()
    assert s.submit("fit_one_cycle 30").ok
    _wait(lambda: s.runner.train_iter >= 3)
    assert s.submit("set lr=0.002").ok
    t0 = _applied(sub, "set lr=0.002").iter
    _, p0, _, _ = _row(log, t0)
    _row(log, t0 + 1)
    s.submit("stop")
    assert s.wait(60)
    stopped_at = s.runner.train_iter
    s.close()
    # A new process: the session reopened from its checkpoint continues the fit with the change kept.
    again = Session.resume("t", tmp_path)
    log2 = LrLog()
    again.runner.add_cbs([log2])
    assert again.resume_fit()
    it, p, lr, _ = _row(log2, stopped_at + 2)
    f = one_cycle_scheds(1e-2)["lr"]
    assert lr == pytest.approx(f(p) * 0.002 / f(p0), rel=1e-9)
    again.submit("stop")
    assert again.wait(60)
    again.close()


def test_set_after_stop_applies_to_the_continued_fit(data, tmp_path):
    """A branch (replay --until N --then "set lr=X", or stop / set / resume): the continued fit keeps X."""
    s, log = _session(data, tmp_path)
    assert s.submit("fit_one_cycle 30").ok
    _wait(lambda: s.runner.train_iter >= 4)
    s.submit("stop")
    assert s.wait(60)
    stopped_at = s.runner.train_iter
    reply = s.submit("set lr=0.002")
    assert reply.ok and "the stopped fit's lr schedule is rescaled to it when it continues" in reply.text
    assert s.resume_fit()
    _, p0, lr0, _ = _row(log, stopped_at)
    _, p2, lr2, _ = _row(log, stopped_at + 2)
    f = one_cycle_scheds(1e-2)["lr"]
    assert lr0 == pytest.approx(0.002) and lr2 == pytest.approx(f(p2) * 0.002 / f(p0), rel=1e-9)
    s.submit("stop")
    assert s.wait(60)
    s.close()
