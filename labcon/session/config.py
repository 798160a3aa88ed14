"""A session's TOML config, validated into typed dataclasses with file:line error messages."""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labcon.core.callbacks.schedule import check_schedule_text
from labcon.core.hypers import RULES, HyperParamError, check_hyper
from labcon.errors import ConfigError, LabconError
from labcon.session.paths import validate_session_name
from labcon.session.toml_io import (  # dump_toml and dump_value are re-exported from here
    KeyPath,
    _line_of,
    _Locator,
    _split_path,
    dump_toml,
    dump_value,
)

ARCHS = ("simple_cnn", "xresnet18", "xresnet34", "xresnet50", "awd_lstm")
NORMS = ("batch", "running", "layer", "group", "instance")
INITS = ("kaiming", "lsuv", "default")
OPTS = ("adam", "sgd", "lamb")
SCHEDULES = ("one_cycle", "constant")
LOSSES = ("cross_entropy", "label_smoothing", "bce")


def _splitter_names() -> tuple[str, ...]:
    """Every registered splitter (models outside labcon.nn register theirs in SPLITTERS)."""
    from labcon.nn.transfer import SPLITTERS

    return tuple(SPLITTERS)


PRECISIONS = ("fp32", "bf16", "fp16")
DEFAULT_CHANNELS = (16, 32, 64, 64)
_DEVICE_RE = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")


def check_session_name(name: str) -> str:
    """Return `name` when it is a safe session name (the rule of labcon.session.paths), else raise ConfigError."""
    try:
        return validate_session_name(name)
    except LabconError as e:
        raise ConfigError(str(e)) from None


@dataclass(frozen=True)
class DataConfig:
    """The [data] table, kept raw: `DataBlock.from_config(raw, base_dir)` validates it."""

    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelConfig:
    """The [model] table: architecture, normalisation, initialisation, activation and transfer learning."""

    arch: str = "simple_cnn"
    norm: str = "batch"
    init: str = "kaiming"
    channels: tuple[int, ...] = DEFAULT_CHANNELS
    groups: int | None = None  # GroupNorm groups (norm = "group" only; default GROUPNORM_DEFAULT)
    leak: float | None = None  # GeneralRelu: leaky slope, value subtracted, clamp maximum
    sub: float | None = None
    maxv: float | None = None
    splitter: str | None = None  # parameter groups for freezing / discriminative lrs (a SPLITTERS name)
    body: str | None = None  # load the body from this session's (or checkpoint file's) weights, new head
    head_dropout: float | None = None  # dropout of the course head added with body (default 0.5)
    # AWD-LSTM (text data): sizes, dropout scale, and a language model's saved encoder (ULMFiT).
    emb_sz: int | None = None
    n_hid: int | None = None
    n_layers: int | None = None
    drop_mult: float | None = None
    encoder: str | None = None


@dataclass(frozen=True)
class TrainConfig:
    """The [train] table: epochs, optimiser, schedule, loss, metrics, precision and device."""

    epochs: int = 5
    lr: float = 1e-2
    opt: str = "adam"
    wd: float = 0.0
    mom: float | None = None
    # "one_cycle" | "constant", or a [train.schedule] table as (name, schedule text) pairs.
    schedule: str | tuple[tuple[str, str], ...] = "one_cycle"
    loss: str = "cross_entropy"
    smoothing: float | None = None  # label smoothing eps (loss = "label_smoothing"; default 0.1)
    metrics: tuple[str, ...] = ("accuracy",)
    precision: str = "fp32"
    grad_clip: float | None = None
    grad_accum: int | None = None
    device: str = "auto"
    channels_last: bool = False
    compile: bool = False


@dataclass(frozen=True)
class TelemetryConfig:
    """The [telemetry] table: how often layer statistics are taken and which layers."""

    enabled: bool = True
    every: int = 20
    sample_every: int = 4
    layers: tuple[str, ...] = ()


