"""The journal store: schema and migrations, writes and reads, search semantics, diff, export, recovery."""

from __future__ import annotations

import csv
import io
import json
import sqlite3

import pytest

from labcon.errors import LabconError
from labcon.session import journal_schema
from labcon.session.journal import Journal, JournalError, config_params
from labcon.session.paths import journal_path, sessions_home, validate_session_name

CFG = """name = "base"
seed = 1

[data]
bs = 64

[train]
epochs = 3
lr = 0.003
wd = 0.01
opt = "adam"
"""


@pytest.fixture
def journal(tmp_path):
    j = Journal(tmp_path / "journal.db")
    yield j
    j.close()


def _run(j: Journal, session: str = "base", cfg: str = CFG, seed: int = 1, **kw) -> int:
    return j.start_run(session, cfg, seed, code_version="test", env={"python": "3.11", "host": "h"}, **kw)


@pytest.fixture
def lab(journal):
    """Three runs: a finished baseline, a finished mixup branch of it, a crashed run with low lr."""
    a = _run(journal, "base", tags=["baseline"])
    journal.log_event(a, "command", "set lr 1e-3", epoch=1, iteration=10)
    journal.add_note(a, "baseline looks fine, loss plateaus")
    for ep, (loss, acc) in enumerate([(1.2, 0.6), (0.8, 0.75), (0.6, 0.82)]):
        journal.log_epoch(a, ep, {"train_loss": loss, "valid_loss": loss + 0.1, "accuracy": acc})
    journal.end_run(a, "done", {"valid_loss": 0.7, "accuracy": 0.82})
    b = _run(journal, "mix", CFG.replace("lr = 0.003", "lr = 0.01"), seed=2, parent_id=a, tags=["mixup"])
    journal.log_event(b, "command", "add_cb mixup alpha=0.4", epoch=0, iteration=0)
    journal.log_event(b, "command", "set lr 1e-3", epoch=1, iteration=10)
    journal.add_note(b, "mixup helps with label smoothing")
    journal.log_epoch(b, 0, {"train_loss": 1.0, "accuracy": 0.7})
    journal.end_run(b, "done", {"valid_loss": 0.5, "accuracy": 0.91})
    c = _run(journal, "slow", CFG.replace("lr = 0.003", "lr = 0.0001"), seed=3)
    journal.log_event(c, "error", "CUDA out of memory", epoch=0, iteration=3)
    journal.end_run(c, "crashed")
    return a, b, c


def test_schema_is_wal_and_versioned(journal):
    conn = sqlite3.connect(journal.path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == journal_schema.SCHEMA_VERSION
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"runs", "events", "epoch_metrics", "batch_metrics", "tags", "params", "search_fts"} <= tables
    conn.close()


def test_migrations_apply_once_and_in_order(tmp_path):
    path = tmp_path / "j.db"
    steps = [("CREATE TABLE a (x)",), ("ALTER TABLE a ADD COLUMN y", "CREATE TABLE b (z)")]
    conn = sqlite3.connect(path, isolation_level=None)
    assert journal_schema.migrate(conn, steps[:1]) == 1
    assert journal_schema.migrate(conn, steps) == 2
    assert journal_schema.migrate(conn, steps) == 2  # nothing re-run (would fail: table exists)
    cols = [r[1] for r in conn.execute("PRAGMA table_info(a)")]
    assert cols == ["x", "y"]
    with pytest.raises(LabconError, match="newer than this labcon"):
        journal_schema.migrate(conn, steps[:1])
    conn.close()


def test_v1_journal_upgrades_in_place(tmp_path):
    path = tmp_path / "journal.db"
    conn = sqlite3.connect(path, isolation_level=None)
    journal_schema.migrate(conn, journal_schema.MIGRATIONS[:1])
    conn.execute(
        "INSERT INTO runs (session, config_text, started, ended, status) VALUES ('old', '', 100.0, 160.0, 'done')"
    )
    conn.close()
    with Journal(path) as j:
        old = j.get_run(1)
        assert old["duration"] == 60.0 and old["previous_id"] is None  # wall time: no training time recorded
        new = j.start_run("old", "", 1, previous_id=1, env={}, code_version="t")
        j.end_run(new, "stopped", train_seconds=2.5)
        j.reopen_run(new)
        assert j.get_run(new)["status"] == "running" and j.get_run(new)["duration"] is None
        j.end_run(new, "done", train_seconds=1.5)
        assert j.get_run(new)["duration"] == 4.0 and j.lineage(new) == [1, new]
        with pytest.raises(JournalError, match="finished"):
            j.reopen_run(new)


