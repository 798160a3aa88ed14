"""Red-team suite: attacks on checkpoints, session folders, the journal, the socket and bad input.

Each test is an attack that worked on an earlier labcon; what held then is pinned here too."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from labcon.errors import LabconError
from labcon.session.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint
from labcon.session.journal import Journal
from labcon.session.restore import UntrustedCodeError
from labcon.session.session import Session
from tests.helpers import checkpointed, tiny_config, tiny_session

REPO = Path(__file__).resolve().parents[1]

CALLBACK_FILE = """
from pathlib import Path
from labcon import Callback
Path({marker!r}).write_text("ran")

class Mark(Callback):
    order = 5
"""


def _code_file(tmp_path: Path, name: str = "cb.py") -> tuple[Path, Path]:
    marker = tmp_path / f"{name}.ran"
    f = tmp_path / name
    f.write_text(CALLBACK_FILE.format(marker=str(marker)))
    return f, marker


def _plant(ckpts: Path, structural: list[str]) -> None:
    """What an attacker does: rewrite the newest checkpoint's command list (a valid, weights-only file)."""
    newest = list_checkpoints(ckpts)[-1]
    state = load_checkpoint(newest)
    state["structural"] = structural
    for p in list_checkpoints(ckpts):
        p.unlink()
    save_checkpoint(ckpts, state)


# ----- a checkpoint never runs code -----------------------------------------------------------------


def test_planted_checkpoint_does_not_run_code(data, tmp_path):
    home = tmp_path / "s"
    ckpts = checkpointed(data, home)
    evil, marker = _code_file(tmp_path, "evil.py")
    _plant(ckpts, [f"cb add {evil}:Mark"])
    with pytest.raises(UntrustedCodeError) as e:
        Session.resume("t", home)
    assert not marker.exists()
    assert str(evil) in str(e.value) and "--trust-code" in str(e.value)
    # Consent is not enough: the journal never recorded adding that file to this session.
    with pytest.raises(UntrustedCodeError, match="never recorded"):
        Session.resume("t", home, trust_code=True)
    assert not marker.exists()


def test_own_callback_file_resumes_only_with_consent_and_same_hash(data, tmp_path):
    home = tmp_path / "s"
    code, marker = _code_file(tmp_path)
    s = tiny_session(data, home, epochs=1)
    assert s.submit(f"cb add {code}:Mark").ok
    assert marker.exists()
    s.start_fit()
    assert s.wait(120)
    s.close()
    marker.unlink()

    with pytest.raises(UntrustedCodeError, match="--trust-code"):
        Session.resume("t", home)
    assert not marker.exists()

    r = Session.resume("t", home, trust_code=True)
    assert marker.exists() and r.runner.cb("mark") is not None
    r.close()

    marker.unlink()
    code.write_text(code.read_text() + "\n# edited by someone\n")
    with pytest.raises(UntrustedCodeError, match="changed since"):
        Session.resume("t", home, trust_code=True)
    assert not marker.exists()


def test_replay_runs_user_code_only_with_consent(data, tmp_path):
    from labcon.session.replay import start_replay

    home = tmp_path / "s"
    code, marker = _code_file(tmp_path)
    s = tiny_session(data, home, name="orig", epochs=1)
    assert s.submit(f"cb add {code}:Mark").ok
    s.start_fit()
    assert s.wait(120)
    run_id = s.persist.run_id
    s.close()
    marker.unlink()
    with pytest.raises(LabconError, match="--trust-code"):
        start_replay(run_id, home)
    code.write_text(code.read_text() + "\n# changed\n")
    with pytest.raises(LabconError, match="changed since"):
        start_replay(run_id, home, trust_code=True)
    assert not marker.exists()


# ----- shared folders and private files ---------------------------------------------------------------


