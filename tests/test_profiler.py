"""The profiler: every part of a step is timed (data and its stages, forward, loss, backward, optimizer step,
each callback's events), the parts add up to the step, its own cost is reported, the runner is put back as
it was; the input-bound indicator; `profile N` in a real Session (journaled) and `labcon profile CONFIG`."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from labcon.cli import main
from labcon.core.events import Callback, CallbackError
from labcon.core.profiler import Profiler, run_profile
from labcon.core.runner import Runner
from labcon.data.loaders import DataLoaders
from labcon.session.session import Session
from tests.helpers import mlp, synthetic_dls, tiny_config


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models on a busy 2-core box: one thread avoids hand-off stalls."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class Sleepy(Callback):
    """Sleeps in after_loss: a callback whose cost the profile must show."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def after_loss(self) -> None:
        time.sleep(self.seconds)


class SlowLoader:
    """Batches that take `seconds` each to come out, with per-stage times like labcon's image loader."""

    def __init__(self, batches: list, seconds: float) -> None:
        self.batches, self.seconds = batches, seconds
        self.stage_seconds = {"read": 0.0, "batch tfms": 0.0}

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        for b in self.batches:
            t = time.perf_counter()
            time.sleep(self.seconds)
            self.stage_seconds["read"] += time.perf_counter() - t
            yield b


def _runner(cbs=(), train=None) -> Runner:
    dls = synthetic_dls(n=96, bs=16)
    torch.manual_seed(0)
    return Runner(mlp(), DataLoaders(train or dls.train, dls.valid), cbs=list(cbs), device="cpu")


def test_profile_times_every_part_and_puts_the_runner_back() -> None:
    r = _runner([Sleepy(0.02)])  # long enough that the step is compute-bound however slow the machine
    r.fit(1)
    before = {k: v.clone() for k, v in r.model.state_dict().items()}
    opt_before = repr(r.opt.state_dict()["state"])
    counters, losses = (r.epoch, r.train_iter), list(r.recorder.losses)
    rep = run_profile(r, 4)
    parts = dict(rep.rows)
    for name in ("data loading", "forward", "loss", "backward", "optimizer step", "loop (dispatch, rest)"):
        assert name in parts and parts[name] >= 0
    assert parts["cb sleepy.after_loss"] >= 0.02  # slept at least that long, every step
    assert {"cb recorder.after_batch", "cb train_eval.after_batch", "cb device.before_batch"} <= set(parts)
    assert sum(parts.values()) == pytest.approx(rep.step_s, rel=1e-6)  # the parts are the whole step
    assert rep.n_steps == 4 and rep.clock == "wall" and rep.bound == "compute"
    assert 0 < rep.overhead_s < rep.step_s
    assert "profiler overhead" in rep.table() and "cb sleepy.after_loss" in rep.table()
    # Nothing of the training changed: weights, optimizer state, counters, recorded losses; no wrapper left.
    for k, v in r.model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert repr(r.opt.state_dict()["state"]) == opt_before
    assert (r.epoch, r.train_iter) == counters and r.recorder.losses == losses
    assert r._event_wrapper is None and all(
        type(m).__name__ == "method"
        for t in (r._table_train, r._table_valid)
        for ms in t.values()
        for m in ms
    )


def test_profile_reads_the_loaders_stages_and_sees_an_input_bound_step() -> None:
    dls = synthetic_dls(n=96, bs=16)
    slow = SlowLoader(list(dls.train), 0.1)
    r = _runner(train=slow)
    rep = run_profile(r, 3)
    parts = dict(rep.rows)
    assert parts["data: read"] >= 0.1 and "data: batch tfms" in parts
    assert rep.bound == "input" and rep.input_share > 0.3


def test_runner_input_meter_tells_input_bound_from_compute_bound() -> None:
    dls = synthetic_dls(n=320, bs=12)  # 240 training rows: 20 batches, one full window
    r = _runner(train=SlowLoader(list(dls.train), 0.1))
    assert r.input_meter.bound is None
    r.fit(1)
    assert r.input_meter.bound == "input"
    r = _runner([Sleepy(0.1)], train=dls.train)
    r.fit(1)
    assert r.input_meter.bound == "compute"


def test_a_failing_callback_is_named_under_the_profiler() -> None:
    class Boom(Callback):
        def after_loss(self) -> None:
            raise ValueError("boom")

    r = _runner([Boom()])
    with pytest.raises(CallbackError) as e:
        r.fit(1, cbs=[Profiler(2)])
    assert e.value.cb_name == "boom"
    assert r._event_wrapper is None  # the profiler's after_fit ran on the crash


