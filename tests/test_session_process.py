"""`labcon open`'s session process: `labcon serve` in a child, attached over its socket, ended by `shutdown`."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from labcon.errors import LabconError
from labcon.remote.client import ControlClient, RemoteSession
from labcon.remote.server import ControlServer, server_is_live
from labcon.remote.spawn import session_name_for, spawn_session
from tests.fakes import FakeSession


def _wait(pred, timeout: float = 60.0, what: str = "condition") -> None:
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_spawned_session_trains_and_shuts_down_with_a_checkpoint(tmp_path: Path):
    child = spawn_session(None, tmp_path)
    try:
        assert child.name == "default" and server_is_live(child.socket)
        remote = RemoteSession(child.socket)
        assert remote.submit("fit 50").ok
        _wait(lambda: remote.status()["train_iter"] >= 3, what="training in the child")
        remote.close()
        # The console quit: the child stops the fit at the next batch, saves, and exits cleanly.
        assert child.shutdown(timeout=120) == 0
    finally:
        if child.proc.poll() is None:
            child.proc.kill()
    assert not child.socket.exists()
    assert list((tmp_path / "default" / "checkpoints").iterdir())
    log = child.log_tail(50)
    assert "fit stopped: stopped by user" in log and "failed" not in log


def test_detached_child_keeps_training_and_can_be_attached_again(tmp_path: Path):
    child = spawn_session(None, tmp_path, idle_exit=0.5)
    try:
        remote = RemoteSession(child.socket)
        assert remote.submit("fit 50").ok
        _wait(lambda: remote.status()["state"] == "running", what="the fit to start")
        remote.detach()  # "keep running headless"
        time.sleep(1.5)  # longer than idle_exit: a live fit keeps the process although nobody is attached
        assert child.proc.poll() is None
        again = RemoteSession(child.socket)
        it = again.status()["train_iter"]
        _wait(lambda: again.status()["train_iter"] > it, what="training to go on")
        assert again.submit("stop").ok
        again.close()
        # Idle and nobody attached: the process ends by itself after idle_exit.
        assert child.proc.wait(60) == 0
    finally:
        if child.proc.poll() is None:
            child.proc.kill()


def test_idle_child_without_a_console_ends_by_itself(tmp_path: Path):
    said: list[str] = []
    child = spawn_session(None, tmp_path, idle_exit=0.2, on_line=said.append)
    # While it starts, the child says what it is doing (relayed by `labcon open`), in order.
    stages = ["loading torch", "building the session", "session 'default' ready"]
    at = [next(i for i, line in enumerate(said) if stage in line) for stage in stages]
    assert at == sorted(at), said
    assert child.proc.wait(60) == 0
    assert not child.socket.exists()


def test_child_start_up_error_is_shown_not_a_hang(tmp_path: Path):
    cfg = tmp_path / "broken.toml"
    cfg.write_text(
        f'name = "broken"\n[data]\npath = "{tmp_path / "no-such-folder"}"\n'
        'splitter = "grandparent"\nlabeller = "parent"\n'
    )
    with pytest.raises(LabconError) as e:
        spawn_session(str(cfg), tmp_path / "home", timeout=120)
    msg = str(e.value)
    assert "ended (exit code 2) before serving" in msg
    assert "no-such-folder" in msg and "labcon: error:" in msg and "Traceback" not in msg


def test_bad_targets_fail_before_any_process_starts(tmp_path: Path):
    with pytest.raises(LabconError, match="'nope' is not a config file, a preset"):
        session_name_for("nope", tmp_path)
    with pytest.raises(LabconError, match="does not exist"):
        session_name_for(str(tmp_path / "missing.toml"), tmp_path)
    bad = tmp_path / "typo.toml"
    bad.write_text("[trian]\nepochs = 2\n")
    with pytest.raises(LabconError, match="train"):
        session_name_for(str(bad), tmp_path)
    assert session_name_for(None, tmp_path) == "default"
    assert session_name_for("mnist_tiny", tmp_path) == "mnist_tiny"  # a preset, as `labcon run` takes


def test_shutdown_op_is_refused_unless_the_process_offers_it(tmp_path: Path):
    calls: list[str] = []
    with ControlServer(FakeSession(), tmp_path / "a.sock"), ControlClient(tmp_path / "a.sock") as c:
        r = c.request("shutdown")
        assert not r["ok"] and "submit 'stop'" in r["text"]
    server = ControlServer(FakeSession(), tmp_path / "b.sock", on_shutdown=lambda: calls.append("x") or "bye")
    with server, ControlClient(tmp_path / "b.sock") as c:
        r = c.request("shutdown")
        assert r["ok"] and r["text"] == "bye" and calls == ["x"]
