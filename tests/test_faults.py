"""kill -9 a headless run mid-epoch: the journal stays intact and `labcon resume` continues."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from labcon.session.checkpoint import list_checkpoints, load_latest
from tests.helpers import make_image_folder, start_labcon, tiny_config

REPO = Path(__file__).resolve().parents[1]


def _labcon(*args: str, home: Path, **kw) -> subprocess.Popen:
    return start_labcon(home, *args, **kw)


def test_kill_9_mid_epoch_then_resume(tmp_path):
    data = make_image_folder(tmp_path / "img", n_train=64)
    cfg = tmp_path / "kill.toml"
    cfg.write_text(tiny_config(data, name="kill", epochs=4, telemetry=False))
    home = tmp_path / "sessions"
    proc = _labcon("run", str(cfg), "--every", "0", home=home)
    ckpts = home / "kill" / "checkpoints"
    deadline = time.time() + 120
    # Wait for the first epoch's checkpoint, then for the second epoch to be under way.
    while not list_checkpoints(ckpts) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert list_checkpoints(ckpts), proc.communicate()[0]
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("epoch 1 train "):
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)

    db = home / "journal.db"
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert con.execute("SELECT COUNT(*) FROM epoch_metrics").fetchone()[0] >= 1  # epoch 0 committed
    assert con.execute("SELECT status FROM runs").fetchone()[0] == "running"
    con.close()
    state, path, warnings = load_latest(ckpts)
    assert state["epoch"] >= 1 and not warnings

    out = subprocess.run(
        [sys.executable, "-m", "labcon", "--sessions-dir", str(home), "resume", "kill", "--every", "0"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "epoch 3  train_loss" in out.stdout
    assert "fit done" in out.stdout
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    epochs = [r[0] for r in con.execute("SELECT DISTINCT epoch FROM epoch_metrics ORDER BY epoch")]
    assert epochs == [0, 1, 2, 3]
    con.close()


def test_send_commands_to_a_headless_run(tmp_path):
    """A real socket on a real run: set lr, status, a typo, a malformed line, then stop."""
    import json
    import socket

    data = make_image_folder(tmp_path / "img", n_train=64)
    cfg = tmp_path / "h.toml"
    cfg.write_text(tiny_config(data, name="h", epochs=200, telemetry=False, extra='schedule = "constant"\n'))
    home = tmp_path / "s"
    proc = _labcon("run", str(cfg), "--every", "0", home=home)
    sock = home / "h" / "control.sock"
    deadline = time.time() + 60
    while not sock.exists() and time.time() < deadline:
        time.sleep(0.05)
    assert sock.exists()
    assert oct(sock.stat().st_mode & 0o777) == "0o600" and oct(sock.parent.stat().st_mode & 0o777) == "0o700"

    def send(text: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "labcon", "--sessions-dir", str(home), "send", "h", text],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )

    r = send("set lr=0.003")
    assert r.returncode == 0 and "queued" in r.stdout
    r = send("cb add mixpu")
    assert r.returncode == 1 and "did you mean 'mixup'" in r.stderr
    with socket.socket(socket.AF_UNIX) as c:  # garbage and a client that leaves mid-message
        c.connect(str(sock))
        c.sendall(b"{not json\n")
        assert json.loads(c.makefile().readline())["ok"] is False
        c.sendall(b'{"id": 1, "op": "sub')
    from labcon.remote.client import ControlClient

    with ControlClient(sock) as c:  # the same protocol in-process
        st = c.submit("status")
        while "lr=0.003" not in st.text and time.time() < deadline + 60:
            time.sleep(0.1)  # the set is queued until the fit's first batch boundary
            st = c.submit("status")
        assert st.ok and "session h: running" in st.text and "lr=0.003" in st.text
        assert c.submit("stop").ok
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    assert "applied 'set lr=0.003'" in out and "fit stopped: stopped by user" in out


def test_distributed_run_pause_resume_stop(tmp_path):
    """`labcon run --nproc 2` (torchrun, gloo): rank 0's socket steers both ranks through pause, resume, stop."""
    from labcon.remote.client import ControlClient

    data = make_image_folder(tmp_path / "img", n_train=64)
    cfg = tmp_path / "d.toml"
    cfg.write_text(tiny_config(data, name="d", epochs=500, telemetry=False, extra='schedule = "constant"\n'))
    home = tmp_path / "s"
    proc = _labcon("run", str(cfg), "--nproc", "2", "--every", "0", home=home)
    sock = home / "d" / "control.sock"
    deadline = time.time() + 120
    while not sock.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    assert sock.exists(), proc.communicate()[0][-3000:]
    with ControlClient(sock) as c:
        while "iteration 0 " in c.submit("status").text and time.time() < deadline:
            time.sleep(0.1)
        assert c.submit("pause").ok
        while "paused" not in c.submit("status").text and time.time() < deadline:
            time.sleep(0.1)
        it = c.request("status")["data"]["train_iter"]
        time.sleep(1.0)
        assert (
            c.request("status")["data"]["train_iter"] == it
        )  # both ranks hold (rank 0 would block otherwise)
        assert c.submit("set lr=0.002").ok
        assert c.submit("resume").ok
        while c.request("status")["data"]["train_iter"] <= it + 2 and time.time() < deadline:
            time.sleep(0.1)
        assert c.request("status")["data"]["train_iter"] > it + 2  # collectives line up again after the pause
        assert c.submit("stop").ok
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out[-3000:]
    assert "fit stopped: stopped by user" in out