def test_group_writable_session_folder_is_refused(data, tmp_path):
    home = tmp_path / "s"
    checkpointed(data, home)
    os.chmod(home / "t" / "checkpoints", 0o777)
    with pytest.raises(LabconError, match=r"chmod go-w .*checkpoints"):
        Session.resume("t", home)


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to give a file to another user")
def test_checkpoint_owned_by_another_user_is_refused(data, tmp_path):
    home = tmp_path / "s"
    ckpts = checkpointed(data, home)
    os.chown(list_checkpoints(ckpts)[-1], 12345, 12345)
    with pytest.raises(LabconError, match="belongs to user id 12345.*chown"):
        Session.resume("t", home)


def test_journal_and_sessions_folder_are_private(data, tmp_path):
    home = tmp_path / "s"
    old = os.umask(0o002)  # a common default: new files group-writable
    try:
        checkpointed(data, home)
    finally:
        os.umask(old)
    mode = lambda p: stat.S_IMODE(p.stat().st_mode)  # noqa: E731
    assert mode(home) == 0o700 and mode(home / "t") == 0o700
    assert mode(home / "journal.db") == 0o600
    assert mode(home / "t" / "session.toml") == 0o600
    assert mode(home / "t" / "checkpoints") == 0o700


# ----- terminals never receive escape sequences from clients or the journal -----------------------------


def test_headless_printer_shows_control_characters(data, tmp_path):
    import io

    from labcon.cli.printer import HeadlessPrinter

    s = tiny_session(data, tmp_path / "s")
    out = io.StringIO()
    printer = HeadlessPrinter(s, out=out, every=0)
    s.submit("set lr=\x1b]0;pwned\x07\x1b[2J")
    printer.close()
    s.close()
    text = out.getvalue()
    assert "failed" in text and "\\x1b" in text
    assert "\x1b" not in text and "\x07" not in text


def test_journal_show_shows_control_characters(data, tmp_path, capsys):
    from labcon.cli import main

    home = tmp_path / "s"
    checkpointed(data, home)
    with Journal(home / "journal.db") as j:
        rid = j.resolve_run("t")
        j.add_note(rid, "look \x1b[31mred\x1b[0m \u202eevil\r")
    assert main(["--sessions-dir", str(home), "journal", "show", str(rid)]) == 0
    out = capsys.readouterr().out
    assert "\\x1b[31mred" in out and "\\u202e" in out
    assert "\x1b" not in out and "\u202e" not in out and "\r" not in out


# ----- faults are said, journaled and survived ----------------------------------------------------------


