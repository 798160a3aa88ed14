"""The control socket over a real Unix socket: requests, errors, permissions, subscribers, slow clients."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import tempfile
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from labcon.core.telemetry_history import LayerStats
from labcon.errors import LabconError
from labcon.remote.client import ControlClient, RemoteSession
from labcon.remote.connection import MAX_LINE
from labcon.remote.server import ControlServer, control_socket_path
from labcon.session.api import Reply
from labcon.session.messages import EpochEnded, Log, Progress, StateChanged
from tests.fake_data import LAYERS, fake_telemetry, make_history
from tests.fakes import FakeSession


@pytest.fixture
def short_dir():
    d = tempfile.mkdtemp(prefix="lc", dir="/tmp")
    yield Path(d)
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def served(short_dir):
    session = FakeSession(name="s1")
    session.raise_on.add("boom")
    path = control_socket_path(short_dir, "s1")
    server = ControlServer(session, path, follow=False).start()
    yield session, server, path
    server.close()


def raw_conn(path: Path) -> tuple[socket.socket, object]:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(str(path))
    s.settimeout(5)
    return s, s.makefile("rb")


def read_json(f) -> dict:
    return json.loads(f.readline())


def test_requests_round_trip(served) -> None:
    session, _server, path = served
    with ControlClient(path) as c:
        r = c.request("submit", text="set lr=0.01")
        text = "queued: 'set lr=0.01' applies at the next batch"
        assert r == {"id": 1, "type": "reply", "ok": True, "text": text, "data": None}
        bad = c.submit("bad one")
        assert not bad.ok and bad.text.startswith("unknown command 'bad'")
        assert c.request("status")["data"]["state"] == "paused"
        assert c.request("history")["data"][0]["valid_loss"] == make_history(1)[0]["valid_loss"]
        assert len(c.request("batch_history")["data"]["losses"]) == 300
        assert c.request("hooks")["data"][0]["owner"] == "telemetry"
        assert c.request("module_paths")["data"][:3] == ["", "stem", "stem.0"]
        assert c.request("data_summary")["data"].startswith("DataBlock summary")
        t = c.request("telemetry")["data"]
        assert t["layers"] == list(LAYERS) and t["flags"] == {
            "layers.1.conv2": "dead",
            "head.fc": "exploding",
        }
        assert "heatmap" not in t
        r = c.submit("boom")
        assert not r.ok and "internal error in submit: RuntimeError: the session failed on 'boom'" in r.text
        assert c.request("ping")["text"] == "pong"  # still serving after the handler raised
    assert session.received == ["set lr=0.01", "bad one"]  # "boom" raised before the fake saw it


def test_permissions_and_socket_path(served) -> None:
    _, _, path = served
    assert stat.S_ISSOCK(path.stat().st_mode)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert path == path.parent.parent / "s1" / "control.sock"


def test_refuses_second_server_and_cleans_up(served) -> None:
    _, server, path = served
    with pytest.raises(LabconError, match="already serving"):
        ControlServer(FakeSession(), path, follow=False).start()
    server.close()
    assert not path.exists()


def test_stale_socket_is_replaced(short_dir) -> None:
    path = control_socket_path(short_dir, "s2")
    path.parent.mkdir()
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))
    dead.close()  # the file stays; nobody listens: a crashed server
    with ControlServer(FakeSession(), path, follow=False), ControlClient(path) as c:
        assert c.request("ping")["ok"]


def test_not_a_socket_and_too_long_path(short_dir) -> None:
    path = short_dir / "s3" / "control.sock"
    path.parent.mkdir()
    path.write_text("x")
    with pytest.raises(LabconError, match="not a socket"):
        ControlServer(FakeSession(), path, follow=False).start()
    long = short_dir / ("x" * 120) / "control.sock"
    with pytest.raises(LabconError, match="shorter --sessions-dir"):
        ControlServer(FakeSession(), long, follow=False).start()
    with pytest.raises(LabconError, match="shorter"):
        ControlClient(long)


def test_client_without_server_gives_clear_error(short_dir) -> None:
    with pytest.raises(LabconError, match=r"no session 'nobody' in .*start one with `labcon run"):
        ControlClient(short_dir / "nobody" / "control.sock")


def test_malformed_unknown_and_oversized_are_dropped(served) -> None:
    _, _, path = served
    s, f = raw_conn(path)
    s.sendall(b"{not json\n")
    r = read_json(f)
    assert r["type"] == "reply" and r["ok"] is False and "malformed JSON" in r["text"] and r["id"] is None
    s.sendall(b"[1, 2]\n")
    assert "JSON object" in read_json(f)["text"]
    s.sendall(b'{"id": 7, "op": "frobnicate"}\n')
    r = read_json(f)
    assert r["id"] == 7 and "unknown op 'frobnicate'" in r["text"] and "submit" in r["text"]
    s.sendall(b'{"id": 8, "op": "submit"}\n')
    assert 'needs "text"' in read_json(f)["text"]
    # Oversized: sent in pieces, without and then with its newline; the server answers once and resyncs.
    big = json.dumps({"id": 9, "op": "submit", "text": "note " + "a" * (MAX_LINE + 10)}).encode()
    s.sendall(big[: MAX_LINE // 2])
    s.sendall(big[MAX_LINE // 2 :] + b"\n")
    r = read_json(f)
    assert r["ok"] is False and "over 65536 bytes" in r["text"]
    s.sendall(b'{"id": 10, "op": "ping"}\n')
    r = read_json(f)
    assert r["id"] == 10 and r["ok"] is True
    s.sendall(b"\xff\xfe\n")
    assert "malformed JSON" in read_json(f)["text"]
    s.close()


def test_disconnect_mid_message_does_not_disturb_others(served) -> None:
    session, server, path = served
    with ControlClient(path) as watcher:
        for _ in range(5):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(str(path))
            s.sendall(b'{"id": 1, "op": "sub')  # never finished
            s.close()
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(str(path))
        s.sendall(b'{"id": 1, "op": "submit", "text": "set lr=1"}\n')
        s.close()  # gone before reading its reply
        assert watcher.submit("status").ok
        deadline = time.monotonic() + 5
        while server.n_clients > 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert server.n_clients == 1
    assert "status" in session.received


def test_subscribers_receive_published_messages(served) -> None:
    _, server, path = served
    a, b = ControlClient(path), ControlClient(path)
    a.subscribe()
    b.subscribe()
    sent = [StateChanged("running"), EpochEnded(0, {"train_loss": 1.0, "valid_loss": 0.9}), Log("info", "hi")]
    for m in sent:
        server.publish(m)
    for c in (a, b):
        got = [c.get_message(timeout=5) for _ in sent]
        assert got == sent
    a.close()
    server.publish(Log("info", "after a left"))  # a closed subscriber is skipped, not an error
    assert b.get_message(timeout=5) == Log("info", "after a left")
    b.close()


def test_follow_mode_forwards_the_session_stream(short_dir) -> None:
    session = FakeSession()
    path = control_socket_path(short_dir, "f")
    with ControlServer(session, path) as server, ControlClient(path) as c:
        c.subscribe()
        session.emit(Log("warning", "from the session"))
        assert c.get_message(timeout=5) == Log("warning", "from the session")
        assert server.n_clients == 1
    assert not session.bus._subs  # the server's own subscription closed with it


def _progress(i: int) -> Progress:
    return Progress(0, "train", i, 10_000, i, 1.0, 1.0, (1e-3,), (0.9,), 0.1, 1.0, 2.0)


def test_slow_subscriber_never_blocks_publisher(short_dir) -> None:
    path = control_socket_path(short_dir, "slow")
    with ControlServer(FakeSession(), path, follow=False, queue_size=64) as server:
        s, f = raw_conn(path)
        s.sendall(b'{"id": 1, "op": "subscribe"}\n')
        assert read_json(f)["ok"]
        t0 = time.perf_counter()
        n = 20_000
        for i in range(n):
            server.publish(_progress(i))
            if i % 2000 == 0:
                server.publish(EpochEnded(i // 2000, {"valid_loss": 1.0}))
        elapsed = time.perf_counter() - t0
        assert elapsed < 5.0  # nothing waited on the client that is not reading
        client = server._clients[0]
        assert client.dropped > 0
        server.publish(Log("info", "end"))
        got = []
        while True:
            d = read_json(f)
            got.append(d)
            if d["type"] == "Log":
                break
        kinds = [d["type"] for d in got]
        assert kinds.count("EpochEnded") == 10  # only Progress was dropped
        assert kinds.count("Progress") < n
        s.close()


def test_remote_session_protocol(served) -> None:
    session, server, path = served
    rs = RemoteSession(path)
    assert rs.name == "s1"
    assert rs.submit("pause") == Reply(False, "nothing to pause: the session is paused")
    assert rs.status()["name"] == "s1"
    assert rs.history()[0]["epoch"] == 0
    assert rs.batch_history()["moms"] == session.batch_history()["moms"]
    assert rs.hooks_table()[0]["id"] == 1
    assert rs.module_paths() == session.module_paths()
    assert rs.data_summary().startswith("DataBlock")
    img = rs.sample_batch_image(augment=False)  # PNG over the socket, so attached consoles show samples too
    assert img.size == (256, 128) and img.convert("RGB").getpixel((0, 0)) == (20, 20, 30)
    snap, want = rs.telemetry_snapshot(), fake_telemetry(300)
    assert snap.train_iter == 300 and snap.layers == LAYERS and snap.flags == want.flags
    assert snap.latest == want.latest and isinstance(snap.latest["head.fc"], LayerStats)
    assert snap.history_tail("stem.0", 1) == want.history_tail("stem.0", 1)  # from the first reply's tail
    with ControlClient(path) as c:
        assert "positive number of reports" in c.request("telemetry", tail=0)["text"]
    assert snap.history("stem.0") == want.history("stem.0")  # the full history, fetched for that layer
    assert snap.heatmap("head.fc") == want.heatmap("head.fc")
    with pytest.raises(LabconError, match="no layer"):
        snap.history("nope")
    sub = rs.subscribe()
    deadline = time.monotonic() + 5
    while not any(c.subscribed for c in server._clients) and time.monotonic() < deadline:
        time.sleep(0.01)
    server.publish(StateChanged("paused", "user"))
    assert sub.get(timeout=5) == StateChanged("paused", "user")
    assert sub.get(timeout=0.05) is None
    rs.detach()
    assert server.n_clients == 0 or _wait_clients(server, 0)


def test_remote_session_reads_the_local_journal(served, short_dir) -> None:
    """Attached consoles read journal.db beside the session folder (as `labcon journal` does)."""
    from labcon.session.journal import Journal

    _session, _server, path = served
    assert RemoteSession(path).journal is None  # no journal there yet: the pane says so
    with Journal(short_dir) as j:
        run = j.start_run("s1", "[train]\nlr = 0.01\n", seed=0)
    rs = RemoteSession(path)
    try:
        assert [r["id"] for r in rs.journal.search("")] == [run]
    finally:
        rs.close()
    assert rs.journal is None


def test_sample_image_payload_errors_are_clear() -> None:
    from labcon.remote.wire import image_from_b64, image_to_b64

    img = Image.new("RGB", (3, 2), (1, 2, 3))
    assert image_from_b64(image_to_b64(img)).getpixel((2, 1)) == (1, 2, 3)
    for bad in ("not base64 !!", "aGVsbG8="):  # not base64; base64 of something that is no image
        with pytest.raises(LabconError, match="unreadable sample image"):
            image_from_b64(bad)


def _wait_clients(server: ControlServer, n: int) -> bool:
    deadline = time.monotonic() + 5
    while server.n_clients != n and time.monotonic() < deadline:
        time.sleep(0.02)
    return server.n_clients == n


def test_messages_iterator_ends_when_server_closes(short_dir) -> None:
    path = control_socket_path(short_dir, "it")
    server = ControlServer(FakeSession(), path, follow=False).start()
    c = ControlClient(path)
    it = c.messages()
    out: list = []
    t = threading.Thread(target=lambda: out.extend(it))
    t.start()
    assert _wait(lambda: any(x.subscribed for x in server._clients))
    server.publish(Log("info", "one"))
    time.sleep(0.2)
    server.close()
    t.join(timeout=5)
    assert not t.is_alive() and out == [Log("info", "one")]
    with pytest.raises(LabconError, match="closed"):
        c.request("ping")
    assert not os.path.exists(path)


def _wait(pred, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not pred() and time.monotonic() < deadline:
        time.sleep(0.01)
    return pred()


def test_cli_send(short_dir, capsys) -> None:
    from labcon.cli import main

    session = FakeSession(name="cli")
    path = control_socket_path(short_dir, "cli")
    with ControlServer(session, path, follow=False):
        assert main(["--sessions-dir", str(short_dir), "send", "cli", "set", "lr=0.01"]) == 0
        assert capsys.readouterr().out.strip() == "queued: 'set lr=0.01' applies at the next batch"
        assert main(["--sessions-dir", str(short_dir), "send", "cli", "bad thing"]) == 1
        assert "unknown command 'bad'" in capsys.readouterr().err
        assert main(["--sessions-dir", str(short_dir), "send", "--json", "cli", "resume"]) == 0
        text = "queued: 'resume' applies at the next batch"
        assert json.loads(capsys.readouterr().out) == {"ok": True, "text": text, "data": None}
    assert session.received == ["set lr=0.01", "bad thing", "resume"]
    assert main(["--sessions-dir", str(short_dir), "send", "cli", "status"]) == 2
    assert "no session 'cli' in" in capsys.readouterr().err
    assert main(["--sessions-dir", str(short_dir), "send", "../etc", "status"]) == 2
    assert "invalid session name" in capsys.readouterr().err


def test_send_and_attach_say_why_a_session_cannot_be_reached(short_dir, capsys) -> None:
    """Training with --no-socket: say so (advising `labcon run` led to 'in use by process N'); a saved
    session that is not running: open or serve it."""
    from labcon.cli import main
    from labcon.session.safety import SessionLock

    folder = short_dir / "ns"
    folder.mkdir()
    lock = SessionLock(folder, "ns")  # what a `labcon run --no-socket` process holds while it trains
    try:
        for argv in (["send", "ns", "status"], ["attach", "ns"]):
            assert main(["--sessions-dir", str(short_dir), *argv]) == 2
            err = capsys.readouterr().err
            assert f"session 'ns' is held by process {os.getpid()}, which serves no control socket" in err
            assert "starting (try again in a moment) or was started with --no-socket" in err
            assert "labcon run" not in err
    finally:
        lock.release()
    (folder / "session.toml").write_text('name = "ns"\n')
    assert main(["--sessions-dir", str(short_dir), "send", "ns", "status"]) == 2
    err = capsys.readouterr().err
    assert "session 'ns' is saved but not running" in err
    assert "`labcon open ns`" in err and "`labcon serve ns`" in err and "Traceback" not in err
    # A process killed while it held the lock leaves its record behind: a dead process holds nothing.
    import subprocess
    import sys

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (folder / "lock").write_text(f"process {dead.pid}")
    assert main(["--sessions-dir", str(short_dir), "send", "ns", "status"]) == 2
    assert "session 'ns' is saved but not running" in capsys.readouterr().err
