"""Runs are records: one run per fit, linked to the previous; resumed fits continue their own run; branches."""

from __future__ import annotations

import json
import time

import pytest

from labcon import Callback, CancelFitException
from labcon.cli import main
from labcon.commands import grammar
from labcon.errors import LabconError
from labcon.session import messages as M
from labcon.session.checkpoint import list_checkpoints, load_checkpoint
from labcon.session.config import parse_config
from labcon.session.fitplan import FitPlan
from labcon.session.journal import Journal
from labcon.session.replay import report, start_replay
from labcon.session.session import Session
from tests.helpers import tiny_config


def _session(data, home, name="t", epochs=2) -> Session:
    return Session(parse_config(tiny_config(data, name, epochs, telemetry=False)), home)


class StopAfterEpoch(Callback):
    """Cancels the fit at the end of one epoch (like a user's stop), once."""

    order = 100

    def __init__(self, epoch: int):
        self.epoch = epoch

    def after_epoch(self) -> None:
        if self.runner.epoch == self.epoch:
            self.epoch = -1
            raise CancelFitException("test stop")


def _until(cond, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def _wait_applied(sub, text: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = sub.get(timeout=0.2)
        if isinstance(m, M.CommandApplied) and m.text == text:
            return
    raise AssertionError(f"{text!r} was not applied")


def _journal(home) -> Journal:
    return Journal(home / "journal.db")


def test_a_new_fit_is_a_new_run_and_the_finished_one_stays_as_it_was(data, tmp_path):
    s = _session(data, tmp_path)
    assert s.start_fit().ok and s.wait(120)
    first = s.persist.run_id
    with _journal(tmp_path) as j:
        before = j.get_run(first)
        before_epochs = j.epochs(first)
    assert before["status"] == "done" and [e["epoch"] for e in before_epochs] == [0, 1]

    assert s.submit("set wd=0.01").ok  # idle: it sets up the next fit, so it belongs to the next run
    assert s.submit("fit 1").ok and s.wait(120)
    second = s.persist.run_id
    s.close()
    assert second != first
    with _journal(tmp_path) as j:
        after = j.get_run(first)
        run2 = j.get_run(second)
        assert {k: after[k] for k in ("status", "ended", "final_metrics", "duration")} == {
            k: before[k] for k in ("status", "ended", "final_metrics", "duration")
        }
        assert j.epochs(first) == before_epochs
        assert [e["text"] for e in j.events(first, kinds=["command"])] == ["fit_one_cycle 2 lr=0.01"]
        assert run2["previous_id"] == first and run2["parent_id"] is None and run2["status"] == "done"
        assert [e["text"] for e in j.events(second, kinds=["command"])] == ["set wd=0.01", "fit 1"]
        assert [e["epoch"] for e in j.epochs(second)] == [2]
        last = j.epochs(second)[-1]
        assert run2["final_metrics"]["valid_loss"] == pytest.approx(last["valid_loss"])
        assert [r["id"] for r in j.search(f"previous:{first}")] == [second]
        assert j.lineage(second) == [first, second]


def test_commands_between_runs_travel_with_their_checkpoint(data, tmp_path):
    s = _session(data, tmp_path, epochs=1)
    assert s.start_fit().ok and s.wait(120)
    first = s.persist.run_id
    assert s.submit("set wd=0.05").ok and s.submit("save").ok  # the checkpoint holds the changed wd
    s.close()
    again = Session.resume("t", tmp_path)
    assert again.runner.hyper("wd") == [0.05]
    assert again.submit("fit 1").ok and again.wait(120)
    second = again.persist.run_id
    again.close()
    with _journal(tmp_path) as j:
        assert [e["text"] for e in j.events(first, kinds=["command"])] == ["fit_one_cycle 1 lr=0.01"]
        assert [e["text"] for e in j.events(second, kinds=["command"])] == ["set wd=0.05", "fit 1"]
        assert j.get_run(second)["previous_id"] == first


def test_duration_is_training_time_not_paused_time(data, tmp_path):
    s = _session(data, tmp_path, epochs=3)
    assert s.start_fit().ok
    _until(lambda: s.runner.train_iter >= 2)
    assert s.submit("pause").ok
    _until(lambda: s.state == "paused")
    time.sleep(2.0)
    assert s.submit("resume").ok
    assert s.wait(120)
    rid = s.persist.run_id
    s.close()
    with _journal(tmp_path) as j:
        run = j.get_run(rid)
    wall = run["ended"] - run["started"]
    assert 0 < run["duration"] <= wall - 1.9  # the paused 2 s are not training time


def test_a_resumed_fit_continues_its_own_run_and_shows_running(data, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LABCON_HOME", str(tmp_path))
    s = _session(data, tmp_path, epochs=3)
    s.runner.add_cbs([StopAfterEpoch(0)])
    assert s.start_fit().ok and s.wait(120)
    rid = s.persist.run_id
    plan = s.persist.plan
    s.close()
    assert isinstance(plan, FitPlan) and plan.n == 3 and plan.start_epoch == 0
    # The checkpoint stores the typed plan's plain form, and a resumed session gets the same plan back.
    state = load_checkpoint(list_checkpoints(tmp_path / "t" / "checkpoints")[-1])
    assert FitPlan.from_state(state["plan"]) == plan
    with _journal(tmp_path) as j:
        stopped = j.get_run(rid)
        assert stopped["status"] == "stopped" and [e["epoch"] for e in j.epochs(rid)] == [0]
        assert stopped["final_metrics"]["valid_loss"] == pytest.approx(j.epochs(rid)[0]["valid_loss"])

    resumed = Session.resume("t", tmp_path)
    assert resumed.persist.plan == plan
    sub = resumed.subscribe()
    assert resumed.resume_fit()
    assert resumed.submit("pause").ok
    # The pause checkpoints (which flushes the journal) before it is reported applied.
    _wait_applied(sub, "pause")
    with _journal(tmp_path) as j:
        assert j.get_run(rid)["status"] == "running"  # training again: never 'done' or 'stopped'
        assert [r["id"] for r in j.search("status:running")] == [rid]
    assert main(["journal"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.split()[:1] == [str(rid)])
    assert line.split()[2] == "running"
    assert resumed.submit("resume").ok and resumed.wait(120)
    resumed.close()
    with _journal(tmp_path) as j:
        assert [r["id"] for r in j.search("")] == [rid]  # no new run
        run = j.get_run(rid)
        assert run["status"] == "done" and [e["epoch"] for e in j.epochs(rid)] == [0, 1, 2]
        assert run["final_metrics"]["valid_loss"] == pytest.approx(j.epochs(rid)[-1]["valid_loss"])


def test_cli_pane_source_and_export_agree(data, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LABCON_HOME", str(tmp_path))
    s = _session(data, tmp_path, epochs=3)
    s.runner.add_cbs([StopAfterEpoch(1)])
    assert s.start_fit().ok and s.wait(120)  # run 1: stopped after 2 epochs
    assert s.submit("fit 1").ok and s.wait(120)  # run 2: a new fit, done
    pane_rows = s.journal.search("")  # what the Journal pane lists
    s.close()
    assert [r["status"] for r in pane_rows] == ["done", "stopped"]
    assert main(["journal", "export", "--format", "json"]) == 0
    exported = json.loads(capsys.readouterr().out)
    assert main(["journal", "search", "--json"]) == 0
    cli_rows = json.loads(capsys.readouterr().out)
    by_id = {r["id"]: r for r in exported}
    for pane, cli in zip(pane_rows, cli_rows, strict=True):
        ex = by_id[pane["id"]]
        assert pane["status"] == cli["status"] == ex["status"]
        assert pane["final_metrics"] == cli["final_metrics"] == ex["final_metrics"]
        assert pane["duration"] == pytest.approx(ex["duration"])
        assert ex["epochs"], f"run {ex['id']} exported without epochs"
        last = ex["epochs"][-1]
        assert ex["final_metrics"]["valid_loss"] == pytest.approx(last["valid_loss"])
        assert isinstance(ex["params"], dict) and "train.lr" in ex["params"] and "lr" not in ex["params"]
        assert all(isinstance(e, dict) for e in ex["events"])
    assert [[e["epoch"] for e in by_id[r["id"]]["epochs"]] for r in pane_rows] == [[2], [0, 1]]


def test_start_fit_builds_typed_commands(data, tmp_path, monkeypatch):
    def no_parse(text: str):
        raise AssertionError(f"start_fit parsed {text!r}")

    s = _session(data, tmp_path, epochs=1)
    monkeypatch.setattr(grammar, "parse", no_parse)
    assert s.start_fit().ok and s.wait(120)
    rid = s.persist.run_id
    s.close()
    with _journal(tmp_path) as j:
        assert [e["text"] for e in j.events(rid, kinds=["command"])] == ["fit_one_cycle 1 lr=0.01"]


def test_callbacks_and_jobs_share_one_run_state(data, tmp_path):
    s = _session(data, tmp_path, epochs=1)
    control = s.runner.cb("session_control")
    assert control.run_state is s.run_state and s.jobs.run_state is s.run_state
    assert not hasattr(control, "session")  # handed the run state, not the whole session
    s.close()


# ----- replay and branches -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def parent(data, tmp_path_factory):
    """A finished 3-epoch run to replay and branch from: (sessions home, run id)."""
    home = tmp_path_factory.mktemp("replay")
    s = _session(data, home, name="orig", epochs=3)
    assert s.start_fit().ok and s.wait(120)
    rid = s.persist.run_id
    s.close()
    return home, rid


def test_branch_trains_to_the_original_length_and_differs_after_the_branch(parent):
    home, rid = parent
    branch, _ = start_replay(rid, home, until=1, then="opt sgd", name="b-sgd")
    assert branch.wait(120)
    rep = report(branch, rid, until=1)
    branch_run = branch.persist.run_id
    branch.close()
    assert [int(r["epoch"]) for r in branch.history()] == [0, 1, 2]  # trained on, not stopped at the branch
    assert rep["epochs_compared"] == 1 and max(rep["max_abs_deviation"].values()) < 1e-6
    deltas = rep["branch"]["deltas"]
    assert [d["epoch"] for d in deltas] == [1, 2]
    assert all(abs(d["valid_loss"]) > 1e-4 for d in deltas)  # a different optimizer: different metrics
    with _journal(home) as j:
        run = j.get_run(branch_run)
        assert run["parent_id"] == rid and run["status"] == "done"
        cmds = [(e["text"], e["epoch"], e["data"]["point"]) for e in j.events(branch_run, kinds=["command"])]
        assert ("opt sgd", 0, "epoch") in cmds  # applied where the parent's epoch 0 ended
        info = [e for e in j.events(branch_run, kinds=["info"]) if (e["data"] or {}).get("parent") == rid]
        assert len(info) == 1 and [d["epoch"] for d in info[0]["data"]["deltas"]] == [1, 2]
        assert "minus parent" in info[0]["text"]
    # The branch is a record like any other: replaying it gives the branch again.
    again, _ = start_replay(branch_run, home, name="b-sgd-again")
    assert again.wait(120)
    rep = report(again, branch_run)
    again.close()
    assert rep["epochs_compared"] == 3 and max(rep["max_abs_deviation"].values()) < 1e-6


def test_replaying_a_later_run_replays_the_runs_before_it(data, tmp_path):
    s = _session(data, tmp_path, name="two", epochs=2)
    assert s.start_fit().ok and s.wait(120)
    assert s.submit("set wd=0.05").ok and s.submit("fit 1").ok and s.wait(120)
    second = s.persist.run_id
    s.close()
    rep_s, plan = start_replay(second, tmp_path)
    assert len(plan.lineage) == 2 and [c.text for c in plan.idle] == [
        "fit_one_cycle 2 lr=0.01",
        "set wd=0.05",
        "fit 1",
    ]
    assert rep_s.wait(120)
    rep = report(rep_s, second)
    rep_s.close()
    assert rep["epochs_compared"] == 3 and max(rep["max_abs_deviation"].values()) < 1e-6


def test_branch_with_epochs_trains_that_long(parent):
    home, rid = parent
    branch, _ = start_replay(rid, home, until=2, then="set lr=0.5", name="b-long", epochs=4)
    assert branch.wait(120)
    rep = report(branch, rid, until=2)
    branch.close()
    assert [int(r["epoch"]) for r in branch.history()] == [0, 1, 2, 3]
    assert [d["epoch"] for d in rep["branch"]["deltas"]] == [2]  # the parent has no epoch 3


def test_replay_cli_branch_reports_deviation(parent, capsys):
    home, rid = parent
    code = main(
        [
            "--sessions-dir",
            str(home),
            "replay",
            str(rid),
            "--until",
            "2",
            "--then",
            "opt sgd",
            "--every",
            "999",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "branch after epoch 2 with 'opt sgd'" in out and "epoch 2: " in out and "valid_loss" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["--until", "0"], "--until 0"),
        (["--until", "-1"], "--until -1"),
        (["--until", "1", "--then", "garbage"], "--then 'garbage'"),
        (["--until", "1", "--then", "opt nosuch"], "--then 'opt nosuch'"),
        (["--until", "1", "--then", "status"], "does not change training"),
        (["--then", "set lr=1e-3"], "--then needs --until"),
        (["--until", "9", "--then", "set lr=1e-3"], "trained 3 epoch(s)"),
        (["--until", "3", "--then", "set lr=1e-3"], "nothing to train after the branch"),
        (["--until", "2", "--then", "set lr=1e-3", "--epochs", "2"], "must be more than --until"),
    ],
)
def test_replay_refuses_bad_arguments_before_training(parent, capsys, args, message):
    home, rid = parent
    before = sorted(p.name for p in home.iterdir())
    code = main(["--sessions-dir", str(home), "replay", str(rid), "--session", "bad", *args])
    err = capsys.readouterr().err
    assert code != 0 and message in err and "Traceback" not in err
    assert sorted(p.name for p in home.iterdir()) == before  # no session left behind
    with _journal(home) as j:
        assert not j.search("session:bad")


def test_start_replay_refuses_garbage_without_a_session(parent):
    home, rid = parent
    with pytest.raises(LabconError, match="--then 'fti 3'"):
        start_replay(rid, home, until=1, then="fti 3", name="never")
    assert not (home / "never").exists()
