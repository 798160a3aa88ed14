"""The REPL: message formatting, completion, and the prompt driven through a pipe input."""

from __future__ import annotations

import threading
import time

from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

from labcon.commands.grammar import StaticContext
from labcon.repl import CommandCompleter, format_message, format_progress, run_repl
from labcon.session.describe import describe
from labcon.session.messages import (
    BatchStats,
    CommandApplied,
    CommandFailed,
    EpochEnded,
    FitEnded,
    FitStarted,
    Log,
    Message,
    Progress,
    StateChanged,
)
from tests.fakes import FakeSession

PROG = Progress(1, "train", 10, 100, 109, 0.51234, 0.6, (1e-3, 3e-3), (0.9,), 75.0, 30.0, 3725.0)


def test_messages_have_one_wording_for_every_front_end() -> None:
    """The REPL, the console pane and the headless printer all word a message with describe()."""
    assert format_progress(PROG) == (
        "epoch 1 train 10/100  loss 0.5123 (smooth 0.6000)  lr 0.003  1:15 elapsed, eta 1:02:05"
    )
    row = {"epoch": 0, "train_loss": 1.23456, "valid_loss": 0.9, "accuracy": 0.75, "time": 12.0}
    assert (
        format_message(EpochEnded(0, row))
        == "epoch 0  train_loss 1.2346  valid_loss 0.9000  accuracy 0.7500  time 0:12"
    )
    assert format_message(FitStarted(3, 2, 5, 100, 20)) == (
        "fit started: run 3, 5 epoch(s) from epoch 2 (100 train / 20 valid batches)"
    )
    assert format_message(FitEnded("stopped", "user")) == "fit stopped: user"
    assert format_message(StateChanged("paused")) == "session is paused"
    assert format_message(CommandApplied("set lr=0.01", 2, 17, "set lr=0.01")) == (
        "applied 'set lr=0.01' at epoch 2, iteration 17: set lr=0.01"
    )
    assert format_message(CommandFailed("norm x", "bad")) == "failed 'norm x': bad"
    assert format_message(Log("warning", "slow")) == "warning: slow"
    assert format_message(Log("info", "hello")) == "hello"
    assert format_message(PROG) is None and format_message(BatchStats(0, (), (), (), ())) is None
    assert describe(PROG) == format_progress(PROG)


def test_headless_printer_and_console_pane_use_the_same_words() -> None:
    import io

    from labcon.cli.printer import HeadlessPrinter
    from tests.fakes import FakeSession

    fake = FakeSession(state="idle")
    out = io.StringIO()
    printer = HeadlessPrinter(fake, out=out, every=0.0)
    msgs = [
        CommandApplied("set lr=0.01", 2, 17, "set lr=0.01"),
        CommandFailed("norm x", "bad"),
        FitEnded("done"),
    ]
    for m in msgs:
        fake.emit(m)
    printer.close()
    fake.close()
    assert out.getvalue().splitlines() == [describe(m) for m in msgs]


def test_completer_yields_replacements_for_the_current_word() -> None:
    comp = CommandCompleter(StaticContext(callbacks_available=["mixup", "gradient_clip"]))
    got = list(comp.get_completions(Document("cb add mi"), CompleteEvent()))
    assert [(c.text, c.start_position) for c in got] == [("mixup", -2)]
    got = list(comp.get_completions(Document("set "), CompleteEvent()))
    assert "lr=" in [c.text for c in got] and all(c.start_position == 0 for c in got)


def drive(
    session: FakeSession,
    lines: list[str],
    tmp_path,
    wait_for: str | None = None,
    publish: tuple[Message, ...] = (),
) -> list[str]:
    """Type `lines` into the REPL (the last ones only after `wait_for` was printed), the session publishing
    `publish` once the REPL has subscribed; returns printed lines."""
    printed: list[str] = []
    with create_pipe_input() as inp:
        first, rest = (lines[:-1], lines[-1:]) if wait_for else (lines, [])
        inp.send_text("".join(first))

        def later() -> None:
            deadline = time.monotonic() + 5
            while not session.bus._subs and time.monotonic() < deadline:
                time.sleep(0.01)
            for m in publish:
                session.emit(m)
            while not any(wait_for in p for p in printed) and time.monotonic() < deadline:
                time.sleep(0.01)
            inp.send_text("".join(rest))

        t = threading.Thread(target=later)
        if wait_for:
            t.start()
        run_repl(session, tmp_path / "hist", input=inp, output=DummyOutput(), printer=printed.append)
        if wait_for:
            t.join()
    return printed


