"""Replay: rebuild a journaled run from its config and seed, re-apply its commands at the same points; branch.

A run continues the session's runs before it (its lineage), so a replay re-applies the commands of the whole
lineage. A branch (`until` + `then`) replays up to the end of epoch `until - 1`, applies `then` there and
trains on to the original length (or `epochs`); its epoch metrics minus the parent's after the branch point
are reported and journaled on the branch's run.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field, replace
from typing import Any

from labcon.commands import grammar as C
from labcon.errors import CommandError, LabconError
from labcon.session.config import parse_config
from labcon.session.deviation import Branch, epoch_deltas, max_deviation
from labcon.session.fitjobs import BranchJob, ReplayJob
from labcon.session.journal import Journal
from labcon.session.paths import sessions_home
from labcon.session.session import Session

# What a branch's --then may not be: it must change training, and replay itself starts a new session.
_NOT_A_BRANCH = (C.Pause, C.Resume, C.Stop, C.Save, C.Note, C.Replay)
_FITS = (C.Fit, C.FitOneCycle)


@dataclass(frozen=True)
class Step:
    """One journaled command: where it was applied (idle | batch | epoch) and at which (epoch, iteration)."""

    point: str
    epoch: int
    iteration: int
    cmd: C.Command


@dataclass
class ReplayPlan:
    """The commands of a run's lineage in order, and the epochs its lineage trained."""

    run_id: int
    lineage: list[int] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    epochs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def length(self) -> int:
        """Epochs the original trained (its last epoch + 1)."""
        return max((int(r["epoch"]) for r in self.epochs), default=-1) + 1

    @property
    def idle(self) -> list[C.Command]:
        """Commands applied between fits (fits included), in order."""
        return [s.cmd for s in self.steps if s.point == "idle"]

    @property
    def batch(self) -> dict[int, list[C.Command]]:
        """Commands applied before a training batch, by train_iter."""
        out: dict[int, list[C.Command]] = {}
        for s in self.steps:
            if s.point == "batch":
                out.setdefault(s.iteration, []).append(s.cmd)
        return out

    @property
    def epoch(self) -> dict[int, list[C.Command]]:
        """Commands applied at an epoch's end, by epoch."""
        out: dict[int, list[C.Command]] = {}
        for s in self.steps:
            if s.point == "epoch":
                out.setdefault(s.epoch, []).append(s.cmd)
        return out

    def before(self, epoch: int) -> ReplayPlan:
        """The plan a branch after `epoch` epochs keeps: everything up to the branch point, and only the
        fits after it (they set the original length); the parent's later tweaks are the parent's."""
        kept = [s for s in self.steps if s.epoch < epoch or (s.point == "idle" and isinstance(s.cmd, _FITS))]
        return ReplayPlan(self.run_id, self.lineage, kept, self.epochs)


def plan_replay(journal: Journal, run_id: int, trust_code: bool = False) -> ReplayPlan:
    """Read the command events of a run's lineage into a ReplayPlan (commands that no longer parse: an error).

    A `cb add file.py:Class` is replayed only with `trust_code` and when the file still has the SHA-256
    journaled when it was added (reading a journal never runs code on its own)."""
    plan = ReplayPlan(run_id, journal.lineage(run_id))
    for rid in plan.lineage:
        plan.epochs += journal.epochs(rid)
        for ev in journal.events(rid, kinds=["command"]):
            try:
                cmd = C.parse(ev["text"])
            except LabconError as e:
                raise LabconError(
                    f"run {rid}: journaled command {ev['text']!r} no longer parses: {e}"
                ) from None
            if not cmd.replay:  # each command declares it (a person looking or saving is not the experiment)
                continue
            if isinstance(cmd, C.CbAdd) and cmd.is_path:
                cmd = _vet_replayed_code(cmd, rid, (ev.get("data") or {}).get("sha256"), trust_code)
            point = (ev.get("data") or {}).get("point", "idle")
            plan.steps.append(Step(point, int(ev["epoch"] or 0), int(ev["iteration"] or 0), cmd))
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
    return max_deviation(original, replayed)


def _check_args(until: int | None, then: str | None, epochs: int | None) -> C.Command | None:
    """The parsed --then command; errors for arguments that cannot work (before anything is built)."""
    if until is not None and until < 1:
        raise LabconError(f"--until {until}: give the number of epochs to replay (1 or more)")
    if then is None:
        if epochs is not None:
            raise LabconError('--epochs sets a branch\'s length: use it with --until N --then "COMMAND"')
        return None
    if until is None:
        raise LabconError(
            '--then needs --until N: the branch starts after epoch N, e.g. --until 1 --then "set lr=1e-3"'
        )
    try:
        cmd = C.check(then)  # parsed with no live session: a bad --then fails before anything is built
    except CommandError as e:
        raise CommandError(f"--then {then!r}: {e}") from None
    if isinstance(cmd, _NOT_A_BRANCH) or cmd.when == "now":
        raise LabconError(
            f'--then {then!r} does not change training: give a command such as "set lr=1e-3", "opt sgd", '
            '"cb add mixup" or "fit 2"'
        )
    if epochs is not None:
        if cmd.when == "idle":
            raise LabconError(f"--epochs does not apply to --then {then!r}: that command sets its own length")
        if epochs <= until:
            raise LabconError(f"--epochs {epochs} must be more than --until {until} (the branch point)")
    return cmd


