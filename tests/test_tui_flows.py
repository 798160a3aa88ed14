"""Pilot tests of the console's main flows against FakeSession: train, pause, set, swap, keys, quit, sizes."""

from __future__ import annotations

import pytest
from textual.widgets import Input

from labcon.session.messages import CommandFailed, Log
from labcon.tui.commandline import CommandLine
from labcon.tui.console import ConsolePane
from labcon.tui.training import TrainingPane
from tests.fakes import fake_app
from tests.pilot import command, screen_text, until

SIZE = (100, 30)
pytestmark = pytest.mark.anyio


# -- flows ---------------------------------------------------------------------------------------
async def test_train_pause_set_lr_swap_callback_resume():
    fake, app = fake_app(state="idle")
    async with app.run_test(size=SIZE) as pilot:
        await command(pilot, app, "fit 2")
        await until(pilot, lambda: fake.state == "running")
        fake.train_batches(30)
        pane = app.query_one(TrainingPane)
        await until(pilot, lambda: pane.progress is not None and pane.progress.train_iter == 330)
        await pilot.press("escape", "space")  # Esc leaves the command line, space pauses
        await until(pilot, lambda: fake.state == "paused")
        await command(pilot, app, "set lr=0.01")
        assert "set lr=0.01" in fake.received and fake.hypers["lr"] == [0.01]
        await command(pilot, app, "cb add mixup")
        await command(pilot, app, "cb rm telemetry")
        assert fake.cbs[-1] == "mixup" and "telemetry" not in fake.cbs
        await until(pilot, lambda: "applied 'cb add mixup'" in "\n".join(app.console_pane.lines))
        await pilot.press("escape", "space")
        await until(pilot, lambda: fake.state == "running")
        assert fake.received == [
            "fit 2",
            "pause",
            "set lr=0.01",
            "cb add mixup",
            "cb rm telemetry",
            "resume",
        ]
        await until(pilot, lambda: "lr 0.010 " in screen_text(app))
        await pilot.press("6")
        await pilot.pause()
        assert "session is running" in screen_text(app)


async def test_errors_reach_console_and_notifications_without_crashing():
    fake, app = fake_app()
    fake.raise_on.add("boom")
    async with app.run_test(size=SIZE) as pilot:
        await command(pilot, app, "frobnicate")
        await command(pilot, app, "boom")  # the session raises
        fake.emit(CommandFailed("cb add nope", "no callback named 'nope'"))
        fake.error("CUDA out of memory at batch 12")
        await until(pilot, lambda: any("out of memory" in ln for ln in app.console_pane.lines))
        log = "\n".join(app.console_pane.lines)
        assert "error: unknown command 'frobnicate'" in log
        assert "RuntimeError: the session failed on 'boom'" in log
        assert "error: cb add nope: no callback named 'nope'" in log
        messages = " | ".join(n.message for n in app._notifications)
        assert "frobnicate" in messages and "failed on 'boom'" in messages and "out of memory" in messages
        assert app.is_running


async def test_command_line_history_completion_and_help():
    fake, app = fake_app()
    async with app.run_test(size=SIZE) as pilot:
        await command(pilot, app, "save")
        await command(pilot, app, "set lr=0.02")
        line = app.query_one(CommandLine)
        line.focus()
        await pilot.press("up")
        assert line.value == "set lr=0.02"
        await pilot.press("up")
        assert line.value == "save"
        await pilot.press("down", "down")
        assert line.value == ""
        await pilot.press("s", "e", "tab")
        assert line.value == "set "
        await pilot.press("tab")  # several candidates: listed in the console
        await pilot.pause()
        assert "lr=" in app.console_pane.lines[-1]
        line.value = ""
        await pilot.press("h", "e", "l", "p", "enter")
        await pilot.pause()
        assert any("fit N" in ln for ln in app.console_pane.lines)
        assert "help" not in fake.received  # answered locally from the command grammar


async def test_colon_and_slash_type_into_text_boxes():
    """':' and '/' focus the command line, but inside a text box they are just characters."""
    fake, app = fake_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("colon", *"cb add my/cb.py:Mine")
        assert app.query_one(CommandLine).value == "cb add my/cb.py:Mine"
        await pilot.press("escape", "5")
        await pilot.pause()
        search = app.query_one("#journal-query", Input)
        search.focus()
        await pilot.pause()
        await pilot.press(*"tag:a/b")
        assert search.value == "tag:a/b"


async def test_keys_stop_save_help_and_palette_panes():
    fake, app = fake_app(state="running")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+s")
        await until(pilot, lambda: "save" in fake.received and app.sender.idle)
        await pilot.press("question_mark")
        await pilot.pause()
        assert "pause / resume the run" in screen_text(app)
        await pilot.press("escape")
        await pilot.press("s")
        await pilot.pause()
        assert "Stop the fit at the next batch?" in screen_text(app) and fake.state == "running"
        await pilot.press("n")  # no: nothing happens
        await pilot.pause()
        assert "stop" not in fake.received and fake.state == "running"
        await pilot.press(
            "s", *"et lr=0.1", "enter"
        )  # a command typed after a stray `s`: never a yes (nor a pause)
        await pilot.pause()
        assert "stop" not in fake.received and fake.state == "running"
        await pilot.press("s", "y")
        await until(pilot, lambda: fake.state == "idle")
        names = [c.title for c in app.get_system_commands(app.screen)]
        assert {"Pane: Training", "Pane: Journal", "Pause / resume"} <= set(names)
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"Pane: Hooks")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await until(pilot, lambda: app.query_one("#panes").active == "hooks")


@pytest.mark.parametrize("choice,state", [("cancel", "running"), ("stop", "idle"), ("detach", "running")])
async def test_quit_asks_when_live(choice: str, state: str):
    fake, app = fake_app(state="running")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("q")
        await pilot.pause()
        assert "What should happen to it?" in screen_text(app)
        await pilot.click(f"#{choice}")
        await pilot.pause()
        assert app.is_running == (choice == "cancel")
    assert fake.state == state and fake.detached == (choice == "detach")


async def test_quit_when_idle_is_immediate():
    fake, app = fake_app(state="idle")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("q")
        await pilot.pause()
        assert not app.is_running


async def test_usable_at_80x24():
    fake, app = fake_app()
    async with app.run_test(size=(80, 24)) as pilot:
        for key, needle in zip(
            "123456",
            ("train loss", "near 0", "hook(s)", "DataBlock", "filter runs", "type a command"),
            strict=True,
        ):
            await pilot.press(key)
            await pilot.pause()
            assert needle in screen_text(app), key
        assert isinstance(app.query_one(ConsolePane), ConsolePane)


async def test_lost_session_is_said_once_and_quit_needs_no_dialog():
    fake, app = fake_app(state="running")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause(0.2)
        fake.emit(Log(level="info", text="last words"))
        fake.lose_connection()  # what a RemoteSubscription does when the session's process has gone
        await until(pilot, lambda: app.session_lost)
        assert "● lost" in screen_text(app)
        assert "last words" in "\n".join(str(x) for x in app.console_pane.lines)  # read before giving up
        await pilot.press("q")  # the run is not ours to stop any more: no question
        await pilot.pause()
        assert not app.is_running
    assert fake.received == []
