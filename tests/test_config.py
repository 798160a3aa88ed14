"""Session config: TOML -> typed dataclasses, file:line errors, round-trips through to_toml."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labcon.data.config import KEYS as DATA_KEYS
from labcon.errors import ConfigError
from labcon.session.config import (
    CallbackConfig,
    Config,
    ModelConfig,
    TrainConfig,
    add_location,
    check_session_name,
    dump_toml,
    load_config,
    parse_config,
)

FULL = """\
name = "mixup-run"
seed = 7

[data]
preset = "shapes"
size = 32
tfms = [
  {name = "resize", size = 64},
  {name = "flip", p = 0.5},
]
[data.split]
valid_pct = 0.2

[model]
arch = "simple_cnn"
norm = "group"
init = "lsuv"
channels = [8, 16]

[train]
epochs = 5
lr = 1e-2
opt = "sgd"
mom = 0.9
wd = 1e-4
schedule = "constant"
loss = "label_smoothing"
metrics = ["accuracy", "error_rate"]
precision = "bf16"
grad_clip = 1.0
grad_accum = 64
device = "cuda:1"

[telemetry]
enabled = false
every = 5
sample_every = 2
layers = ["body.0", "head"]

[[callbacks]]
name = "mixup"
alpha = 0.4

[[callbacks]]
name = "early_stop"
patience = 3
"""


def _err(text: str, source: str = "session.toml") -> str:
    with pytest.raises(ConfigError) as e:
        parse_config(text, source)
    return str(e.value)


def test_empty_file_is_the_default_config() -> None:
    c = parse_config("")
    assert c == Config()
    assert c.name == "baseline" and c.seed == 42 and c.data.raw == {}
    assert c.model == ModelConfig("simple_cnn", "batch", "kaiming", (16, 32, 64, 64))
    assert c.train == TrainConfig()
    assert (
        c.train.epochs == 5
        and c.train.lr == 1e-2
        and c.train.mom is None
        and c.train.metrics == ("accuracy",)
    )
    assert c.telemetry.enabled and c.telemetry.every == 20 and c.telemetry.layers == ()
    assert c.callbacks == ()


def test_full_config_is_typed_and_round_trips() -> None:
    c = parse_config(FULL, "session.toml")
    assert c.name == "mixup-run" and c.seed == 7
    assert c.data.raw == {
        "preset": "shapes",
        "size": 32,
        "tfms": [{"name": "resize", "size": 64}, {"name": "flip", "p": 0.5}],
        "split": {"valid_pct": 0.2},
    }
    assert c.model == ModelConfig("simple_cnn", "group", "lsuv", (8, 16))
    t = c.train
    assert (t.epochs, t.lr, t.opt, t.mom, t.wd, t.schedule, t.loss) == (
        5,
        0.01,
        "sgd",
        0.9,
        1e-4,
        "constant",
        "label_smoothing",
    )
    assert (t.precision, t.grad_clip, t.grad_accum, t.device) == ("bf16", 1.0, 64, "cuda:1")
    assert isinstance(t.lr, float) and t.metrics == ("accuracy", "error_rate")
    assert c.telemetry.layers == ("body.0", "head") and c.telemetry.sample_every == 2
    assert c.callbacks == (
        CallbackConfig("mixup", {"alpha": 0.4}),
        CallbackConfig("early_stop", {"patience": 3}),
    )
    text = c.to_toml()
    assert parse_config(text) == c
    assert tomllib.loads(text) == c.to_dict()


def test_integer_lr_is_a_float_and_xresnet_omits_channels() -> None:
    c = parse_config('[train]\nlr = 1\n[model]\narch = "xresnet34"\n')
    assert c.train.lr == 1.0 and isinstance(c.train.lr, float)
    assert "channels" not in c.to_dict()["model"] and parse_config(c.to_toml()) == c


def test_syntax_error_keeps_line_and_column() -> None:
    msg = _err('name = "a"\n[train]\nlr = = 3\n')
    assert msg.startswith("session.toml:3:") and "invalid TOML" in msg


def test_wrong_type_names_key_file_and_line() -> None:
    msg = _err('name = "x"\n\n[train]\nepochs = 2\n\n\nlr = "fast"\n')
    assert msg == "train.lr at session.toml:7: expected a number, got 'fast'"
    assert "train.epochs at session.toml:2: expected a whole number, got 2.5" == _err("[train]\nepochs = 2.5")
    assert "expected true or false" in _err("[telemetry]\nenabled = 1")
    assert "expected an array of strings" in _err('[train]\nmetrics = "accuracy"')
    assert "train at session.toml:1: expected a table [train]" in _err("train = 3")


def test_unknown_key_suggests_the_near_one_and_lists_valid_keys() -> None:
    msg = _err("[train]\nepochs = 2\n\n\n\n\nlrr = 0.1\n")
    assert msg.startswith(
        "unknown key 'lrr' in [train] at session.toml:7; did you mean 'lr'? valid keys: epochs, lr,"
    )
    assert "did you mean 'train'?" in _err("[trian]\nlr = 1")
    assert "unknown key 'zzz' in [model] at session.toml:2; valid keys: arch" in _err("[model]\nzzz = 1")


def test_choices_and_ranges() -> None:
    assert _err('[train]\nopt = "adamw"') == (
        "train.opt at session.toml:2: 'adamw' is not valid; did you mean 'adam'? expected one of: adam, sgd, lamb"
    )
    assert _err("[train]\nlr = 0") == (
        "train.lr at session.toml:2: must be a number > 0 and <= 100 (e.g. lr=1e-3), got 0"
    )
    assert "must be a number > 0" in _err("[train]\nlr = -1e-3")
    assert "<= 100" in _err("[train]\nlr = 1e300")
    assert "got inf" in _err("[train]\nlr = inf")
    assert _err("[train]\nepochs = 0").startswith(
        "train.epochs at session.toml:2: must be a whole number >= 1"
    )
    assert "must be a number >= 0 and < 1" in _err("[train]\nmom = 1.5")
    assert "must be a number >= 0" in _err("[train]\nwd = -1")
    assert "must be >= 1" in _err("[train]\ngrad_accum = 0")
    assert "must be >= 1" in _err("[telemetry]\nevery = 0")
    assert "not a device" in _err('[train]\ndevice = "gpu"')
    assert "is not valid" in _err('[model]\nnorm = "batchnorm"')
    assert "between 0 and 4294967295" in _err("seed = -1")
    assert "positive whole numbers" in _err("[model]\nchannels = [16, 0]")
    assert "applies only to arch = 'simple_cnn'" in _err('[model]\narch = "xresnet18"\nchannels = [8, 8]')


def test_session_names_are_validated() -> None:
    assert "invalid session name '../evil'" in _err('name = "../evil"')
    assert "invalid session name" in _err('name = "a/b"')
    for bad in ("", ".hidden", "a" * 65, "x..y"):
        with pytest.raises(ConfigError):
            check_session_name(bad)
    assert check_session_name("run_1.v2-b") == "run_1.v2-b"


def test_callbacks_need_a_name_and_keep_their_params() -> None:
    assert _err('[[callbacks]]\nname = "mixup"\n\n[[callbacks]]\nalpha = 1\n').startswith(
        "callbacks.1 at session.toml:4: each [[callbacks]] entry needs name"
    )
    assert "expected [[callbacks]] tables" in _err("callbacks = [1, 2]")
    c = parse_config('[[callbacks]]\nname = "grad_clip"\nmax_norm = 1.0\nlayers = ["a", "b"]\n')
    assert c.callbacks[0] == CallbackConfig("grad_clip", {"max_norm": 1.0, "layers": ["a", "b"]})


def test_line_numbers_survive_dotted_keys_multiline_values_and_arrays_of_tables() -> None:
    text = '''\
data.notes = """a
"quoted" [train]
lr = 1"""
data.preset = 'shapes'

model = { arch = "simple_cnn", norm = 3 }
'''
    assert _err(text) == "model.norm at session.toml:6: expected a string, got 3"
    text = 'seed = 1\ntrain.epochs = 2\ntrain.lr = "x"\n'
    assert "unknown key 'notes'" in _err('notes = """\n\n"""\n')
    assert _err(text) == "train.lr at session.toml:3: expected a number, got 'x'"
    text = '[[callbacks]]\nname = "a"\n\n# c\n[[callbacks]]\nname = "b"\nx = [\n  1,\n  2,\n]\n[train]\nlr = "y"\n'
    c_err = _err(text)
    assert c_err == "train.lr at session.toml:12: expected a number, got 'y'"
    c = parse_config(text.replace('lr = "y"', "lr = 0.1"), "s.toml")
    assert c.locate("callbacks[1].x") == "s.toml:7" and c.locate("callbacks.1.x.1") == "s.toml:9"
    assert c.locate("callbacks[0].name") == "s.toml:2" and c.locate("train.lr") == "s.toml:12"


def test_add_location_decorates_datablock_errors() -> None:
    c = parse_config(FULL, "session.toml")
    assert str(add_location("data.tfms[1].p: must be between 0 and 1", c)) == (
        "data.tfms[1].p at session.toml:9: must be between 0 and 1"
    )
    err = ConfigError("data.split.valid_pct: must be < 1")
    assert str(add_location(err, c)) == "data.split.valid_pct at session.toml:12: must be < 1"
    # An unknown key falls back to its table's line; text without a key path keeps the file.
    assert str(add_location("data.nope: unknown key", c)) == "data.nope at session.toml:4: unknown key"
    assert str(add_location("no path here", c)) == "session.toml: no path here"
    assert isinstance(add_location("x", c), ConfigError)


def test_load_config_from_file(tmp_path: Path) -> None:
    path = tmp_path / "session.toml"
    path.write_text(FULL)
    c = load_config(path)
    assert c == parse_config(FULL) and c.base_dir == tmp_path and c.source == str(path)
    path.write_text("[train]\nepochs = 2\nlr = 'fast'\n")
    with pytest.raises(ConfigError, match=rf"train.lr at {path}:3: expected a number"):
        load_config(path)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.toml")
    path.write_bytes(b"name = '\xff'")
    with pytest.raises(ConfigError, match="UTF-8"):
        load_config(path)


def test_replace_validates_and_merges_sections() -> None:
    c = parse_config(FULL)
    d = c.replace(name="other", train={"lr": 0.5, "epochs": 1})
    assert d.name == "other" and d.train.lr == 0.5 and d.train.epochs == 1 and d.train.opt == "sgd"
    assert c.train.lr == 0.01  # the original is unchanged
    assert d.replace(model={"arch": "xresnet50"}).model.arch == "xresnet50"
    assert c.replace(train=TrainConfig(epochs=9)).train == TrainConfig(epochs=9)
    assert c.replace(callbacks=[CallbackConfig("mixup", {"alpha": 1.0})]).callbacks[0].params == {
        "alpha": 1.0
    }
    with pytest.raises(ConfigError, match="must be a number > 0"):
        c.replace(train={"lr": -1.0})
    with pytest.raises(ConfigError, match="did you mean 'train'"):
        c.replace(trian={})


_keys = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=6)
_scalars = st.one_of(
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False),
    st.booleans(),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_keys, inner, max_size=3),
    max_leaves=10,
)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(_keys, _values, max_size=5))
def test_toml_writer_round_trips_any_data_table(raw: dict) -> None:
    assert tomllib.loads(dump_toml(raw)) == raw
    # The [data] keys labcon knows are checked as a config is built (a generated `bs = []` is refused, as it must
    # be); the session file's round trip takes every other key as it is.
    free = {k: v for k, v in raw.items() if k not in DATA_KEYS}
    c = Config().replace(data=free) if free else Config()
    assert parse_config(c.to_toml()) == c


def test_train_schedule_table_round_trips_and_is_checked():
    text = '[train]\nlr = 1e-2\n[train.schedule]\nlr = "lin:1e-4:1e-2@0.3,cos:1e-2:0"\nwd = "lin:0:0.1"\n'
    c = parse_config(text)
    assert c.train.schedule == (("lr", "lin:1e-4:1e-2@0.3,cos:1e-2:0"), ("wd", "lin:0:0.1"))
    assert parse_config(c.to_toml()) == c  # session.toml keeps it as a table
    assert "cannot be scheduled" in _err('[train.schedule]\nlrr = "cos:1:2"')
    assert "unknown annealer 'sin'" in _err('[train.schedule]\nlr = "sin:1e-3:1e-5"')
    msg = _err('[train.schedule]\nmom = "lin:0.9:1.5"')
    assert (
        msg.startswith("train.schedule.mom at session.toml:2:") and "mom must be a number >= 0 and < 1" in msg
    )