@dataclass(frozen=True)
class CallbackConfig:
    """One [[callbacks]] entry: the callback's name and its parameters."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)


_SECTIONS = {"model": ModelConfig, "train": TrainConfig, "telemetry": TelemetryConfig}
_TOP_KEYS = ("name", "seed", "data", "model", "train", "telemetry", "callbacks")


@dataclass(frozen=True)
class Config:
    """A whole session config; `source`/`base_dir`/line map are context, not part of equality."""

    name: str = "baseline"
    seed: int = 42
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    telemetry: TelemetryConfig = field(default_factory=TelemetryConfig)
    callbacks: tuple[CallbackConfig, ...] = ()
    source: str = field(default="<string>", compare=False, repr=False)
    base_dir: Path = field(default_factory=lambda: Path("."), compare=False, repr=False)
    lines: dict[KeyPath, int] = field(default_factory=dict, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The config as the plain nested dict its TOML file holds (defaults included)."""
        out: dict[str, Any] = {"name": self.name, "seed": self.seed, "data": copy.deepcopy(self.data.raw)}
        for sec in _SECTIONS:
            d = {
                k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(getattr(self, sec)).items()
            }
            if sec == "train" and isinstance(getattr(self, sec).schedule, tuple):
                d["schedule"] = dict(self.train.schedule)
            out[sec] = {k: v for k, v in d.items() if v is not None}
        if self.model.arch != "simple_cnn":
            del out["model"]["channels"]
        if self.callbacks:
            out["callbacks"] = [{"name": c.name, **copy.deepcopy(c.params)} for c in self.callbacks]
        return out

    def to_toml(self) -> str:
        """TOML text that parses back to an equal Config."""
        return dump_toml(self.to_dict())

    def replace(self, **changes: Any) -> Config:
        """A validated copy with top-level fields changed; a section may be given as a dict of its changes."""
        d = self.to_dict()
        for key, value in changes.items():
            if key not in _TOP_KEYS:
                raise ConfigError(f"unknown config field {key!r}{_suggest(key, _TOP_KEYS)}")
            if isinstance(value, dict) and key in _SECTIONS:
                if key == "model" and "arch" in value and "channels" not in value:
                    d["model"].pop("channels", None)
                d[key].update({k: list(v) if isinstance(v, tuple) else v for k, v in value.items()})
            elif isinstance(value, DataConfig):
                d["data"] = copy.deepcopy(value.raw)
            elif key in _SECTIONS and dataclasses.is_dataclass(value):
                d[key] = Config(**{key: value}).to_dict()[key]
            elif key == "callbacks":
                d["callbacks"] = [
                    {"name": c.name, **c.params} if isinstance(c, CallbackConfig) else dict(c) for c in value
                ]
            else:
                d[key] = value
        return config_from_dict(d, source=self.source, base_dir=self.base_dir)

    def locate(self, key_path: str | KeyPath) -> str | None:
        """'file:line' of a key path such as 'train.lr' or 'data.tfms[0].size', or None if unknown."""
        path = _split_path(key_path) if isinstance(key_path, str) else tuple(key_path)
        line = _line_of(self.lines, path)
        return f"{self.source}:{line}" if line else None


def load_config(path: str | Path) -> Config:
    """Read and validate a TOML session config file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {p} not found; check the path (or omit it for the default)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read config file {p}: {e}; it must be UTF-8 TOML text") from None
    return parse_config(text, source=str(p), base_dir=p.parent)


def parse_config(text: str, source: str = "<string>", base_dir: str | Path | None = None) -> Config:
    """Parse and validate TOML text; errors name `source`:line and the fix."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        msg = str(e)
        m = re.search(r"\s*\(at line (\d+), column (\d+)\)$", msg)
        where = f"{source}:{m.group(1)}:{m.group(2)}" if m else source
        msg = msg[: m.start()] if m else msg
        raise ConfigError(f"{where}: invalid TOML: {msg}; fix the syntax there") from None
    try:
        lines = _Locator(text).run()
    except (IndexError, ValueError, tomllib.TOMLDecodeError):
        lines = {}  # line numbers are best effort; the content was valid TOML
    return config_from_dict(raw, source=source, base_dir=base_dir, lines=lines)


