"""The session's worker thread against a real Session: a failure ends the job, never the session, and nothing
queued for a safe point that a job never reached is carried into the next fit."""

from __future__ import annotations

import pytest

from labcon.session import messages as M
from labcon.session.journal import JournalError
from tests.helpers import tiny_session


def _drain(sub) -> list[M.Message]:
    out = []
    while (m := sub.get(timeout=0.05)) is not None:
        out.append(m)
    return out


def test_a_journal_failure_at_the_end_of_a_fit_leaves_the_session_usable(data, tmp_path, monkeypatch):
    s = tiny_session(data, tmp_path)
    try:
        sub = s.subscribe()
        real = s.persist.fit_ended

        def disk_full(*a, **kw):
            monkeypatch.setattr(s.persist, "fit_ended", real)  # once: the next fit's end is recorded
            raise JournalError("journal writes failed: database or disk is full")

        monkeypatch.setattr(s.persist, "fit_ended", disk_full)
        assert s.submit("fit 1").ok
        assert s.wait(120) and s.state == "idle"
        msgs = _drain(sub)
        ended = [m for m in msgs if isinstance(m, M.FitEnded)]
        assert [m.status for m in ended] == ["done"]
        said = [m.text for m in msgs if isinstance(m, M.Log) and m.level == "error"]
        assert any("recording the fit's end in the journal failed" in t and "disk is full" in t for t in said)
        assert "disk is full" in (s.last_error or "")
        assert s.submit("fit 1").ok  # the worker is alive: the next fit runs
        assert s.wait(120) and s.state == "idle" and s.runner.epoch == 2
    finally:
        s.close()


def test_commands_typed_during_lr_find_apply_when_it_ends_and_never_reach_the_next_fit(data, tmp_path):
    """lr_find has no safe point for queued commands: `set` applies when it ends, `stop` is said not to apply
    (it used to stay queued and stop the next fit at its first batch)."""
    s = tiny_session(data, tmp_path)
    try:
        sub = s.subscribe()
        assert s.submit("lr_find").ok
        assert s.submit("set wd=0.05").ok
        reply = s.submit("stop")
        assert reply.ok and "queued" in reply.text
        assert s.wait(120)
        msgs = _drain(sub)
        assert [m.text for m in msgs if isinstance(m, M.CommandApplied) and m.text.startswith("set")] == [
            "set wd=0.05"
        ]
        failed = [m for m in msgs if isinstance(m, M.CommandFailed)]
        assert [m.text for m in failed] == ["stop"] and "'lr_find' ended" in failed[0].error
        assert s.status()["hypers"]["wd"] == [pytest.approx(0.05)]
        assert s.submit("fit 1").ok
        assert s.wait(120)
        ended = [m for m in _drain(sub) if isinstance(m, M.FitEnded)]
        assert [(m.status, m.reason) for m in ended] == [("done", "")]
    finally:
        s.close()


def test_batch_stats_and_journal_samples_go_on_after_a_long_history_is_thinned(data, tmp_path):
    """The recorder halves its oldest batch history past max_batches; what is published and journaled is
    counted by batches recorded, so it keeps coming (it used to stop once the history first shrank)."""
    s = tiny_session(data, tmp_path, epochs=5)
    try:
        s.runner.recorder.max_batches = 12  # thinned several times over the fit
        sub = s.subscribe()
        assert s.submit("fit 5").ok
        assert s.wait(120) and s.last_error is None
        stats = [m for m in _drain(sub) if isinstance(m, M.BatchStats)]
        iters = [m.start_iter + i for m in stats for i in range(len(m.losses))]
        n = 5 * len(s.runner.dls.train)
        assert iters == list(range(n))  # every batch once, in order
        s.persist.writer.flush()
        sampled = [it for it, _ in s.journal.batches(s.persist.run_id)["loss"]]
        assert sampled == list(range(0, n, 10))  # every tenth batch, to the end
    finally:
        s.close()


def test_stop_typed_in_fine_tune_s_first_phase_last_validation_stops_the_job(data, tmp_path):
    """fine_tune is one job of two fits: a stop that arrives after the frozen phase's last batch (during its
    validation) stops the unfrozen phase at its first batch, instead of being dropped between the two."""
    from labcon import Callback

    s = tiny_session(data, tmp_path)

    class TypeStop(Callback):
        order = 100
        run_in_probe = False
        sent = False

        def after_validate(self) -> None:
            if not TypeStop.sent:
                TypeStop.sent = True
                assert s.submit("stop").ok  # as if typed now: queued for the next batch

    try:
        s.runner.add_cbs([TypeStop()])
        sub = s.subscribe()
        assert s.submit("fine_tune 2 freeze_epochs=1").ok
        assert s.wait(120) and s.last_error is None
        ended = [m for m in _drain(sub) if isinstance(m, M.FitEnded)]
        assert [m.status for m in ended] == ["done", "stopped"]
        assert s.runner.epoch == 1  # the unfrozen phase trained no epoch
    finally:
        s.close()