def test_failed_migration_rolls_back(tmp_path):
    conn = sqlite3.connect(tmp_path / "j.db", isolation_level=None)
    with pytest.raises(sqlite3.OperationalError):
        journal_schema.migrate(conn, [("CREATE TABLE a (x)", "CREATE TABLE a (x)")])
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0
    conn.close()


def test_reopen_keeps_data(tmp_path):
    j = Journal(tmp_path)  # a directory means <dir>/journal.db
    rid = _run(j)
    j.close()
    j2 = Journal(tmp_path / "journal.db")
    assert j2.get_run(rid)["session"] == "base"
    j2.close()


def test_get_run_has_everything(journal, lab):
    a, b, _ = lab
    run = journal.get_run(b)
    assert run["session"] == "mix" and run["parent_id"] == a and run["seed"] == 2
    assert run["status"] == "done" and run["ended"] >= run["started"]
    assert run["final_metrics"] == {"valid_loss": 0.5, "accuracy": 0.91}
    assert run["tags"] == ["mixup"]
    assert run["code_version"] == "test" and run["env"]["python"] == "3.11"
    assert run["params"]["lr"] == 0.01 and run["params"]["bs"] == 64 and run["params"]["seed"] == 2
    assert "lr = 0.01" in run["config"]


def test_default_env_and_code_version(journal):
    rid = journal.start_run("x", "", None)
    run = journal.get_run(rid)
    assert run["env"]["python"].count(".") == 2 and run["env"]["host"]
    assert run["code_version"]
    assert run["pid"] > 0


def test_events_epochs_batches(journal, lab):
    a, b, _ = lab
    ev = journal.events(b)
    assert [e["kind"] for e in ev] == ["command", "command", "note"]
    assert ev[0] == {**ev[0], "text": "add_cb mixup alpha=0.4", "epoch": 0, "iteration": 0, "data": None}
    assert journal.epochs(a) == [
        {"epoch": 0, "accuracy": 0.6, "train_loss": 1.2, "valid_loss": 1.3},
        {"epoch": 1, "accuracy": 0.75, "train_loss": 0.8, "valid_loss": pytest.approx(0.9)},
        {"epoch": 2, "accuracy": 0.82, "train_loss": 0.6, "valid_loss": 0.7},
    ]
    journal.log_epoch(a, 2, {"accuracy": 0.85})  # a resumed epoch replaces the old value
    assert journal.epochs(a)[2]["accuracy"] == 0.85
    journal.log_batches(a, [(0, {"loss": 2.0, "lr": 1e-4}), (10, {"loss": float("nan"), "lr": 2e-4})])
    assert journal.batches(a) == {"loss": [(0, 2.0), (10, None)], "lr": [(0, 1e-4), (10, 2e-4)]}
    eid = journal.log_event(a, "info", "checkpoint saved", data={"path": "x.pt", "loss": float("inf")})
    assert journal.events(a)[-1]["id"] == eid
    assert journal.events(a)[-1]["data"] == {"path": "x.pt", "loss": "inf"}


def test_bad_writes_are_clear_errors(journal, lab):
    a, _, _ = lab
    with pytest.raises(JournalError, match="no run 999"):
        journal.log_event(999, "note", "x")
    with pytest.raises(JournalError, match="unknown event kind"):
        journal.log_event(a, "gossip", "x")
    with pytest.raises(JournalError, match="unknown final status"):
        journal.end_run(a, "running")
    with pytest.raises(JournalError, match="empty note"):
        journal.add_note(a, "  ")
    with pytest.raises(JournalError, match="invalid tag"):
        journal.add_tags(a, ["two words"])
    with pytest.raises(LabconError, match="invalid session name"):
        journal.start_run("../etc", "", 1)
    with pytest.raises(JournalError, match="no run 999"):
        journal.start_run("x", "", 1, parent_id=999)
    assert journal.check() == []