def config_from_dict(
    raw: dict[str, Any],
    source: str = "<dict>",
    base_dir: str | Path | None = None,
    lines: dict[KeyPath, int] | None = None,
) -> Config:
    """Validate a plain nested dict (the shape of the TOML file) into a Config."""
    v = _Validator(source, lines or {})
    v.keys(raw, (), _TOP_KEYS)
    sections: dict[str, Any] = {}
    for sec, cls in _SECTIONS.items():
        table = v.table(raw.get(sec, {}), (sec,))
        v.keys(table, (sec,), [f.name for f in dataclasses.fields(cls)])
        sections[sec] = cls(**{k: _FIELDS[sec][k](v, table[k], (sec, k)) for k in table})
    model = sections["model"]
    if model.arch != "simple_cnn" and model.channels != DEFAULT_CHANNELS:
        v.fail(
            ("model", "channels"), f"applies only to arch = 'simple_cnn' (arch is {model.arch!r}); remove it"
        )
    if model.groups is not None and model.norm != "group":
        v.fail(("model", "groups"), f"applies only to norm = 'group' (norm is {model.norm!r}); remove it")
    if model.head_dropout is not None and model.body is None:
        v.fail(("model", "head_dropout"), "applies only with body = '...' (the new head it adds); remove it")
    if sections["train"].smoothing is not None and sections["train"].loss != "label_smoothing":
        v.fail(("train", "smoothing"), "applies only to loss = 'label_smoothing'; remove it or set that loss")
    cbs = raw.get("callbacks", [])
    if not isinstance(cbs, list) or not all(isinstance(c, dict) for c in cbs):
        v.fail(("callbacks",), f"expected [[callbacks]] tables with a name, got {_show(cbs)}")
    callbacks = []
    for i, c in enumerate(cbs):
        if not isinstance(c.get("name"), str) or not c["name"].strip():
            v.fail(("callbacks", i), 'each [[callbacks]] entry needs name = "..." (e.g. name = "mixup")')
        callbacks.append(CallbackConfig(c["name"], {k: val for k, val in c.items() if k != "name"}))
    name = v.str_(raw.get("name", "baseline"), ("name",))
    try:
        check_session_name(name)
    except ConfigError as e:
        v.fail(("name",), str(e))
    config = Config(
        name=name,
        seed=v.int_(raw.get("seed", 42), ("seed",), lo=0, hi=2**32 - 1),
        data=DataConfig(copy.deepcopy(v.table(raw.get("data", {}), ("data",)))),
        callbacks=tuple(callbacks),
        source=source,
        base_dir=Path(base_dir) if base_dir is not None else Path("."),
        lines=dict(lines or {}),
        **sections,
    )
    from labcon.session.config_checks import check_config

    check_config(config)
    return config


def add_location(message: str | BaseException, config: Config) -> ConfigError:
    """Turn 'data.<key path>: problem' (e.g. from DataBlock.from_config) into an error naming file:line."""
    text = str(message)
    m = re.match(r"^([A-Za-z_][\w-]*(?:\.[\w-]+|\[\d+\])*):\s*(.*)$", text, re.S)
    if not m:
        return ConfigError(f"{config.source}: {text}")
    where = config.locate(m.group(1))
    return ConfigError(
        f"{m.group(1)} at {where}: {m.group(2)}"
        if where
        else f"{m.group(1)} in {config.source}: {m.group(2)}"
    )


def _suggest(key: str, valid: Any, label: str = "") -> str:
    close = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    if label:
        hint += f"{' ' if close else '; '}{label}: {', '.join(valid)}"
    return hint


