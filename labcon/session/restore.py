"""Resuming from checkpoints without trusting them: never run code they name, fall back loudly past bad ones."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from labcon.commands import grammar as C
from labcon.commands.usercode import code_path, code_sha256
from labcon.errors import CheckpointError, LabconError
from labcon.session.checkpoint import list_checkpoints, load_checkpoint, quarantine
from labcon.session.safety import check_private

if TYPE_CHECKING:
    from labcon.session.persist import Persistence

TRUST_FLAG = "--trust-code"


class UntrustedCodeError(CheckpointError):
    """Restoring would run a user file's code without consent, or a file that changed since it was added."""


def structural_commands(persist: Persistence, texts: list[str], source: str) -> list[C.Command]:
    """Parse a checkpoint's (or a journal's) structural commands; a user-code `cb add` is only let through
    with the user's consent and when the file still hashes to what the journal recorded when it was added."""
    out = []
    for text in texts:
        try:
            cmd = C.parse(str(text))
        except LabconError as e:
            raise CheckpointError(f"{source} holds a command that does not parse ({text!r}: {e})") from None
        if isinstance(cmd, C.CbAdd) and cmd.is_path:
            cmd = replace(cmd, sha256=vet_user_code(persist, cmd, source))
        out.append(cmd)
    return out


def vet_user_code(persist: Persistence, cmd: C.CbAdd, source: str) -> str:
    """The journaled SHA-256 a user callback file must have to be re-run; UntrustedCodeError otherwise."""
    spec = cmd.cb
    try:
        path: Path | str = code_path(spec)
    except LabconError:
        path = spec.rpartition(":")[0]
    session = persist.s
    if not session.trust_code:
        raise UntrustedCodeError(
            f"{source} re-adds the callback `{cmd.text}`, which runs the code in {path}; labcon never runs code "
            f"named by a checkpoint or journal unless you say so. If you wrote {path} and trust it, pass "
            f"{TRUST_FLAG} (e.g. `labcon resume {session.name} {TRUST_FLAG}`)"
        )
    journaled = persist.journal.code_digests(session.name, cmd.text)
    if not journaled:
        raise UntrustedCodeError(
            f"{source} re-adds the callback `{cmd.text}` ({path}), but this session's journal never recorded "
            "adding it; refusing to run that file even with --trust-code (the checkpoint may have been planted)"
        )
    try:
        actual = code_sha256(spec)
    except LabconError as e:
        raise UntrustedCodeError(f"{source} re-adds the callback `{cmd.text}`: {e}") from None
    if actual not in journaled:
        raise UntrustedCodeError(
            f"{path} changed since `{cmd.text}` was added (sha256 now {actual[:12]}..., journaled "
            f"{sorted(journaled)[0][:12]}...); refusing to run it even with {TRUST_FLAG}. Restore the file, or "
            "start a new session name"
        )
    return actual


def restore_latest(persist: Persistence) -> Path | None:
    """Load the newest checkpoint that loads and fits; say (and journal) every one skipped on the way.

    A file that does not load (truncated, flipped bytes) is moved aside as *.bad so it never holds a rotation
    slot; one that loads but does not fit the model is kept (the config may be what changed)."""
    d = persist.ckpt_dir
    check_private(d, "checkpoints folder")
    ckpts = list_checkpoints(d)
    if not ckpts:
        return None
    problems: list[str] = []
    for p in reversed(ckpts):
        check_private(p, "checkpoint")
        try:
            state = load_checkpoint(p)
        except CheckpointError as e:
            bad = quarantine(p)
            problems.append(f"{e} (moved aside as {bad.name})")
            continue
        try:
            persist.load_state(state, p)
        except UntrustedCodeError:
            raise
        except CheckpointError as e:
            if state.get("structural"):
                raise  # its commands changed the model already: an older checkpoint would not load cleanly
            problems.append(str(e))
            continue
        _report(
            persist, [f"{msg}; resumed from the previous checkpoint {p.name} instead" for msg in problems]
        )
        persist.restored_from = p
        return p
    raise CheckpointError(
        f"no usable checkpoint in {d}: "
        + "; ".join(x.rstrip(".") for x in problems)
        + f". Nothing to resume from: `labcon run {persist.s.dir / 'session.toml'}` trains the session again "
        "from the start"
    )


def _report(persist: Persistence, lines: list[str]) -> None:
    """Publish and journal each fallback, and keep them for front ends that subscribe after the restore."""
    from labcon.session.messages import Log

    for line in lines:
        persist.notices.append(line)
        persist.s.publish(Log(level="warning", text=line))
        persist.log("error", line)