def test_repl_submits_helps_reports_errors_and_quits(tmp_path) -> None:
    s = FakeSession(state="idle")
    printed = drive(
        s,
        ["set lr=1e-2\n", "help set\n", "fti 3\n", "cb add nope\n", "\n", "quit\n"],
        tmp_path,
        "epoch 0",
        publish=(EpochEnded(0, {"train_loss": 1.0, "valid_loss": 0.5}),),
    )
    assert s.received == ["set lr=1e-2", "cb add nope"]  # help and typos never reach the session
    assert "set lr=0.01; later fits start from this lr" in printed  # idle: applied at once
    assert any(p.startswith("usage: set NAME=VALUE") for p in printed)
    assert any(p.startswith("error: unknown command 'fti'; did you mean 'fit'?") for p in printed)
    assert any(p.startswith("error: ") and "'nope'" in p for p in printed)
    assert "epoch 0  train_loss 1.0000  valid_loss 0.5000" in printed
    assert not s.bus._subs  # the REPL closed its subscription
    history = (tmp_path / "hist").read_text()
    assert "set lr=1e-2" in history and "help set" in history


def test_repl_asks_before_quitting_a_live_run(tmp_path) -> None:
    s = FakeSession(state="running")
    printed = drive(s, ["quit\n", "n\n", "status\n", "exit\n", "y\n"], tmp_path)
    assert s.received == ["status", "stop"]
    assert "queued: 'stop' applies at the next batch" in printed


def test_repl_ctrl_d_quits_when_idle(tmp_path) -> None:
    s = FakeSession(state="idle")
    printed = drive(s, ["status\n", "\x04"], tmp_path)
    assert s.received == ["status"] and len(printed) == 1 and printed[0].startswith("session fake: idle")


def test_repl_prints_progress_throttled(tmp_path) -> None:
    s = FakeSession(state="idle")
    msgs = [Progress(0, "train", i, 50, i, 1.0, 1.0, (1e-3,), (0.9,), 1.0, 1.0, 1.0) for i in range(50)]
    printed = drive(s, ["quit\n"], tmp_path, wait_for="done", publish=(*msgs, Log("info", "done")))
    progress_lines = [p for p in printed if p.startswith("epoch 0 train")]
    assert len(progress_lines) == 1  # 50 updates in well under progress_interval: one line


def test_piped_input_runs_each_line_in_order_without_a_prompt(monkeypatch, capsys) -> None:
    import io

    s = FakeSession(state="idle")
    monkeypatch.setattr(
        "sys.stdin", io.StringIO('set lr=1e-2\n"unbalanced\n\nstatus\ncb add nope\nquit\nstatus\n')
    )
    assert run_repl(s, None) == 1  # two lines were refused: the exit status says so
    out, err = capsys.readouterr()
    assert s.received == ["set lr=1e-2", "status", "cb add nope"]  # nothing after quit
    assert out.splitlines()[0] == "set lr=0.01; later fits start from this lr"
    assert out.splitlines()[1].startswith("session fake: idle")
    errors = err.splitlines()
    assert errors[0].startswith('error: line 2: unterminated " quote') and "'nope'" in errors[1]
    assert errors[1].startswith("error: line 5: ") and len(errors) == 2
    for text in (out, err):
        assert "labcon>" not in text and "\r" not in text and "not a terminal" not in text


def test_piped_input_with_no_refusals_exits_zero(monkeypatch, capsys) -> None:
    import io

    s = FakeSession(state="idle")
    monkeypatch.setattr("sys.stdin", io.StringIO("status\n"))
    assert run_repl(s, None) == 0
    assert capsys.readouterr().err == ""


def test_the_real_labcon_repl_reads_a_pipe_in_order_and_exits_1_on_a_refusal(tmp_path) -> None:
    """`printf ... | labcon repl CONFIG` on a real session in a fresh directory: replies in order on stdout,
    each refusal on stderr with its line number, no prompt-toolkit warning, exit status 1."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from tests.helpers import make_image_folder, tiny_config

    repo = Path(__file__).resolve().parents[1]
    cfg = tmp_path / "p.toml"
    cfg.write_text(tiny_config(make_image_folder(tmp_path / "img"), "piped", 1, telemetry=False))
    out = subprocess.run(
        [sys.executable, "-m", "labcon", "--sessions-dir", str(tmp_path / "s"), "repl", str(cfg)],
        input="set lr=abc\nset wd=0.01\nquit\n",
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(repo)},
        timeout=120,
    )
    assert out.returncode == 1, (out.stdout, out.stderr)
    assert "error: line 1:" in out.stderr and "abc" in out.stderr
    assert "set wd=0.01" in out.stdout
    both = out.stdout + out.stderr
    assert "not a terminal" not in both and "\r" not in both and "Traceback" not in both
