"""A session's TOML config, validated into typed dataclasses with file:line error messages."""

from __future__ import annotations

import copy
import dataclasses
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labcon.errors import ConfigError, LabconError
from labcon.session.config_fields import (
    DEFAULT_CHANNELS,
    FIELDS,
    Validator,
    show_value,
    suggest,
)
from labcon.session.paths import validate_session_name
from labcon.session.toml_io import (  # dump_toml is re-exported from here
    KeyPath,
    _line_of,
    _Locator,
    _split_path,
    dump_toml,
)


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
                raise ConfigError(f"unknown config field {key!r}{suggest(key, _TOP_KEYS)}")
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
    v = Validator(source, lines or {})
    v.keys(raw, (), _TOP_KEYS)
    sections: dict[str, Any] = {}
    for sec, cls in _SECTIONS.items():
        table = v.table(raw.get(sec, {}), (sec,))
        v.keys(table, (sec,), [f.name for f in dataclasses.fields(cls)])
        sections[sec] = cls(**{k: FIELDS[sec][k](v, table[k], (sec, k)) for k in table})
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
        v.fail(("callbacks",), f"expected [[callbacks]] tables with a name, got {show_value(cbs)}")
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
