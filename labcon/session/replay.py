"""Replay: rebuild a journaled run from its config and seed, re-apply its commands at the same points."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace
from typing import Any

from labcon.commands import grammar as C
from labcon.errors import LabconError
from labcon.session.config import parse_config
from labcon.session.fitjobs import ReplayJob, SubmitJob
from labcon.session.journal import Journal
from labcon.session.paths import sessions_home
from labcon.session.session import Session


@dataclass
class ReplayPlan:
    """The commands of a run, split by where they were applied."""

    run_id: int
    idle: list[C.Command] = field(default_factory=list)
    batch: dict[int, list[C.Command]] = field(default_factory=dict)
    epoch: dict[int, list[C.Command]] = field(default_factory=dict)


def plan_replay(journal: Journal, run_id: int, trust_code: bool = False) -> ReplayPlan:
    """Read a run's command events into a ReplayPlan (commands that no longer parse are an error).

    A `cb add file.py:Class` is replayed only with `trust_code` and when the file still has the SHA-256
    journaled when it was added (reading a journal never runs code on its own)."""
    plan = ReplayPlan(run_id)
    for ev in journal.events(run_id, kinds=["command"]):
        try:
            cmd = C.parse(ev["text"])
        except LabconError as e:
            raise LabconError(
                f"run {run_id}: journaled command {ev['text']!r} no longer parses: {e}"
            ) from None
        if not cmd.replay:  # each command declares it (a person looking or saving is not the experiment)
            continue
        if isinstance(cmd, C.CbAdd) and cmd.is_path:
            cmd = _vet_replayed_code(cmd, run_id, (ev.get("data") or {}).get("sha256"), trust_code)
        point = (ev.get("data") or {}).get("point", "idle")
        if point == "batch":
            plan.batch.setdefault(int(ev["iteration"]), []).append(cmd)
        elif point == "epoch":
            plan.epoch.setdefault(int(ev["epoch"]), []).append(cmd)
        else:
            plan.idle.append(cmd)
    return plan


def _vet_replayed_code(cmd: C.CbAdd, run_id: int, journaled: Any, trust_code: bool) -> C.CbAdd:
    from labcon.commands.usercode import code_sha256

    path = cmd.cb.rpartition(":")[0]
    if not trust_code:
        raise LabconError(
            f"run {run_id} added the callback `{cmd.text}`, which runs the code in {path}; replay runs it only "
            "with your consent: pass --trust-code if you wrote that file and trust it"
        )
    if not isinstance(journaled, str):
        raise LabconError(
            f"run {run_id}: `{cmd.text}` has no code hash in the journal (journaled by an older labcon), so "
            f"labcon cannot tell whether {path} is the code that ran; refusing to replay it"
        )
    actual = code_sha256(cmd.cb)
    if actual != journaled:
        raise LabconError(
            f"{path} changed since run {run_id} added it (sha256 now {actual[:12]}..., journaled "
            f"{journaled[:12]}...); refusing to replay it even with --trust-code. Restore the file"
        )
    return replace(cmd, sha256=journaled)


def deviation(original: list[dict[str, Any]], replayed: list[dict[str, Any]]) -> dict[str, float]:
    """Largest absolute difference per metric over the epochs both runs have."""
    out: dict[str, float] = {}
    by_epoch = {int(r["epoch"]): r for r in original}
    for row in replayed:
        orig = by_epoch.get(int(row["epoch"]))
        if orig is None:
            continue
        for k, v in row.items():
            if k in ("epoch", "time") or k not in orig:
                continue
            a, b = orig[k], v
            if (
                isinstance(a, (int, float))
                and isinstance(b, (int, float))
                and math.isfinite(a)
                and math.isfinite(b)
            ):
                out[k] = max(out.get(k, 0.0), abs(a - b))
    return out


def start_replay(
    run: str | int,
    sessions_dir: str | os.PathLike[str] | None = None,
    until: int | None = None,
    then: str | None = None,
    name: str | None = None,
    trust_code: bool = False,
) -> tuple[Session, ReplayPlan]:
    """A new session (linked to the original run) that re-runs it; call session.wait() then report()."""
    home = sessions_home(sessions_dir)
    if then:
        C.check(then)  # a --then that does not parse fails here, before any training
    journal = Journal(home / "journal.db")
    try:
        run_id = journal.resolve_run(str(run))
        info = journal.get_run(run_id)
        plan = plan_replay(journal, run_id, trust_code)
    finally:
        journal.close()
    config = parse_config(info["config"], source=f"journal run {run_id}")
    seed = info.get("seed")
    if seed is not None:
        config = config.replace(seed=int(seed))
    new_name = name or f"{info['session']}-replay{run_id}"
    if (home / new_name).exists():
        raise LabconError(f"session '{new_name}' already exists; pass --session NAME for the replay")
    session = Session(config, home, name=new_name, trust_code=trust_code)
    session.persist.parent_id = run_id
    session.replay_batch, session.replay_epoch = plan.batch, plan.epoch
    session.until_epoch = until
    for cmd in plan.idle:
        session.jobs.put(ReplayJob(cmd))
    if then:
        session.jobs.put(SubmitJob(then))
    return session, plan


def report(session: Session, run_id: int, until: int | None = None) -> dict[str, Any]:
    """How far the replay's epoch metrics are from the original run's (epochs before `until` only: after it
    the replay branched)."""
    journal = Journal(session.home / "journal.db")
    try:
        original = journal.epochs(run_id)
    finally:
        journal.close()
    replayed = [r for r in session.history() if until is None or int(r["epoch"]) < until]
    return {
        "original_run": run_id,
        "replay_run": session.persist.run_id,
        "epochs_compared": len({int(r["epoch"]) for r in replayed} & {int(r["epoch"]) for r in original}),
        "max_abs_deviation": deviation(original, replayed),
    }
