"""Usage, one-line summaries and option names of every command (drives help and completion)."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass

from labcon.commands.defs import COMMAND_CLASSES
from labcon.errors import CommandError


@dataclass(frozen=True)
class Spec:
    """How a command is written, what it does, and which key= options it takes (None: any)."""

    usage: str
    summary: str
    options: tuple[str, ...] | None = ()
    example: str = ""


SPECS: dict[str, Spec] = {
    "fit": Spec("fit N", "train N more epochs", (), "fit 3"),
    "fit_one_cycle": Spec(
        "fit_one_cycle N [lr=MAX] [pct_start=F]",
        "train N epochs with the one-cycle lr/momentum policy (lr=a,b gives one peak per param group)",
        ("lr", "pct_start"),
        "fit_one_cycle 5 lr=3e-3",
    ),
    "lr_find": Spec(
        "lr_find [start_lr=F] [end_lr=F] [num_it=N]",
        "learning-rate range test; model and optimizer are restored afterwards",
        ("start_lr", "end_lr", "num_it"),
        "lr_find",
    ),
    "profile": Spec(
        "profile [N]",
        "time N training steps (default 20): data, forward, loss, backward, optimizer step and each callback, "
        "with shares; model and optimizer are restored afterwards",
        (),
        "profile 20",
    ),
    "pause": Spec("pause", "pause training at the next batch boundary"),
    "resume": Spec("resume", "resume paused training"),
    "stop": Spec("stop", "stop the running fit at the next batch boundary"),
    "set": Spec(
        "set NAME=VALUE... [group=K]",
        "set hyper-parameters (lr, wd, mom, sqr_mom, eps) in every param group, or group K; lr=a,b sets one per group",
        ("lr", "wd", "mom", "sqr_mom", "eps", "group"),
        "set lr=1e-3 wd=0.01",
    ),
    "opt": Spec(
        "opt NAME [key=value...]",
        "swap the optimizer (adam, sgd, lamb) at the next epoch, carrying matching state and hypers",
        None,
        "opt sgd mom=0.9",
    ),
    "cb add": Spec(
        "cb add NAME|path/to/file.py:ClassName [key=value...]",
        "install a callback from the registry, or your own class from a file",
        None,
        "cb add mixup alpha=0.4",
    ),
    "cb rm": Spec("cb rm NAME", "remove an installed callback", (), "cb rm mixup"),
    "cb list": Spec("cb list", "list installed callbacks with their order"),
    "norm": Spec(
        "norm batch|running|layer|group|instance [key=value...]",
        "replace every normalisation layer with another kind at the next epoch",
        None,
        "norm running",
    ),
    "hooks": Spec("hooks", "list installed hooks (id, module, kind, owner, scope)"),
    "hook add": Spec(
        "hook add MODULE_PATH [kind=forward|backward]",
        "record activation (or gradient) mean/std of a module until removed",
        ("kind",),
        "hook add layers.0 kind=forward",
    ),
    "hook rm": Spec("hook rm ID", "remove a hook by id (see hooks)", (), "hook rm 3"),
    "telemetry": Spec(
        "telemetry [every=K] [layers=a,b] [on|off]",
        "configure telemetry: report every K batches, which module paths, on or off; bare: show settings",
        ("every", "layers"),
        "telemetry every=20 layers=0,1 on",
    ),
    "data summary": Spec("data summary", "describe the data: sizes, classes, transforms"),
    "save": Spec("save [NAME]", "save a checkpoint (optionally named)", (), "save before-swap"),
    "note": Spec("note TEXT...", "write a note into the journal", (), "note lr too high after epoch 3"),
    "journal": Spec("journal QUERY...", "search the journal: runs, notes, commands", (), "journal mixup"),
    "replay": Spec(
        "replay RUN", "re-run a past run with its commands at the same (epoch, iteration)", (), "replay 12"
    ),
    "show loop": Spec("show loop", "which callbacks run at each training event, in order"),
    "status": Spec("status", "state, position, optimizer, hyper-parameters and callbacks"),
    "help": Spec("help [COMMAND]", "this list, or help on one command", (), "help cb add"),
}

# Top-level words, and the words that take a sub-command.
COMMAND_NAMES: tuple[str, ...] = tuple(dict.fromkeys(k.split()[0] for k in SPECS))
SUBCOMMANDS: dict[str, tuple[str, ...]] = {}
for _key in SPECS:
    if " " in _key:
        _top, _sub = _key.split()
        SUBCOMMANDS.setdefault(_top, ())
        SUBCOMMANDS[_top] += (_sub,)


def suggest(word: str, choices: Sequence[str], what: str) -> str:
    """One-line 'unknown X; did you mean Y? available: ...' message."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    hint = f"; did you mean '{close[0]}'?" if close else ";"
    avail = ", ".join(choices) if choices else "(none)"
    label = "commands" if what == "command" else "available"
    return f"unknown {what} '{word}'{hint} {label}: {avail}"


_WHEN_TEXT = {
    "now": "runs at once",
    "batch": "applied at the next batch boundary",
    "epoch": "applied at the next epoch boundary",
    "idle": "starts when nothing is running",
}
_CLASS_BY_KEY = {c.name: c for c in COMMAND_CLASSES}


def help_text(name: str | None = None) -> str:
    """Help on every command (name=None), on one ('set', 'cb add'), or on a group ('cb')."""
    if name is None:
        width = max(len(s.usage) for s in SPECS.values())
        lines = [f"  {s.usage:<{width}}  {s.summary}" for s in SPECS.values()]
        return "commands (help COMMAND for more):\n" + "\n".join(lines)
    name = " ".join(name.split())
    if name in SUBCOMMANDS and name not in SPECS:
        return "\n\n".join(help_text(f"{name} {sub}") for sub in SUBCOMMANDS[name])
    spec = SPECS.get(name)
    if spec is None:
        raise CommandError(suggest(name, COMMAND_NAMES, "command"))
    lines = [f"usage: {spec.usage}", f"  {spec.summary}", f"  ({_WHEN_TEXT[_CLASS_BY_KEY[name].when]})"]
    if spec.example:
        lines.append(f"  example: {spec.example}")
    return "\n".join(lines)