def start_replay(
    run: str | int,
    sessions_dir: str | os.PathLike[str] | None = None,
    until: int | None = None,
    then: str | None = None,
    name: str | None = None,
    epochs: int | None = None,
    trust_code: bool = False,
) -> tuple[Session, ReplayPlan]:
    """A new session (linked to the original run) that re-runs it; call session.wait() then report()."""
    then_cmd = _check_args(until, then, epochs)
    home = sessions_home(sessions_dir)
    journal = Journal(home / "journal.db")
    try:
        run_id = journal.resolve_run(str(run))
        info = journal.get_run(run_id)
        plan = plan_replay(journal, run_id, trust_code)
    finally:
        journal.close()
    if until is not None and until > plan.length:
        raise LabconError(
            f"--until {until}: run {run_id} trained {plan.length} epoch(s); give at most {plan.length}"
        )
    target = epochs or plan.length
    if then_cmd is not None and then_cmd.when != "idle" and until >= target:
        raise LabconError(
            f"--until {until} leaves nothing to train after the branch (run {run_id} trained {plan.length} "
            f"epoch(s)): give a smaller --until, or --epochs N with N > {until}"
        )
    config = parse_config(info["config"], source=f"journal run {run_id}")
    seed = info.get("seed")
    if seed is not None:
        config = config.replace(seed=int(seed))
    new_name = name or f"{info['session']}-replay{run_id}"
    if (home / new_name / "session.toml").exists():  # a folder holding only a replay's log is free
        raise LabconError(f"session '{new_name}' already exists; pass --session NAME for the replay")
    session = Session(config, home, name=new_name, trust_code=trust_code)
    try:
        if then_cmd is not None:
            then_cmd = C.validate(then_cmd, session.context())
    except (CommandError, LabconError, ValueError, KeyError, TypeError, IndexError) as e:
        session.close()
        shutil.rmtree(home / new_name, ignore_errors=True)  # made just now, for this replay only
        raise LabconError(f"--then {then!r}: {str(e).strip(chr(39) + chr(34))}") from None
    _schedule(session, plan, until, then_cmd, target)
    return session, plan


def _schedule(
    session: Session, plan: ReplayPlan, until: int | None, then: C.Command | None, target: int
) -> None:
    """Hand the replay's commands to the session: idle ones as jobs, the others at their safe points."""
    session.persist.parent_id = plan.run_id
    replay = session.run_state.replay
    if then is not None and then.when != "idle":
        assert until is not None
        plan = plan.before(until)
        replay.epoch = plan.epoch
        replay.epoch.setdefault(until - 1, []).append(then)  # applied where the parent's epoch until-1 ended
        replay.until = target if target < plan.length else None
    else:
        replay.epoch = plan.epoch
        replay.until = until
    replay.batch = plan.batch
    if then is not None:
        session.persist.branch = Branch(plan.run_id, until or 0, then.text, tuple(plan.epochs))
    for cmd in plan.idle:
        session.jobs.put(ReplayJob(cmd))
    if then is not None and then.when == "idle":
        session.jobs.put(BranchJob(then))
    elif then is not None and target > plan.length:
        session.jobs.put(ReplayJob(C.Fit(target - plan.length)))  # the branch trains on past the original


def report(session: Session, run_id: int, until: int | None = None) -> dict[str, Any]:
    """The replay against the original: max deviation per metric before `until` (where a replay should match),
    and for a branch, per-epoch metric deltas (branch minus parent) from the branch point on."""
    journal = Journal(session.home / "journal.db")
    try:
        original: list[dict[str, Any]] = []
        for rid in journal.lineage(run_id):
            original += journal.epochs(rid)
    finally:
        journal.close()
    history = session.history()
    replayed = [r for r in history if until is None or int(r["epoch"]) < until]
    out: dict[str, Any] = {
        "original_run": run_id,
        "replay_run": session.persist.run_id,
        "epochs_compared": len({int(r["epoch"]) for r in replayed} & {int(r["epoch"]) for r in original}),
        "max_abs_deviation": max_deviation(original, replayed),
        "branch": None,
    }
    b = session.persist.branch
    if b is not None:
        out["branch"] = {
            "after_epoch": b.after_epoch,
            "then": b.then,
            "epochs_trained": len(history),
            "deltas": epoch_deltas(original, history, after=b.after_epoch),
        }
    return out
