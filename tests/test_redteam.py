"""Red-team suite: attacks on checkpoints, session folders, the journal, the socket and bad input.

Each test is an attack that worked on an earlier labcon; what held then is pinned here too."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from labcon.errors import LabconError
from labcon.session.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint
from labcon.session.config import parse_config
from labcon.session.restore import UntrustedCodeError
from labcon.session.session import Session
from tests.helpers import make_image_folder, tiny_config

REPO = Path(__file__).resolve().parents[1]

CALLBACK_FILE = """
from pathlib import Path
from labcon import Callback
Path({marker!r}).write_text("ran")

class Mark(Callback):
    order = 5
"""


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("img"), n_train=8, n_valid=4)


def _session(data, home, name="t", epochs=1, **kw) -> Session:
    return Session(parse_config(tiny_config(data, name, epochs, telemetry=False)), home, **kw)


def _checkpointed(data, home, name="t") -> Path:
    """A closed session with one checkpoint (after an epoch); returns its checkpoints folder."""
    s = _session(data, home, name)
    s.start_fit()
    assert s.wait(120)
    s.close()
    return home / name / "checkpoints"


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
    ckpts = _checkpointed(data, home)
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
    s = _session(data, home, epochs=1)
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
    s = _session(data, home, name="orig", epochs=1)
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
    _checkpointed(data, home)
    os.chmod(home / "t" / "checkpoints", 0o777)
    with pytest.raises(LabconError, match=r"chmod go-w .*checkpoints"):
        Session.resume("t", home)


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to give a file to another user")
def test_checkpoint_owned_by_another_user_is_refused(data, tmp_path):
    home = tmp_path / "s"
    ckpts = _checkpointed(data, home)
    os.chown(list_checkpoints(ckpts)[-1], 12345, 12345)
    with pytest.raises(LabconError, match="belongs to user id 12345.*chown"):
        Session.resume("t", home)


def test_journal_and_sessions_folder_are_private(data, tmp_path):
    home = tmp_path / "s"
    old = os.umask(0o002)  # a common default: new files group-writable
    try:
        _checkpointed(data, home)
    finally:
        os.umask(old)
    mode = lambda p: stat.S_IMODE(p.stat().st_mode)  # noqa: E731
    assert mode(home) == 0o700 and mode(home / "t") == 0o700
    assert mode(home / "journal.db") == 0o600
    assert mode(home / "t" / "session.toml") == 0o600
    assert mode(home / "t" / "checkpoints") == 0o700
