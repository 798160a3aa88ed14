"""Journal writes from training: non-blocking batched writer, concurrent readers, surviving kill -9."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from labcon.errors import LabconError
from labcon.session.journal import Journal, JournalError
from labcon.session.journal_writer import JournalWriter


def test_writer_round_trip(tmp_path):
    path = tmp_path / "journal.db"
    with JournalWriter(path, batch_every=5) as w:
        rid = w.start_run("w", "lr = 0.1\n", 3, tags=["a"], env={}, code_version="t")
        w.put_event(rid, "command", "set lr 0.01", epoch=0, iteration=4)
        w.put_note(rid, "looks good")
        w.put_epoch(rid, 0, {"train_loss": 1.5})
        w.put_batches(rid, [(i, {"loss": 2.0 - i / 10}) for i in range(12)])
        w.put_tags(rid, ["b"])
        w.put_end_run(rid, "done", {"accuracy": 0.5})
    with Journal(path) as j:
        run = j.get_run(rid)
        assert run["status"] == "done" and run["tags"] == ["a", "b"] and run["params"]["lr"] == 0.1
        assert [e["text"] for e in j.events(rid)] == ["set lr 0.01", "looks good"]
        assert j.epochs(rid) == [{"epoch": 0, "train_loss": 1.5}]
        assert [it for it, _ in j.batches(rid)["loss"]] == [0, 5, 10]  # sampled every 5
        assert [r["id"] for r in j.search("looks")] == [rid]


def test_put_never_waits_for_the_database(tmp_path):
    path = tmp_path / "journal.db"
    w = JournalWriter(path, interval=0.05)
    rid = w.start_run("w", "", 1, env={}, code_version="t")
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock

    # The write lock stays held until every put has returned: a put that waited for the database would never
    # return, so the thread would still be alive at the (generous, load-independent) deadline.
    def puts() -> None:
        for i in range(2000):
            w.put_batches(rid, [(i, {"loss": 1.0})])
            w.put_event(rid, "info", f"step {i}")

    t = threading.Thread(target=puts, daemon=True)
    t.start()
    t.join(timeout=60)
    stuck = t.is_alive()
    blocker.execute("ROLLBACK")
    blocker.close()
    t.join()
    w.close()
    assert not stuck, "put waited for the database's write lock"
    with Journal(path) as j:
        assert len(j.events(rid)) == 2000
        assert len(j.batches(rid)["loss"]) == 2000


def test_commits_in_batches_and_on_flush(tmp_path):
    path = tmp_path / "journal.db"
    w = JournalWriter(path, interval=30.0, max_items=50)
    rid = w.start_run("w", "", 1, env={}, code_version="t")
    reader = Journal(path)
    for i in range(49):
        w.put_event(rid, "info", f"e{i}")
    time.sleep(0.2)
    assert reader.events(rid) == []  # neither the interval nor the size limit reached
    w.put_event(rid, "info", "e49")  # 50th item: the batch is written
    deadline = time.monotonic() + 5
    while len(reader.events(rid)) < 50 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(reader.events(rid)) == 50
    w.put_event(rid, "info", "late")
    w.flush()
    assert reader.events(rid)[-1]["text"] == "late"
    w.close()
    reader.close()


def test_interval_commits_without_flush(tmp_path):
    path = tmp_path / "journal.db"
    w = JournalWriter(path, interval=0.1)
    rid = w.start_run("w", "", 1, env={}, code_version="t")
    w.put_note(rid, "hello")
    with Journal(path) as reader:
        deadline = time.monotonic() + 5
        while not reader.events(rid) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert reader.events(rid)[0]["text"] == "hello"
    w.close()


def test_reader_sees_committed_data_while_a_run_writes(tmp_path):
    path = tmp_path / "journal.db"
    w = JournalWriter(path, interval=0.02)
    rid = w.start_run("w", "", 1, env={}, code_version="t")
    stop = threading.Event()

    def train() -> None:
        i = 0
        while not stop.is_set():
            w.put_event(rid, "command" if i % 10 == 0 else "info", f"step {i}", epoch=0, iteration=i)
            w.put_batches(rid, [(i, {"loss": 1.0 / (i + 1)})])
            i += 1
            time.sleep(0.0005)

    t = threading.Thread(target=train)
    t.start()
    seen = []
    with Journal(path) as reader:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (len(seen) < 5 or seen[-1] == seen[0]):
            seen.append(len(reader.events(rid)))
            assert [r["id"] for r in reader.search("step")] in ([], [rid])
            time.sleep(0.05)
        stop.set()
        t.join()
        w.close()
        assert seen[-1] > seen[0]  # the reader saw the log grow while the run was writing
        assert seen == sorted(seen)
        assert reader.check() == []


def test_bad_items_are_dropped_alone_and_reported(tmp_path):
    path = tmp_path / "journal.db"
    w = JournalWriter(path)
    rid = w.start_run("w", "", 1, env={}, code_version="t")
    w.put_event(rid, "info", "before")
    w.put_event(999, "info", "orphan")
    w.put_event(rid, "gossip", "bad kind")
    w.put_event(rid, "info", "after")
    with pytest.raises(JournalError, match="no run 999.*and 1 more"):
        w.flush()
    w.flush()  # errors are reported once
    with pytest.raises(LabconError, match="invalid session name"):
        w.start_run("../x", "", 1)
    w.close()
    with Journal(path) as j:
        assert [e["text"] for e in j.events(rid)] == ["before", "after"]
    with pytest.raises(JournalError, match="closed"):
        w.put_note(rid, "x")


def test_open_failure_is_raised_by_constructor(tmp_path):
    bad = tmp_path / "journal.db"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(JournalError, match="cannot open the journal"):
        JournalWriter(bad)


_CHILD = textwrap.dedent(
    """
    import sys
    from labcon.session.journal_writer import JournalWriter
    w = JournalWriter(sys.argv[1], interval=0.01, max_items=50)
    rid = w.start_run("victim", "lr = 0.1\\n", 1, env={"host": "h"}, code_version="t")
    i = 0
    while True:
        w.put_event(rid, "command" if i % 5 == 0 else "info", f"step {i}", epoch=i // 100, iteration=i)
        w.put_batches(rid, [(i, {"loss": 1.0})])
        i += 1
        if i % 100 == 0:
            w.flush()
            print(rid, i, flush=True)
    """
)


def test_survives_kill_9(tmp_path):
    path = tmp_path / "journal.db"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(path)], stdout=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout is not None
    committed = 0
    rid = 0
    for line in proc.stdout:
        rid, committed = map(int, line.split())
        if committed >= 1000:
            break
    time.sleep(0.05)  # let it get mid-batch
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    with Journal(path) as j:
        assert j.check() == []
        events = j.events(rid)
        assert len(events) >= committed  # nothing flushed before the kill is lost
        assert [e["iteration"] for e in events] == list(range(len(events)))
        assert j.get_run(rid)["status"] == "running"
        assert j.recover_stale() == [rid]
        assert j.get_run(rid)["status"] == "crashed"
        assert [r["id"] for r in j.search("status:crashed step")] == [rid]
