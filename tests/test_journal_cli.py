"""`labcon journal ...` end to end through labcon.cli.main."""

from __future__ import annotations

import csv
import io
import json

import pytest

from labcon.cli import main
from labcon.session.journal import Journal

CFG = 'name = "base"\nseed = 1\n\n[train]\nlr = 0.003\nepochs = 2\n'


@pytest.fixture
def runs(labcon_home):
    with Journal(labcon_home / "journal.db") as j:
        a = j.start_run("base", CFG, 1, tags=["baseline"], env={}, code_version="t")
        j.log_event(a, "command", "set lr 1e-3", epoch=1, iteration=5)
        j.log_epoch(a, 0, {"train_loss": 1.0, "accuracy": 0.7})
        j.end_run(a, "done", {"accuracy": 0.8})
        b = j.start_run(
            "mix", CFG.replace("0.003", "0.01"), 2, parent_id=a, tags=["mixup"], env={}, code_version="t"
        )
        j.log_event(b, "command", "add_cb mixup", epoch=0, iteration=0)
        j.end_run(b, "done", {"accuracy": 0.9})
    return a, b


def test_search_text_and_json(runs, capsys):
    a, b = runs
    assert main(["journal", "search", "status:done", "lr>5e-3"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:3] == ["run", "session", "status"]
    assert "mix" in out and "base " not in out and "accuracy=0.9" in out
    assert main(["journal", "search", "--json", "--limit", "1"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [r["id"] for r in data] == [b] and data[0]["tags"] == ["mixup"]
    assert main(["journal", "search", "nothing-like-this"]) == 0
    assert "no runs match" in capsys.readouterr().out
    assert main(["journal"]) == 0  # bare `journal` lists recent runs
    assert "baseline" in capsys.readouterr().out


def test_search_error_shows_caret(runs, capsys):
    assert main(["journal", "search", "status:done", ")"]) == 2
    err = capsys.readouterr().err
    assert "unexpected ')' at column 13" in err
    assert err.splitlines()[-2].index("^") == err.splitlines()[-3].index(")")


def test_show(runs, capsys):
    a, b = runs
    assert main(["journal", "show", "base"]) == 0
    out = capsys.readouterr().out
    assert f"run {a}" in out and "lr = 0.003" in out and "set lr 1e-3" in out and "1:5" in out
    assert "train_loss" in out and "accuracy=0.8" in out
    assert main(["journal", "show", str(b), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["parent_id"] == a and data["events"][0]["text"] == "add_cb mixup"
    assert main(["journal", "show", "nope"]) == 2
    assert "no run or session named 'nope'" in capsys.readouterr().err


def test_diff(runs, capsys):
    a, b = runs
    assert main(["journal", "diff", str(a), "mix"]) == 0
    out = capsys.readouterr().out
    changed = [line for line in out.splitlines() if "lr = 0.003" in line]
    assert changed and "|" in changed[0] and "lr = 0.01" in changed[0]
    assert "add_cb mixup" in out and "+0.1" in out
    assert main(["journal", "diff", str(a), str(b), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["metrics"][0]["name"] == "accuracy"


def test_note_then_search(runs, capsys):
    a, _ = runs
    assert main(["journal", "note", str(a), "try", "warmup next"]) == 0
    assert f"note added to run {a}" in capsys.readouterr().out
    assert main(["journal", "search", "--json", '"warmup next"']) == 0
    assert [r["id"] for r in json.loads(capsys.readouterr().out)] == [a]


def test_export(runs, capsys, tmp_path):
    a, b = runs
    assert main(["journal", "export", "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [int(r["id"]) for r in rows] == [a, b] and rows[1]["accuracy"] == "0.9"
    out = tmp_path / "runs.json"
    assert main(["journal", "export", "--format", "json", "--query", "tag:mixup", "-o", str(out)]) == 0
    assert [r["id"] for r in json.loads(out.read_text())] == [b]


def test_sessions_dir_option_and_missing_journal(runs, tmp_path, capsys):
    assert main(["--sessions-dir", str(tmp_path / "empty"), "journal", "search"]) == 2
    assert "no journal at" in capsys.readouterr().err
    assert not (tmp_path / "empty").exists()  # reading never creates a journal


def test_export_to_a_path_that_cannot_be_written_is_one_line(runs, capsys, tmp_path):
    assert main(["journal", "export", "-o", str(tmp_path / "no" / "x.csv")]) == 2
    err = capsys.readouterr().err
    assert "folder" in err and "does not exist" in err and "choose another -o/--output" in err
    assert "Traceback" not in err
    assert main(["journal", "export", "-o", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "it is a folder" in err and "give a file name" in err and "Traceback" not in err


def test_a_journal_locked_by_another_process_says_so_and_what_to_do(runs, labcon_home, capsys, monkeypatch):
    import functools
    import sqlite3

    import labcon.cli.journal as journal_cli

    # A short wait on the lock; the holder keeps it until the assertions are done.
    monkeypatch.setattr(journal_cli, "Journal", functools.partial(Journal, timeout=0.1))
    path = labcon_home / "journal.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        assert main(["journal", "note", str(runs[0]), "hi"]) == 2
        err = capsys.readouterr().err
        assert f"the journal {path} is locked by another process" in err
        assert "wait for it to finish" in err and f"fuser {path}" in err and "Traceback" not in err
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert main(["journal", "note", str(runs[0]), "hi"]) == 0  # the writer is usable once the lock is gone


def test_a_home_with_an_unknown_user_is_one_line(monkeypatch, capsys):
    monkeypatch.setenv("LABCON_HOME", "~nosuchuser-labcon/x")
    assert main(["journal"]) == 2
    err = capsys.readouterr().err
    assert "LABCON_HOME is '~nosuchuser-labcon/x'" in err and "give a full path" in err
    assert "Traceback" not in err


def test_an_unexpected_os_error_is_one_line_and_a_bug_stays_a_traceback(runs, monkeypatch, capsys):
    import sqlite3

    import labcon.cli.journal as journal_cli

    def fail(exc: BaseException):
        def raiser(args):
            raise exc

        return raiser

    monkeypatch.setattr(
        journal_cli, "open_journal", fail(PermissionError(13, "Permission denied", "/x/j.db"))
    )
    assert main(["journal"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("labcon: error: cannot use /x/j.db: Permission denied; check the path")
    monkeypatch.setattr(journal_cli, "open_journal", fail(sqlite3.OperationalError("disk I/O error")))
    assert main(["journal"]) == 2
    assert "labcon: error: a database operation failed: disk I/O error" in capsys.readouterr().err
    monkeypatch.setattr(journal_cli, "open_journal", fail(TypeError("a bug")))
    with pytest.raises(TypeError):
        main(["journal"])


def test_search_minus_word_excludes(runs, capsys):
    a, b = runs
    assert main(["journal", "search", "--json", "--", "-mixup"]) == 0
    assert [r["id"] for r in json.loads(capsys.readouterr().out)] == [a]
    assert main(["journal", "search", "--json", "mixup"]) == 0
    assert [r["id"] for r in json.loads(capsys.readouterr().out)] == [b]
    assert main(["journal", "search", "--", "--mixup"]) == 2
    err = capsys.readouterr().err
    assert "starts with '-'" in err and "exclude a term with -word or NOT word" in err


@pytest.mark.parametrize("limit", ["0", "-1", "many"])
def test_search_limit_below_one_is_refused(runs, capsys, limit):
    with pytest.raises(SystemExit) as e:
        main(["journal", "search", f"--limit={limit}"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "argument --limit: must be a whole number of 1 or more" in err and "Traceback" not in err