def test_profile_command_in_a_session_is_journaled(data: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(tiny_config(data, name="p", epochs=1))
    from labcon.session.config import load_config

    s = Session.from_config(load_config(cfg), tmp_path / "home")
    try:
        assert not s.submit("profile 0").ok
        assert not s.submit("profile x").ok
        weights = {k: v.clone() for k, v in s.runner.model.state_dict().items()}
        assert s.submit("profile 3").ok
        assert s.wait(120)
        rep = s.last_profile
        assert rep is not None and rep.n_steps == 3
        names = dict(rep.rows)
        assert "data: transfer" in names and "cb telemetry.before_batch" in names  # the image loader's stages
        assert not any(n.startswith(("cb session", "cb progress")) for n in names)  # front ends sat out
        for k, v in s.runner.model.state_dict().items():
            assert torch.equal(v, weights[k]), k
        assert s.runner.train_iter == 0 and s.history() == []
        st = s.status()
        assert "bound" in st and "input_share" in st
        assert s.submit("fit 1").ok and s.wait(120)  # training goes on normally afterwards
        assert len(s.history()) == 1
        # Journaled: between runs, into the run that opens next (the profile set that fit up).
        s.persist.writer.flush()
        events = s.journal.events(s.persist.run_id)
        prof = [e for e in events if e["kind"] == "info" and "profile 3" in e["text"]]
        assert prof and prof[0]["data"]["profile"]["n_steps"] == 3
        assert any(e["kind"] == "command" and e["text"] == "profile 3" for e in events)
        assert s.profile_report() == rep.as_dict()
    finally:
        s.close()
    # A console that attaches to the session in a later process is shown that profile, from the journal.
    again = Session.resume("p", tmp_path / "home")
    try:
        assert again.last_profile is None and again.profile_report() == rep.as_dict()
    finally:
        again.close()


def test_cli_profile(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(tiny_config(data, name="q", epochs=1))
    assert main(["--sessions-dir", str(tmp_path / "home"), "profile", str(cfg), "--steps", "2"]) == 0
    out = capsys.readouterr().out
    assert "forward" in out and "backward" in out and "profiler overhead" in out and "ms per step" in out
    assert main(["--sessions-dir", str(tmp_path / "home"), "profile", str(cfg), "--steps", "0"]) == 2


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_stages_are_timed_where_they_run_only_while_profiling(
    data: Path, tmp_path: Path, workers: int
) -> None:
    """read / decode / item tfms / collate: inside the worker processes (carried back with each batch) or, with
    no workers, in the step's own data time; the loader is untimed again afterwards."""
    from labcon.session.config import parse_config

    cfg = tiny_config(data, name=f"w{workers}", epochs=1).replace(
        "num_workers = 0", f"num_workers = {workers}"
    )
    s = Session(parse_config(cfg), tmp_path / "home")
    try:
        dl = s.runner.dls.train
        assert len(next(iter(dl.sampler))) == 2  # untimed keys: nothing extra per item
        assert s.submit("profile 3").ok and s.wait(120)
        rep = s.last_profile
        assert rep is not None
        parts = dict(rep.rows)
        # Still the whole step (the stages are the loader's clock readings, the step's data time the Runner's).
        assert sum(parts.values()) == pytest.approx(rep.step_s, rel=0.05)
        stages = ("read", "decode", "item tfms", "collate")
        if workers:
            assert "data: wait for workers" in parts and not any(f"data: {k}" in parts for k in stages)
            assert rep.workers == workers and [k for k, _ in rep.worker_rows] == list(stages)
            assert all(v > 0 for _, v in rep.worker_rows)
            assert "inside the 2 loader workers" in rep.table()
            assert [p["part"] for p in rep.as_dict()["worker_parts"]] == list(stages)
        else:
            assert all(parts[f"data: {k}"] > 0 for k in stages) and "data: loader (rest)" in parts
            assert rep.worker_rows == () and rep.workers == 0
        assert "data: transfer" in parts and "data: batch tfms" in parts
        # Off again: plain keys, batches without stage times, the three stages seen from this process.
        assert not dl.sampler.timed and len(next(iter(dl.sampler))) == 2
        assert dl.worker_seconds is None
        first = "wait for workers" if workers else "read, decode, item tfms, collate"
        assert list(dl.stage_seconds) == [first, "transfer", "batch tfms"]
        raw = dl.raw_batches()
        assert "stages" not in next(raw)
        raw.close()
    finally:
        s.close()


def test_a_timed_batch_after_timing_is_switched_off_counts_as_the_wait(data: Path) -> None:
    """Batches already timed when the profiler stops still count, as the plain first stage."""
    from labcon.session.build import build_block
    from labcon.session.config import parse_config

    block = build_block(parse_config(tiny_config(data, name="off")))
    for workers in (0, 2):
        dl = block.dataloaders(num_workers=workers).train
        dl.time_stages(True)
        it = iter(dl)
        next(it)
        dl.time_stages(False)  # the pass goes on with batches timed before
        next(it)
        first = "wait for workers" if workers else "read, decode, item tfms, collate"
        assert dl.stage_seconds[first] > 0 and dl.worker_seconds is None
        it.close()
        dl.close()