def test_resolve_run(journal, lab):
    a, b, c = lab
    assert journal.resolve_run(str(a)) == a
    assert journal.resolve_run(b) == b
    second = _run(journal, "base")
    assert journal.resolve_run("base") == second
    with pytest.raises(JournalError, match="no run 77"):
        journal.resolve_run("77")
    with pytest.raises(JournalError, match="no run or session named 'nope'"):
        journal.resolve_run("nope")


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", "cba"),
        ("mixup", "b"),
        ("MIXUP", "b"),
        ("baseline", "a"),  # a tag and a note
        ('"set lr"', "ba"),
        ('"lr set"', ""),
        ("plateau*", "a"),
        ("smoothing AND mixup", "b"),
        ("baseline OR mixup", "ba"),
        ("NOT mixup", "ca"),
        ("set NOT (mixup OR slow)", "a"),
        ("status:done", "ba"),
        ("status:crashed", "c"),
        ("tag:MixUp", "b"),
        ("session:base", "a"),
        ("session:*", "cba"),
        ("lr>1e-3", "ba"),
        ("lr>=0.01", "b"),
        ("lr<1e-3", "c"),
        ("train.lr=0.003", "a"),
        ("accuracy>=0.9", "b"),
        ("valid_loss<0.6", "b"),
        ("bs=64 epochs=3", "cba"),
        ("seed!=1", "cb"),
        ("has:error", "c"),
        ("has:note status:done", "ba"),
        ("adam", "cba"),  # config text is indexed
        ("status:done lr>1e-3 NOT tag:mixup", "a"),
        ("since:2000-01-01", "cba"),
        ("until:2000-01-01", ""),
    ],
)
def test_search(journal, lab, query, expected):
    names = dict(zip(lab, "abc", strict=True))
    got = "".join(names[r["id"]] for r in journal.search(query))
    assert got == expected
    assert journal.count(query) == len(expected)


def test_search_by_run_and_parent(journal, lab):
    a, b, _ = lab
    assert [r["id"] for r in journal.search(f"run:{a}")] == [a]
    assert [r["id"] for r in journal.search(f"parent:{a}")] == [b]
    assert len(journal.search("", limit=2)) == 2
    assert journal.search("")[0]["tags"] == []


def test_search_raises_query_error_with_caret(journal):
    with pytest.raises(LabconError) as info:
        journal.search("status:done )")
    assert "unexpected ')' at column 13" in str(info.value)


def test_fts_index_stays_consistent(journal, lab):
    a, b, c = lab
    journal.add_tags(c, ["oom", "OOM", "retry"])
    assert journal.get_run(c)["tags"] == ["oom", "retry"]
    conn = journal._conn
    with journal.transaction():
        conn.execute("DELETE FROM tags WHERE run_id = ? AND tag = 'retry'", (c,))
        conn.execute("UPDATE events SET text = 'switch to sgd' WHERE run_id = ? AND kind = 'command'", (a,))
    assert journal.search("retry") == []
    assert [r["id"] for r in journal.search("sgd")] == [a]
    with journal.transaction():
        conn.execute("DELETE FROM runs WHERE id = ?", (b,))
    assert journal.search("mixup") == []
    assert conn.execute("SELECT count(*) FROM search_docs WHERE run_id = ?", (b,)).fetchone()[0] == 0
    assert journal.check() == []


def test_config_params():
    p = config_params(CFG, seed=7)
    assert p["lr"] == 0.003 and p["train.lr"] == 0.003 and p["bs"] == 64 and p["seed"] == 7
    assert "opt" not in p and "name" not in p
    ambiguous = config_params("[a]\nx = 1\n[b]\nx = 2\n")
    assert "x" not in ambiguous and ambiguous["a.x"] == 1
    assert config_params("not = = toml", seed=3) == {"seed": 3.0}
    assert config_params("flag = true\n") == {}


def test_diff(journal, lab):
    a, b, _ = lab
    d = journal.diff(a, b)
    assert d["a"]["id"] == a and d["b"]["id"] == b
    changed = [r for r in d["config"]["side_by_side"] if r["op"] != "equal"]
    assert changed == [{"op": "replace", "a": "lr = 0.003", "b": "lr = 0.01", "a_line": 9, "b_line": 9}]
    assert "-lr = 0.003\n+lr = 0.01\n" in d["config"]["unified"]
    assert d["commands"] == [
        {"epoch": 0, "iteration": 0, "a": [], "b": ["add_cb mixup alpha=0.4"]},
        {"epoch": 1, "iteration": 10, "a": ["set lr 1e-3"], "b": ["set lr 1e-3"]},
    ]
    acc = next(m for m in d["metrics"] if m["name"] == "accuracy")
    assert acc["a"] == 0.82 and acc["b"] == 0.91 and acc["delta"] == pytest.approx(0.09)
    assert [p["name"] for p in d["params"]] == ["lr", "seed", "train.lr"]
    assert d["epochs"][0]["epoch"] == 0 and len(d["epochs"]) == 3