def _flip_tensor_byte(path: Path, tensor: torch.Tensor) -> None:
    raw = bytearray(path.read_bytes())
    needle = tensor.detach().contiguous().numpy().tobytes()
    at = raw.find(needle)
    assert at >= 0
    raw[at + len(needle) // 2] ^= 0x10
    path.write_bytes(bytes(raw))


def test_flipped_bytes_in_a_tensor_are_detected(data, tmp_path):
    from labcon.errors import CheckpointError

    ckpts = checkpointed(data, tmp_path / "s")
    newest = list_checkpoints(ckpts)[-1]
    weights = max(load_checkpoint(newest)["model"].values(), key=lambda t: t.numel())
    _flip_tensor_byte(newest, weights)
    with pytest.raises(CheckpointError, match="checksum"):
        load_checkpoint(newest)


def test_bad_newest_checkpoint_is_said_journaled_and_moved_aside(data, tmp_path):
    home = tmp_path / "s"
    s = tiny_session(data, home, epochs=2)
    s.start_fit()
    assert s.wait(120)
    s.close()
    ckpts = home / "t" / "checkpoints"
    older, newest = list_checkpoints(ckpts)
    newest.write_bytes(newest.read_bytes()[:200])
    r = Session.resume("t", home)
    assert r.runner.epoch == 1 and r.persist.restored_from == older
    assert any(newest.name in n and "previous checkpoint" in n for n in r.persist.notices)
    r.persist.writer.flush()
    errors = [e["text"] for e in r.journal.events(r.persist.run_id, kinds=["error"])]
    r.close()
    assert any(newest.name in e for e in errors)
    assert list_checkpoints(ckpts) == [older]  # out of the rotation, kept for a look
    assert (ckpts / (newest.name + ".bad")).exists()


def test_a_finished_run_whose_last_checkpoint_is_bad_is_not_reopened(data, tmp_path):
    """Falling back to an older checkpoint of a run that finished must not train that run again (its record
    would be rewritten as failed): nothing to resume, said, and the record stays done."""
    home = tmp_path / "s"
    s = tiny_session(data, home, epochs=2)
    s.start_fit()
    assert s.wait(120)
    rid = s.persist.run_id
    s.close()
    older, newest = list_checkpoints(home / "t" / "checkpoints")
    newest.write_bytes(b"junk\n")
    r = Session.resume("t", home)
    try:
        assert r.persist.restored_from == older and r.runner.epoch == 1
        assert any(f"run {rid} finished, so its fit is not continued" in n for n in r.persist.notices)
        assert not r.resume_fit()
        assert r.journal.get_run(rid)["status"] == "done"
    finally:
        r.close()
    with Journal(home / "journal.db") as j:
        assert j.get_run(rid)["status"] == "done"
        with pytest.raises(Exception, match="finished; its record is never rewritten"):
            j.end_run(rid, "failed")


def test_newest_checkpoint_that_does_not_fit_falls_back_loudly(data, tmp_path):
    home = tmp_path / "s"
    ckpts = checkpointed(data, home)
    state = load_checkpoint(list_checkpoints(ckpts)[-1])
    name, w = next(iter(state["model"].items()))
    state["model"][name] = torch.zeros(w.shape[0] + 1, *w.shape[1:])
    state["epoch"] += 5
    save_checkpoint(ckpts, state, keep=3)
    r = Session.resume("t", home)
    assert r.runner.epoch == 1
    assert any("does not fit" in n for n in r.persist.notices)
    r.close()


def test_one_process_per_session_without_a_socket(data, tmp_path):
    a = tiny_session(data, tmp_path / "s", name="same")
    with pytest.raises(LabconError, match="in use by process") as info:
        tiny_session(data, tmp_path / "s", name="same")
    assert "It serves no control socket (started with --no-socket), so it cannot be attached" in str(
        info.value
    )
    a.close()
    tiny_session(data, tmp_path / "s", name="same").close()  # released on close


def test_run_whose_process_died_is_marked_and_resume_says_what_it_can_do(data, tmp_path, capsys):
    from labcon.cli import main

    home = tmp_path / "s"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    s = tiny_session(data, home)
    s.close()
    with Journal(home / "journal.db") as j:
        rid = j.start_run("t", "", 0, pid=dead.pid)
    r = Session.resume("t", home)
    assert any(f"run {rid}" in n and "died" in n for n in r.persist.notices)
    assert r.journal.get_run(rid)["status"] == "crashed"
    r.close()
    assert main(["--sessions-dir", str(home), "resume", "t", "--no-socket"]) == 2
    err = capsys.readouterr().err
    assert "no checkpoint to resume from" in err and "session.toml" in err


def test_damaged_journal_is_refused_at_start_with_recovery(data, tmp_path, capsys):
    from labcon.cli import main

    home = tmp_path / "s"
    home.mkdir(mode=0o700)
    (home / "journal.db").write_bytes(b"SQLite format 3\x00" + os.urandom(4000))
    cfg = tmp_path / "c.toml"
    cfg.write_text(tiny_config(data, "t", 1, telemetry=False))
    assert main(["--sessions-dir", str(home), "run", str(cfg), "--no-socket", "--every", "0"]) != 0
    err = capsys.readouterr().err
    assert "journal" in err and "mv " in err and "Traceback" not in err
