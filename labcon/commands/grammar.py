"""The one command language of labcon: text -> typed command objects, help text, completion, validation.

Used by the TUI console, the REPL, attach, `labcon send` and replay. Nothing is ever eval'd:
text is tokenised shell-style (quotes allowed) and values become ints, floats, bools, strings or
tuples (comma lists).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from labcon.commands.check import CommandContext, StaticContext, complete, validate
from labcon.commands.defs import (
    COMMAND_CLASSES,
    HOOK_KINDS,
    NORM_KINDS,
    WHEN_VALUES,
    CbAdd,
    CbList,
    CbRm,
    Command,
    DataSummary,
    Fit,
    FitOneCycle,
    Help,
    HookAdd,
    HookRm,
    Hooks,
    Journal,
    LrFind,
    Norm,
    Note,
    Opt,
    Opts,
    Pause,
    Profile,
    Replay,
    Resume,
    Save,
    Set,
    ShowLoop,
    Status,
    Stop,
    Telemetry,
)
from labcon.commands.lex import Value, is_key, split_unquoted, tokenize, unquote, value
from labcon.commands.spec import COMMAND_NAMES, SPECS, SUBCOMMANDS, help_text, suggest
from labcon.errors import CommandError

__all__ = [
    "COMMAND_CLASSES",
    "COMMAND_NAMES",
    "HOOK_KINDS",
    "NORM_KINDS",
    "SPECS",
    "WHEN_VALUES",
    "CbAdd",
    "CbList",
    "CbRm",
    "Command",
    "CommandContext",
    "DataSummary",
    "Fit",
    "FitOneCycle",
    "Help",
    "HookAdd",
    "HookRm",
    "Hooks",
    "Journal",
    "LrFind",
    "Norm",
    "Profile",
    "Note",
    "Opt",
    "Pause",
    "Replay",
    "Resume",
    "Save",
    "Set",
    "ShowLoop",
    "StaticContext",
    "Status",
    "Stop",
    "Telemetry",
    "complete",
    "help_text",
    "parse",
    "suggest",
    "validate",
]

# Commands whose argument is the rest of the line, verbatim (apostrophes in notes are fine).
_RAW_REST = {"note": Note, "journal": Journal}


class _Args:
    """Positional and key=value arguments of one command, consumed by its parser."""

    def __init__(self, key: str, raws: list[str]):
        self.key = key
        self.pos: list[str] = []
        self.opts: list[tuple[str, Value]] = []
        self.raw: dict[str, str] = {}
        for raw in raws:
            parts = split_unquoted(raw, "=", maxsplit=1)
            if len(parts) == 2:
                k, quoted = unquote(parts[0])
                if quoted or not is_key(k):
                    raise CommandError(
                        f"bad option name {parts[0]!r} in {key}; write name=value ({_usage(key)})"
                    )
                if any(k == o for o, _ in self.opts):
                    raise CommandError(f"option '{k}' given twice in {key}")
                self.opts.append((k, value(parts[1])))
                self.raw[k] = parts[1]
            else:
                self.pos.append(raw)

    def positional(self, lo: int, hi: int) -> list[str]:
        """The positional words (unquoted), checking there are between lo and hi of them."""
        n = len(self.pos)
        if not lo <= n <= hi:
            want = f"{lo}" if lo == hi else f"{lo} to {hi}"
            raise CommandError(f"{self.key} takes {want} word(s), got {n}: {_usage(self.key)}")
        return [unquote(p)[0] for p in self.pos]

    def allow(self, names: Sequence[str] | None) -> Opts:
        """The options, checking each name is allowed (None: any name)."""
        if names is not None:
            for k, _ in self.opts:
                if k not in names:
                    valid = ", ".join(f"{n}=" for n in names) or "none"
                    raise CommandError(f"unknown option '{k}' for {self.key}; valid: {valid}")
        return tuple(self.opts)


def _usage(key: str) -> str:
    return "usage: " + SPECS[key].usage


def _int(word: str, what: str, key: str, lo: int | None = None) -> int:
    try:
        n = int(word)
    except ValueError:
        raise CommandError(f"{what} must be a whole number, got '{word}': {_usage(key)}") from None
    if lo is not None and n < lo:
        raise CommandError(f"{what} must be at least {lo}, got {n}")
    return n


def _number(v: Value, what: str) -> float | tuple[float, ...]:
    """A float, or a tuple of floats (one per param group)."""
    items = v if isinstance(v, tuple) else (v,)
    for x in items:
        if isinstance(x, bool) or not isinstance(x, (int, float)):
            raise CommandError(f"{what} must be a number (e.g. 1e-3) or a list of numbers, got '{x}'")
    out = tuple(float(x) for x in items)
    return out if isinstance(v, tuple) else out[0]


def _p_fit(a: _Args) -> Command:
    (n,) = a.positional(1, 1) if a.pos else _missing(a.key, "a number of epochs")
    a.allow(())
    return Fit(_int(n, "number of epochs", a.key, lo=1))


def _p_fit_one_cycle(a: _Args) -> Command:
    (n,) = a.positional(1, 1) if a.pos else _missing(a.key, "a number of epochs")
    opts = dict(a.allow(("lr", "pct_start")))
    lr = _number(opts["lr"], "lr") if "lr" in opts else None
    pct = opts.get("pct_start")
    pct = _number(pct, "pct_start") if pct is not None else None
    if isinstance(pct, tuple) or (pct is not None and not 0.0 < pct < 1.0):
        raise CommandError(f"pct_start must be one number between 0 and 1, got {pct}")
    return FitOneCycle(_int(n, "number of epochs", a.key, lo=1), lr, pct)


def _p_lr_find(a: _Args) -> Command:
    a.positional(0, 0)
    opts = a.allow(("start_lr", "end_lr", "num_it"))
    for k, v in opts:
        if k == "num_it" and (isinstance(v, bool) or not isinstance(v, int) or v < 2):
            raise CommandError(f"num_it must be a whole number >= 2, got {v}")
        if k != "num_it":
            f = _number(v, k)
            if isinstance(f, tuple) or f <= 0:
                raise CommandError(f"{k} must be one positive number, got {v}")
    return LrFind(tuple((k, v if k == "num_it" else float(v)) for k, v in opts))  # type: ignore[arg-type]


def _p_profile(a: _Args) -> Command:
    pos = a.positional(0, 1)
    a.allow(())
    return Profile(_int(pos[0], "number of steps", a.key, lo=1)) if pos else Profile()


def _missing(key: str, what: str) -> list[str]:
    raise CommandError(f"{key} needs {what} ({_usage(key)})")


def _no_args(cls: type[Command]) -> Callable[[_Args], Command]:
    def p(a: _Args) -> Command:
        a.positional(0, 0)
        a.allow(())
        return cls()

    return p


def _p_set(a: _Args) -> Command:
    a.positional(0, 0)
    opts = a.allow(None)
    group = None
    values = []
    for k, v in opts:
        if k == "group":
            if isinstance(v, bool) or not isinstance(v, int):
                raise CommandError(f"group must be a whole number (param group index), got '{v}'")
            group = v
        else:
            values.append((k, _number(v, k)))
    if not values:
        raise CommandError(f"set needs at least one name=value: {_usage('set')}")
    if group is not None and any(isinstance(v, tuple) for _, v in values):
        raise CommandError(
            "give either group=K with one value, or a list of values (one per group), not both"
        )
    return Set(tuple(values), group)


def _p_opt(a: _Args) -> Command:
    (name,) = a.positional(1, 1) if a.pos else _missing("opt", "an optimizer name (adam, sgd, lamb)")
    return Opt(name.lower(), a.allow(None))


def _p_cb_add(a: _Args) -> Command:
    (name,) = (
        a.positional(1, 1) if a.pos else _missing("cb add", "a callback name or path/to/file.py:ClassName")
    )
    if ":" in name:
        path, _, cls = name.rpartition(":")
        if not path.endswith(".py") or not cls.isidentifier():
            raise CommandError(f"'{name}' is not path/to/file.py:ClassName")
    return CbAdd(name, a.allow(None))


def _p_cb_rm(a: _Args) -> Command:
    (name,) = a.positional(1, 1) if a.pos else _missing("cb rm", "a callback name (see cb list)")
    a.allow(())
    return CbRm(name)


def _p_norm(a: _Args) -> Command:
    (kind,) = a.positional(1, 1) if a.pos else _missing("norm", "a kind: " + ", ".join(NORM_KINDS))
    if kind not in NORM_KINDS:
        raise CommandError(suggest(kind, NORM_KINDS, "norm kind"))
    return Norm(kind, a.allow(None))


def _p_hook_add(a: _Args) -> Command:
    (module,) = a.positional(1, 1) if a.pos else _missing("hook add", "a module path (e.g. layers.0.conv)")
    kind = dict(a.allow(("kind",))).get("kind", "forward")
    if kind not in HOOK_KINDS:
        raise CommandError(f"hook kind must be forward or backward, got '{kind}'")
    return HookAdd(module, str(kind))


def _p_hook_rm(a: _Args) -> Command:
    (hid,) = a.positional(1, 1) if a.pos else _missing("hook rm", "a hook id (see hooks)")
    a.allow(())
    return HookRm(_int(hid, "hook id", "hook rm", lo=0))


def _p_telemetry(a: _Args) -> Command:
    words = a.positional(0, 1)
    opts = dict(a.allow(("every", "layers")))
    on = None
    if words:
        if words[0] not in ("on", "off"):
            raise CommandError(f"telemetry takes on or off, got '{words[0]}': {_usage('telemetry')}")
        on = words[0] == "on"
    every = opts.get("every")
    if every is not None and (isinstance(every, bool) or not isinstance(every, int) or every < 1):
        raise CommandError(f"every must be a whole number >= 1, got '{every}'")
    layers = None
    if "layers" in a.raw:
        # Module paths stay text ('1.10' is not the number 1.1): split the raw value ourselves.
        items = split_unquoted(a.raw["layers"], ",")
        if items[-1] == "" and len(items) > 1:
            items.pop()
        layers = tuple(unquote(x)[0] for x in items)
        if any(x == "" for x in layers):
            raise CommandError("layers must be module paths separated by commas (e.g. layers=0,1.conv)")
    return Telemetry(every, layers, on)


def _p_save(a: _Args) -> Command:
    words = a.positional(0, 1)
    a.allow(())
    return Save(words[0] if words else None)


def _p_replay(a: _Args) -> Command:
    (run,) = a.positional(1, 1) if a.pos else _missing("replay", "a run id (see journal)")
    a.allow(())
    return Replay(run)


def _p_help(a: _Args) -> Command:
    a.allow(())
    words = [unquote(p)[0] for p in a.pos]
    if not words:
        return Help()
    topic = " ".join(words)
    if topic not in SPECS and topic not in SUBCOMMANDS:
        if words[0] in SUBCOMMANDS and len(words) == 2:
            raise CommandError(suggest(words[1], SUBCOMMANDS[words[0]], f"{words[0]} sub-command"))
        raise CommandError(suggest(topic, COMMAND_NAMES, "command"))
    return Help(topic)


_PARSERS: dict[str, Callable[[_Args], Command]] = {
    "fit": _p_fit,
    "fit_one_cycle": _p_fit_one_cycle,
    "lr_find": _p_lr_find,
    "profile": _p_profile,
    "pause": _no_args(Pause),
    "resume": _no_args(Resume),
    "stop": _no_args(Stop),
    "set": _p_set,
    "opt": _p_opt,
    "cb add": _p_cb_add,
    "cb rm": _p_cb_rm,
    "cb list": _no_args(CbList),
    "norm": _p_norm,
    "hooks": _no_args(Hooks),
    "hook add": _p_hook_add,
    "hook rm": _p_hook_rm,
    "telemetry": _p_telemetry,
    "data summary": _no_args(DataSummary),
    "save": _p_save,
    "replay": _p_replay,
    "show loop": _no_args(ShowLoop),
    "status": _no_args(Status),
    "help": _p_help,
}


def parse(text: str) -> Command:
    """Parse one command line into a typed Command; raises CommandError (one line) when it is invalid."""
    if not isinstance(text, str):
        raise CommandError(f"a command must be text, got {type(text).__name__}")
    stripped = text.strip()
    if not stripped:
        raise CommandError("empty command; type help for the list of commands")
    head_rest = stripped.split(None, 1)
    if head_rest[0] in _RAW_REST:
        return _raw_rest(head_rest[0], head_rest[1] if len(head_rest) > 1 else "")
    tokens = tokenize(stripped)
    word = unquote(tokens[0])[0]
    if word in _RAW_REST:
        return _raw_rest(word, " ".join(tokens[1:]))
    if word not in COMMAND_NAMES:
        raise CommandError(suggest(word, COMMAND_NAMES, "command"))
    rest = tokens[1:]
    if word in SUBCOMMANDS:
        subs = SUBCOMMANDS[word]
        if not rest:
            raise CommandError(
                f"{word} needs a sub-command: {', '.join(subs)} (e.g. {SPECS[f'{word} {subs[0]}'].usage})"
            )
        sub = unquote(rest[0])[0]
        if sub not in subs:
            raise CommandError(suggest(sub, subs, f"{word} sub-command"))
        word, rest = f"{word} {sub}", rest[1:]
    return _PARSERS[word](_Args(word, rest))


def _raw_rest(word: str, rest: str) -> Command:
    rest = rest.strip()
    if not rest:
        raise CommandError(f"{word} needs text ({_usage(word)})")
    return _RAW_REST[word](rest)