def test_export_csv_and_json(journal, lab):
    a, b, c = lab
    rows = list(csv.DictReader(io.StringIO(journal.export("csv"))))
    assert [int(r["id"]) for r in rows] == [a, b, c]
    assert (
        rows[1]["accuracy"] == "0.91" and rows[1]["tags"] == "mixup" and rows[1]["param.train.lr"] == "0.01"
    )
    assert "param.lr" not in rows[1]  # each config value once, under its full name
    assert rows[2]["accuracy"] == "" and rows[0]["started"].startswith("20")
    data = json.loads(journal.export("json", query="status:done"))
    assert [r["id"] for r in data] == [a, b]
    assert data[0]["epochs"][2]["accuracy"] == 0.82 and data[1]["events"][0]["kind"] == "command"
    # Real nested JSON: objects and lists, not their Python repr in strings.
    first = data[0]
    assert isinstance(first["params"], dict) and isinstance(first["env"], dict)
    assert isinstance(first["epochs"], list) and isinstance(first["epochs"][0], dict)
    assert isinstance(first["events"], list) and isinstance(first["final_metrics"], dict)
    assert first["params"] == {
        "data.bs": 64.0,
        "train.epochs": 3.0,
        "train.lr": 0.003,
        "train.wd": 0.01,
        "seed": 1.0,
    }
    with pytest.raises(JournalError, match="unknown export format"):
        journal.export("xml")


def test_recover_stale(journal):
    live = journal.start_run("live", "", 1, pid=111)
    dead = journal.start_run("dead", "", 1, pid=222)
    journal.log_event(dead, "info", "epoch 0 done", when=1234.0)
    done = journal.start_run("done", "", 1, pid=222)
    journal.end_run(done, "done")
    assert journal.recover_stale(pid_alive=lambda pid: pid == 111) == [dead]
    assert journal.get_run(dead)["status"] == "crashed" and journal.get_run(dead)["ended"] == 1234.0
    assert journal.get_run(live)["status"] == "running"
    assert journal.get_run(done)["status"] == "done"
    assert journal.recover_stale(pid_alive=lambda pid: True) == []


def test_paths(tmp_path, monkeypatch):
    monkeypatch.delenv("LABCON_HOME", raising=False)
    assert sessions_home(None) == sessions_home("") == __import__("pathlib").Path("sessions")
    monkeypatch.setenv("LABCON_HOME", str(tmp_path))
    assert sessions_home(None) == tmp_path
    assert sessions_home("/x/y") == __import__("pathlib").Path("/x/y")
    assert journal_path(None) == tmp_path / "journal.db"
    for good in ["a", "exp-1", "run_2.b", "A" * 64, "9lives"]:
        assert validate_session_name(good) == good
    for bad in ["", ".hidden", "..", "a/b", "a\\b", "a..b", "-x", "a b", "A" * 65, "é", "a\x00"]:
        with pytest.raises(LabconError, match="invalid session name"):
            validate_session_name(bad)


def test_dense_and_sparse_free_text_plans_agree(journal, lab):
    # Common terms are probed per run (EXISTS over the run's FTS rowid range), rare ones collected (IN).
    from labcon.session.query import compile_query

    for query in [
        "mixup",
        "set lr",
        "NOT mixup",
        "baseline OR mixup",
        "set NOT (mixup OR slow)",
        "adam lr>1e-3",
    ]:
        got = []
        for dense in (lambda f: False, lambda f: True):
            where, params = compile_query(query, dense=dense)
            got.append(
                [r[0] for r in journal._rows(f"SELECT id FROM runs r WHERE {where} ORDER BY id", params)]
            )
        assert got[0] == got[1], query
    where, _ = compile_query("mixup", dense=lambda f: True)
    assert where.startswith("EXISTS")
    where, _ = compile_query("NOT mixup", dense=lambda f: True)
    assert "EXISTS" not in where  # negated terms are collected once, never probed run by run