def _show(v: Any) -> str:
    if isinstance(v, bool):
        return f"{str(v).lower()} (a boolean)"
    if isinstance(v, dict):
        return "a table"
    if isinstance(v, list):
        return f"an array {dump_value(v)}" if len(repr(v)) < 40 else "an array"
    return repr(v)


class _Validator:
    """Type and range checks that raise ConfigError naming the key path, file and line."""

    def __init__(self, source: str, lines: dict[KeyPath, int]):
        self.source, self.lines = source, lines

    def fail(self, path: KeyPath, problem: str) -> None:
        name = ".".join(str(p) for p in path)
        line = _line_of(self.lines, path)
        raise ConfigError(
            f"{name} at {self.source}:{line}: {problem}" if line else f"{name} in {self.source}: {problem}"
        )

    def keys(self, table: dict[str, Any], path: KeyPath, valid: Any) -> None:
        for key in table:
            if key not in valid:
                line = _line_of(self.lines, (*path, key))
                where = f"[{'.'.join(map(str, path))}]" if path else "the top level"
                at = f" at {self.source}:{line}" if line else f" in {self.source}"
                raise ConfigError(f"unknown key {key!r} in {where}{at}{_suggest(key, valid, 'valid keys')}")

    def table(self, v: Any, path: KeyPath) -> dict[str, Any]:
        if not isinstance(v, dict):
            self.fail(path, f"expected a table [{'.'.join(map(str, path))}], got {_show(v)}")
        return v

    def num(
        self, v: Any, path: KeyPath, gt: float | None = None, ge: float | None = None, le: float | None = None
    ) -> float:
        if isinstance(v, bool) or not isinstance(v, int | float):
            self.fail(path, f"expected a number, got {_show(v)}")
        bounds = [
            (gt, ">", v > gt if gt is not None else True),
            (ge, ">=", v >= ge if ge is not None else True),
        ]
        bounds.append((le, "<=", v <= le if le is not None else True))
        if not math.isfinite(v) or not all(ok for _, _, ok in bounds):
            rng = " and ".join(f"{op} {b}" for b, op, _ in bounds if b is not None) or "finite"
            self.fail(path, f"must be {rng}, got {v!r}")
        return float(v)

    def hyper(self, v: Any, path: KeyPath) -> Any:
        """A hyper-parameter, checked by the one rule set every entry point uses (labcon/core/hypers.py)."""
        name = str(path[-1])
        if isinstance(v, bool) or not isinstance(v, int | float):
            self.fail(path, f"expected a number, got {_show(v)}")
        try:
            return check_hyper(name, v if RULES[name].whole else float(v))
        except HyperParamError as e:
            self.fail(path, str(e).removeprefix(f"{name} "))

    def schedule(self, v: Any, path: KeyPath) -> str | tuple[tuple[str, str], ...]:
        """`schedule = "one_cycle"`, or a [train.schedule] table of NAME = "SCHEDULE" (policy = ... optional)."""
        if not isinstance(v, dict):
            return self.choice(v, path, SCHEDULES)
        out = []
        for name, text in v.items():
            if name == "policy":
                out.append((name, self.choice(text, (*path, name), SCHEDULES)))
                continue
            try:
                out.append((name, check_schedule_text(name, text)))
            except (ValueError, TypeError) as e:
                self.fail((*path, name), f'{e}; write e.g. {name} = "cos:1e-3:1e-5"')
        return tuple(out)

    def int_(self, v: Any, path: KeyPath, lo: int | None = None, hi: int | None = None) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            self.fail(path, f"expected a whole number, got {_show(v)}")
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            self.fail(path, f"must be {f'>= {lo}' if hi is None else f'between {lo} and {hi}'}, got {v}")
        return v

    def str_(self, v: Any, path: KeyPath) -> str:
        if not isinstance(v, str):
            self.fail(path, f"expected a string, got {_show(v)}")
        return v

    def choice(self, v: Any, path: KeyPath, choices: tuple[str, ...]) -> str:
        if self.str_(v, path) not in choices:
            self.fail(path, f"{v!r} is not valid{_suggest(v, choices, 'expected one of')}")
        return v

    def str_list(self, v: Any, path: KeyPath) -> tuple[str, ...]:
        if not isinstance(v, list | tuple) or not all(isinstance(x, str) for x in v):
            self.fail(path, f"expected an array of strings, got {_show(v)}")
        return tuple(v)

    def int_list(self, v: Any, path: KeyPath) -> tuple[int, ...]:
        if not (isinstance(v, list | tuple) and v and all(type(x) is int and x > 0 for x in v)):
            self.fail(
                path,
                f"expected a non-empty array of positive whole numbers like [16, 32, 64], got {_show(v)}",
            )
        return tuple(v)

    def device(self, v: Any, path: KeyPath) -> str:
        if not _DEVICE_RE.match(self.str_(v, path)):
            self.fail(path, f'{v!r} is not a device; use "auto", "cpu", "cuda" or "cuda:N"')
        return v

    def bool_(self, v: Any, path: KeyPath) -> bool:
        if not isinstance(v, bool):
            self.fail(path, f"expected true or false, got {_show(v)}")
        return v


