"""Small, plain-value messages a Session sends to its front ends (never tensors)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Message:
    """Base class of everything a session publishes."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, with the message type under 'type'."""
        return {"type": type(self).__name__, **dataclasses.asdict(self)}


@dataclass(frozen=True)
class FitStarted(Message):
    """A fit began: how many epochs from which epoch, and batches per phase."""

    run_id: int
    epoch_start: int
    n_epochs: int
    n_train: int
    n_valid: int


@dataclass(frozen=True)
class Progress(Message):
    """Latest training position and losses; merged so the UI only sees the newest."""

    epoch: int
    phase: str  # "train" | "valid"
    iter: int  # batches done in this phase (1..n_iter)
    n_iter: int
    train_iter: int
    loss: float
    smooth_loss: float
    lrs: tuple[float, ...]
    moms: tuple[float, ...]
    elapsed: float
    eta_epoch: float
    eta_fit: float


@dataclass(frozen=True)
class BatchStats(Message):
    """Per-batch history since the last message: loss, smoothed loss, lr, mom (for live plots)."""

    start_iter: int
    losses: tuple[float, ...]
    smooth_losses: tuple[float, ...]
    lrs: tuple[float, ...]
    moms: tuple[float, ...]


@dataclass(frozen=True)
class EpochEnded(Message):
    """One row of the epoch table: epoch, train_loss, valid_loss, metrics..., time."""

    epoch: int
    row: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class FitEnded(Message):
    """A fit finished: status is done | stopped | cancelled | failed."""

    status: str
    reason: str = ""


# States in which a fit is under way (quitting asks about it; a process serving one stays up).
LIVE_STATES: tuple[str, ...] = ("running", "paused", "stopping")


@dataclass(frozen=True)
class StateChanged(Message):
    """The session's state: idle | running | paused | stopping."""

    state: str
    reason: str = ""


@dataclass(frozen=True)
class CommandApplied(Message):
    """A queued command took effect at (epoch, iter)."""

    text: str
    epoch: int
    iter: int
    reply: str


@dataclass(frozen=True)
class CommandFailed(Message):
    """A command was refused or failed when applied."""

    text: str
    error: str


@dataclass(frozen=True)
class LrFound(Message):
    """An lr_find finished: the lrs tried, the smoothed losses seen, and the suggested lrs."""

    lrs: tuple[float, ...]
    losses: tuple[float, ...]
    suggestion: float
    valley: float
    steepest: float


@dataclass(frozen=True)
class Profiled(Message):
    """A `profile N` finished: its figures as plain values (ProfileReport.as_dict(): parts, shares, overhead)."""

    report: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TelemetryUpdated(Message):
    """New telemetry reached the host; read it with session.telemetry_snapshot()."""

    train_iter: int


@dataclass(frozen=True)
class Log(Message):
    """A line for the console log: level is info | warning | error."""

    level: str
    text: str


MESSAGE_TYPES: dict[str, type[Message]] = {
    cls.__name__: cls
    for cls in (
        FitStarted,
        Progress,
        BatchStats,
        EpochEnded,
        FitEnded,
        StateChanged,
        CommandApplied,
        CommandFailed,
        LrFound,
        Profiled,
        TelemetryUpdated,
        Log,
    )
}


def message_from_dict(d: dict[str, Any]) -> Message:
    """Rebuild a message from `to_dict()` output (used by attach clients); raises ValueError if unknown."""
    d = dict(d)
    kind = d.pop("type", None)
    cls = MESSAGE_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ValueError(f"unknown message type {kind!r}")
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in names}
    return cls(**kwargs)
