"""The one place a session message becomes words: the console pane, the REPL and the headless printer all say
the same thing the same way (each chooses which messages to show and how to style them)."""

from __future__ import annotations

from labcon.fmt import fmt_duration, fmt_num, fmt_value, format_row
from labcon.session.messages import (
    BatchStats,
    CommandApplied,
    CommandFailed,
    EpochEnded,
    FitEnded,
    FitStarted,
    Log,
    LrFound,
    Message,
    Profiled,
    Progress,
    StateChanged,
    TelemetryUpdated,
)


def describe_progress(p: Progress, show_loss: bool = True) -> str:
    """One line: epoch, phase position, losses, lr, elapsed and eta (no loss before the first one reached the
    host: `show_loss=False`)."""
    lr = fmt_value(p.lrs[-1]) if p.lrs else "?"
    loss = f"  loss {fmt_num(p.loss)} (smooth {fmt_num(p.smooth_loss)})" if show_loss else ""
    return (
        f"epoch {p.epoch} {p.phase} {p.iter}/{p.n_iter}{loss}"
        f"  lr {lr}  {fmt_duration(p.elapsed)} elapsed, eta {fmt_duration(p.eta_fit)}"
    )


def describe(msg: Message) -> str | None:
    """The words for a message; None for the flood (batch stats, telemetry reports) that only plots show."""
    if isinstance(msg, Progress):
        return describe_progress(msg)
    if isinstance(msg, EpochEnded):
        return format_row({"epoch": msg.epoch, **{k: v for k, v in msg.row.items() if k != "epoch"}})
    if isinstance(msg, FitStarted):
        return (
            f"fit started: run {msg.run_id}, {msg.n_epochs} epoch(s) from epoch {msg.epoch_start} "
            f"({msg.n_train} train / {msg.n_valid} valid batches)"
        )
    if isinstance(msg, FitEnded):
        return f"fit {msg.status}" + (f": {msg.reason}" if msg.reason else "")
    if isinstance(msg, StateChanged):
        return f"session is {msg.state}" + (f" ({msg.reason})" if msg.reason else "")
    if isinstance(msg, CommandApplied):
        return f"applied '{msg.text}' at epoch {msg.epoch}, iteration {msg.iter}: {msg.reply}"
    if isinstance(msg, CommandFailed):
        return f"failed '{msg.text}': {msg.error}"
    if isinstance(msg, Log):
        return msg.text if msg.level == "info" else f"{msg.level}: {msg.text}"
    if isinstance(msg, (BatchStats, TelemetryUpdated, LrFound, Profiled)):
        return None  # plots show these; an lr_find's or a profile's words come as a Log line
    return str(msg)
