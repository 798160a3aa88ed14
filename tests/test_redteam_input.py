"""Red-team suite, part two: attacks on the control socket, and bad input refused up front with the right words.

Each test is an attack that worked on an earlier labcon; what held then is pinned here too."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from labcon.errors import LabconError
from labcon.session.config import parse_config
from labcon.session.journal import Journal
from labcon.session.session import Session
from tests.helpers import checkpointed, make_image_folder, tiny_config, tiny_session

REPO = Path(__file__).resolve().parents[1]


# ----- the control socket ---------------------------------------------------------------------------------


@pytest.fixture
def served(data, tmp_path):
    """A real session (no journal) served on a short socket path."""
    import tempfile

    from labcon.remote.server import ControlServer

    s = tiny_session(data, tmp_path / "s", journal=False)
    sockdir = Path(tempfile.mkdtemp(prefix="lc", dir="/tmp"))
    server = ControlServer(s, sockdir / "c.sock", idle_timeout=0.5, max_clients=2).start()
    yield s, server
    server.close()
    s.close()
    for p in sockdir.iterdir():
        p.unlink()
    sockdir.rmdir()


def _raw(server) -> socket.socket:
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.connect(str(server.path))
    c.settimeout(10)
    return c


def _read_reply(c) -> dict:
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = c.recv(65536)
        assert chunk, "connection closed without a reply"
        buf += chunk
    return json.loads(buf.splitlines()[0])


def test_deeply_nested_json_gets_an_error_reply(served):
    _, server = served
    c = _raw(server)
    c.sendall(b"[" * 50_000 + b"\n")
    reply = _read_reply(c)
    assert reply["ok"] is False and "nested" in reply["text"]
    c.sendall(b'{"id": 2, "op": "ping"}\n')
    assert _read_reply(c)["text"] == "pong"  # the connection (and the server) carry on
    c.close()


def test_over_long_command_gets_a_reply_with_its_id(served):
    import json

    from labcon.remote.client import ControlClient

    _, server = served
    c = _raw(server)
    c.sendall(json.dumps({"id": 7, "op": "submit", "text": "x" * 70_000}).encode() + b"\n")
    reply = _read_reply(c)
    assert reply["id"] == 7 and not reply["ok"] and "over" in reply["text"]
    c.close()
    with ControlClient(server.path, timeout=5) as client, pytest.raises(LabconError, match="over the"):
        client.submit("note " + "y" * 70_000)


def test_idle_connections_time_out_so_attach_gets_in(served):
    import time

    from labcon.remote.client import ControlClient

    _, server = served
    idle = [_raw(server), _raw(server)]  # every slot taken by connections that say nothing
    time.sleep(1.5)
    with ControlClient(server.path, timeout=5) as client:
        assert client.request("ping")["text"] == "pong"
        time.sleep(1.5)  # a client that made a request may then wait for its user as long as it likes
        assert client.request("ping")["text"] == "pong"
    for c in idle:
        c.close()


def _assert_closed_by_server(c: socket.socket) -> None:
    """The server closed this connection: end of stream, or a reset when a request of ours went unread."""
    try:
        assert c.recv(100) == b""
    except ConnectionResetError:
        pass


def test_a_refused_client_is_told_why_and_never_served(served):
    """Over max_clients: the client reads the reason in its error, and its request is not carried out."""
    from labcon.remote.client import ControlClient

    s, server = served
    with ControlClient(server.path, timeout=5) as a, ControlClient(server.path, timeout=5) as b:
        assert a.request("ping")["ok"] and b.request("ping")["ok"]  # both slots taken, and active
        c = _raw(server)
        c.sendall(b'{"id": 1, "op": "submit", "text": "set wd=0.123"}\n')
        reply = _read_reply(c)
        assert reply["id"] is None and "too many clients (max 2)" in reply["text"]
        _assert_closed_by_server(c)
        c.close()
        third = ControlClient(server.path, timeout=5)
        # Said whether the refusal arrives before the request is sent or while it waits for its answer.
        with pytest.raises(
            LabconError, match=r"closed (the connection before answering 'status'|it): too many"
        ):
            third.request("status")
        third.close()
    assert s.status()["hypers"].get("wd") != [0.123]  # the refused client's `set` was never carried out


def test_an_idle_connection_is_told_before_it_is_closed(served):
    _, server = served
    c = _raw(server)
    reply = _read_reply(c)  # after idle_timeout (0.5 s) without a request
    assert reply["ok"] is False and "idle connection" in reply["text"]
    _assert_closed_by_server(c)
    c.close()


def test_a_client_that_never_reads_is_disconnected(served, monkeypatch):
    import time

    from labcon.remote import connection

    monkeypatch.setattr(connection, "MAX_QUEUED_BYTES", 256 * 1024)
    _, server = served
    c = _raw(server)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        for _ in range(4000):  # status replies pile up: ~1 KB each, never read
            c.sendall(b'{"id": 1, "op": "status"}\n')
    except OSError:
        pass  # closed under us: what we want
    deadline = time.monotonic() + 10
    while server.n_clients and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.n_clients == 0
    c.close()


# ----- bad input refused up front, with the right words --------------------------------------------------


def _config_file(tmp_path: Path, data: Path, **replace: str) -> Path:
    text = tiny_config(data, "bad", 1, telemetry=False)
    for old, new in replace.items():
        assert old in text
        text = text.replace(old, new)
    path = tmp_path / "bad.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ("lr = 1e-2\n", 'lr = 1e-2\nmetrics = ["acuracy"]\n', "train.metrics[0]"),
        ('item_tfms = ["flip"]', 'item_tfms = [{kind = "flip", p = "often"}]', "data.item_tfms[0].p"),
        (
            'item_tfms = ["flip"]',
            'item_tfms = [{kind = "random_resized_crop", ratio = [0, 1]}]',
            "data.item_tfms[0].ratio",
        ),
        (
            'item_tfms = ["flip"]',
            'batch_tfms = [{kind = "affine", max_rotate = "ten"}]',
            "data.batch_tfms[0].max_rotate",
        ),
        ("channels = [8, 16]", "channels = [100000, 100000]", "model.channels"),
        ("size = 16", "size = 200000", "data.size"),
    ],
)
def test_config_values_that_would_fail_later_are_refused_when_read(data, tmp_path, old, new, key):
    from labcon.errors import ConfigError
    from labcon.session.config import load_config

    path = _config_file(tmp_path, data, **{old: new})
    with pytest.raises(ConfigError) as e:
        load_config(path)
    text = str(e.value)
    assert text.startswith(f"{key} at {path}:"), text
    if "channels" in key or "size" in key:
        assert "GiB" in text and "this machine has" in text


def test_a_bad_transform_setting_does_not_blame_the_image(data):
    from labcon.data.transforms import Flip, ItemPipeline, RandomResizedCrop, TransformError

    good = next((data / "train" / "red").iterdir())
    import random

    for tfms in ([RandomResizedCrop(16, ratio=(0, 1))], [Flip(p="often")]):
        with pytest.raises(TransformError) as e:
            ItemPipeline(tfms)(good, random.Random(0), train=True)
        text = str(e.value)
        assert "decoded fine" in text and "corrupt" not in text and "delete" not in text


def test_bad_images_are_all_listed_before_training_and_skip_bad_skips_them(tmp_path):
    from labcon.errors import DataError

    img = make_image_folder(tmp_path / "img", n_train=8, n_valid=4)
    broken = [img / "train" / "red" / "red_001.png", img / "valid" / "blue" / "blue_002.png"]
    for p in broken:
        p.write_bytes(p.read_bytes()[:60])
    cfg = parse_config(tiny_config(img, "bad", 1, telemetry=False))
    with pytest.raises(DataError) as e:
        Session(cfg, tmp_path / "s", journal=False)
    assert all(str(p) in str(e.value) for p in broken) and "skip_bad = true" in str(e.value)
    cfg = parse_config(
        tiny_config(img, "bad", 1, telemetry=False).replace("[model]", "skip_bad = true\n[model]")
    )
    with pytest.warns(UserWarning, match="leaving out 2 unreadable"):
        s = Session(cfg, tmp_path / "s", journal=False)
    s.start_fit()
    assert s.wait(120) and s.last_error is None
    s.close()


def test_tracebacks_become_messages(data, tmp_path, capsys):
    from labcon.cli import main

    cfg = tmp_path / "c.toml"
    cfg.write_text(tiny_config(data, "p", 1, telemetry=False))
    assert main(["data", "preview", str(cfg), "--out", str(tmp_path / "no" / "x.png")]) == 2
    assert main(["data", "preview", str(cfg), "--out", str(tmp_path / "x.png"), "-n", "-5"]) == 2
    (tmp_path / "file").write_text("not a folder")
    assert main(["--sessions-dir", str(tmp_path / "file"), "run", str(cfg), "--no-socket"]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "-n must be" in err and "not a folder" in err
    assert "Traceback" not in err


def test_output_piped_into_head_is_not_a_traceback(data, tmp_path):
    home = tmp_path / "s"
    checkpointed(data, home)
    with Journal(home / "journal.db") as j:
        rid = j.resolve_run("t")
        for i in range(300):
            j.add_note(rid, f"note {i}")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        f"{sys.executable} -m labcon --sessions-dir {home} journal show {rid} | head -1",
        shell=True,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert (
        out.stdout.startswith(f"run {rid}")
        and "Traceback" not in out.stderr
        and "BrokenPipe" not in out.stderr
    )


def test_first_progress_lines_never_say_loss_nan(data, tmp_path):
    import io

    from labcon.cli.printer import HeadlessPrinter

    s = tiny_session(data, tmp_path / "s", epochs=2)
    out = io.StringIO()
    printer = HeadlessPrinter(s, out=out, every=0)
    s.start_fit()
    assert s.wait(120)
    printer.close()
    s.close()
    lines = [x for x in out.getvalue().splitlines() if x.startswith("epoch ") and " train " in x]
    assert lines and not any("nan" in x for x in lines)


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pty")
def test_a_zero_column_terminal_gets_a_message(tmp_path):
    import fcntl
    import struct
    import termios

    leader, follower = os.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 0, 0, 0, 0))
    proc = subprocess.run(
        [sys.executable, "-m", "labcon", "--sessions-dir", str(tmp_path), "open", "--in-process"],
        stdout=follower,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        cwd=REPO,
        text=True,
        timeout=60,
    )
    os.close(follower)
    os.close(leader)
    assert proc.returncode == 2 and "0 columns" in proc.stderr and "Traceback" not in proc.stderr


def test_journal_cli_marks_runs_whose_process_died(data, tmp_path, capsys):
    from labcon.cli import main

    home = tmp_path / "s"
    checkpointed(data, home)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with Journal(home / "journal.db") as j:
        rid = j.start_run("t", "", 0, pid=dead.pid)
    assert main(["--sessions-dir", str(home), "journal", "show", str(rid)]) == 0
    assert f"run {rid}  session t  crashed" in capsys.readouterr().out


def test_warnings_are_one_line_messages(tmp_path):
    img = make_image_folder(tmp_path / "img", n_train=8, n_valid=4)
    bad = img / "train" / "red" / "red_001.png"
    bad.write_bytes(bad.read_bytes()[:60])
    cfg = tmp_path / "w.toml"
    cfg.write_text(tiny_config(img, "w", 1, telemetry=False).replace("[model]", "skip_bad = true\n[model]"))
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "labcon",
            "--sessions-dir",
            str(tmp_path / "s"),
            "run",
            str(cfg),
            "--no-socket",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        cwd=REPO,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    warned = [x for x in out.stderr.splitlines() if "leaving out 1 unreadable" in x]
    assert warned and warned[0].startswith("labcon: warning: ")
    assert "warnings.warn" not in out.stderr and ".py:" not in out.stderr


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (
            ["data", "summary", "shapes", "--size", "0"],
            "argument --size: must be a size in pixels of 1 or more, got 0",
        ),
        (
            ["data", "preview", "shapes", "--size", "-5"],
            "argument --size: must be a size in pixels of 1 or more",
        ),
        (["run", "--nproc", "0"], "argument --nproc: must be a whole number of 1 or more, got 0"),
        (["run", "--nproc", "-1"], "argument --nproc: must be a whole number of 1 or more, got -1"),
        (["run", "--nnodes", "0"], "argument --nnodes: must be a whole number of 1 or more"),
        (["run", "--node-rank", "-1"], "argument --node-rank: must be a whole number of 0 or more"),
        (
            ["run", "--peer-timeout", "-1"],
            "argument --peer-timeout: must be a number of seconds, more than 0",
        ),
        (["run", "--peer-timeout", "inf"], "argument --peer-timeout: must be a number of seconds"),
        (["run", "--every", "-5"], "argument --every: must be a number of seconds, 0 or more (0: a line for"),
        (["resume", "x", "--every", "nan"], "argument --every: must be a number of seconds"),
        (["run", "--session", ""], "argument --session: invalid session name ''"),
        (["run", "--session", "a/b"], "invalid session name 'a/b': use 1-64 characters"),
        (["serve", "x", "--idle-exit", "-1"], "argument --idle-exit: must be a number of seconds, 0 or more"),
        (["profile", "--session", ".."], "argument --session: invalid session name"),
    ],
)
def test_option_values_out_of_range_are_refused_while_parsing(argv, fragment, capsys, tmp_path):
    from labcon.cli import main

    with pytest.raises(SystemExit) as e:
        main(["--sessions-dir", str(tmp_path / "s"), *argv])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert fragment in err and "Traceback" not in err
    assert not (tmp_path / "s").exists()  # refused before anything was created


def test_documented_zero_values_are_accepted():
    from labcon.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["run", "--every", "0"]).every == 0  # a line for every progress update
    assert parser.parse_args(["serve", "x", "--idle-exit", "0"]).idle_exit == 0
    assert parser.parse_args(["run", "--nnodes", "2", "--node-rank", "1"]).node_rank == 1


def test_a_node_rank_without_enough_nodes_is_refused(tmp_path, capsys):
    from labcon.cli import main

    assert main(["--sessions-dir", str(tmp_path / "s"), "run", "--node-rank", "3"]) == 2
    err = capsys.readouterr().err
    assert "--node-rank 3 needs --nnodes 4 or more" in err and "give --nnodes" in err
    assert main(["--sessions-dir", str(tmp_path / "s"), "run", "--rdzv", "h:1"]) == 2
    assert "give --nnodes N too, or drop --rdzv" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()