_Check = Callable[[_Validator, Any, KeyPath], Any]
# One checker per field of each section; each returns the field's typed value or raises ConfigError.
_FIELDS: dict[str, dict[str, _Check]] = {
    "model": {
        "arch": lambda v, x, p: v.choice(x, p, ARCHS),
        "norm": lambda v, x, p: v.choice(x, p, NORMS),
        "init": lambda v, x, p: v.choice(x, p, INITS),
        "channels": lambda v, x, p: v.int_list(x, p),
        "groups": lambda v, x, p: v.int_(x, p, lo=1),
        "leak": lambda v, x, p: v.num(x, p, ge=0, le=1),
        "sub": lambda v, x, p: v.num(x, p),
        "maxv": lambda v, x, p: v.num(x, p, gt=0),
        "splitter": lambda v, x, p: v.choice(x, p, _splitter_names()),
        "body": lambda v, x, p: v.str_(x, p),
        "head_dropout": lambda v, x, p: v.num(x, p, ge=0, le=0.99),
        "emb_sz": lambda v, x, p: v.int_(x, p, lo=1),
        "n_hid": lambda v, x, p: v.int_(x, p, lo=1),
        "n_layers": lambda v, x, p: v.int_(x, p, lo=1),
        "drop_mult": lambda v, x, p: v.num(x, p, ge=0, le=2),
        "encoder": lambda v, x, p: v.str_(x, p),
    },
    "train": {
        "epochs": lambda v, x, p: v.hyper(v.int_(x, p), p),
        "lr": lambda v, x, p: v.hyper(x, p),
        "opt": lambda v, x, p: v.choice(x, p, OPTS),
        "wd": lambda v, x, p: v.hyper(x, p),
        "mom": lambda v, x, p: v.hyper(x, p),
        "schedule": lambda v, x, p: v.schedule(x, p),
        "loss": lambda v, x, p: v.choice(x, p, LOSSES),
        "smoothing": lambda v, x, p: v.num(x, p, ge=0, le=0.99),
        "metrics": lambda v, x, p: v.str_list(x, p),
        "precision": lambda v, x, p: v.choice(x, p, PRECISIONS),
        "grad_clip": lambda v, x, p: v.num(x, p, gt=0),
        "grad_accum": lambda v, x, p: v.int_(x, p, lo=1),
        "device": lambda v, x, p: v.device(x, p),
        "channels_last": lambda v, x, p: v.bool_(x, p),
        "compile": lambda v, x, p: v.bool_(x, p),
    },
    "telemetry": {
        "enabled": lambda v, x, p: v.bool_(x, p),
        "every": lambda v, x, p: v.int_(x, p, lo=1),
        "sample_every": lambda v, x, p: v.int_(x, p, lo=1),
        "layers": lambda v, x, p: v.str_list(x, p),
    },
}
