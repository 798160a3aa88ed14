"""The command language: parsing, canonical text, errors, help, validation and completion."""

from __future__ import annotations

import dataclasses

import pytest

from labcon.commands import grammar as C
from labcon.commands.grammar import StaticContext, complete, help_text, parse, validate
from labcon.commands.spread import Spread
from labcon.errors import CommandError, LabconError

ROUND_TRIP = [
    ("fit 3", C.Fit(3)),
    ("fit_one_cycle 5 lr=3e-3", C.FitOneCycle(5, 3e-3)),
    ("fit_one_cycle 2 lr=1e-3,1e-2 pct_start=0.3", C.FitOneCycle(2, (1e-3, 1e-2), 0.3)),
    ("lr_find num_it=50 end_lr=1", C.LrFind((("num_it", 50), ("end_lr", 1.0)))),
    ("pause", C.Pause()),
    ("resume", C.Resume()),
    ("stop", C.Stop()),
    ("set lr=1e-3 wd=0.01 group=1", C.Set((("lr", 1e-3), ("wd", 0.01)), 1)),
    ("set lr=1e-4,1e-3", C.Set((("lr", (1e-4, 1e-3)),))),
    ("opt SGD mom=0.9", C.Opt("sgd", (("mom", 0.9),))),
    ("cb add mixup alpha=0.4", C.CbAdd("mixup", (("alpha", 0.4),))),
    ('cb add "my dir/cb.py:MyCb" n=1 on=true', C.CbAdd("my dir/cb.py:MyCb", (("n", 1), ("on", True)))),
    ("cb add x names=a,b s='3'", C.CbAdd("x", (("names", ("a", "b")), ("s", "3")))),
    ("cb rm mixup", C.CbRm("mixup")),
    ("cb list", C.CbList()),
    ("norm group groups=8", C.Norm("group", (("groups", 8),))),
    ("hooks", C.ListHooks()),
    ("hook add layers.0", C.HookAdd("layers.0", "forward")),
    ("hook add 0 kind=backward", C.HookAdd("0", "backward")),
    ("hook rm 3", C.HookRm(3)),
    ("telemetry every=5 layers=0,1.conv,1.10 off", C.SetTelemetry(5, ("0", "1.conv", "1.10"), False)),
    ("telemetry", C.SetTelemetry()),
    ("data summary", C.DataSummary()),
    ("save", C.Save()),
    ("save before-swap", C.Save("before-swap")),
    ("set lr=1e-3 fixed", C.Set((("lr", 1e-3),), fixed=True)),
    ("set lr=1e-5..1e-3", C.Set((("lr", Spread(1e-5, 1e-3)),))),
    ("fit 2 lr=1e-3", C.Fit(2, 1e-3)),
    ("fit_one_cycle 1 lr=1e-4..1e-2", C.FitOneCycle(1, Spread(1e-4, 1e-2))),
    ("sched lr=cos:1e-3:1e-6 wd=0.01", C.Sched((("lr", "cos:1e-3:1e-6"), ("wd", "0.01")))),
    ("sched lr=lin:1e-5:1e-3@0.3,cos:1e-3:0", C.Sched((("lr", "lin:1e-5:1e-3@0.3,cos:1e-3:0"),))),
    ("sched mom=off", C.Sched((("mom", "off"),))),
    ("show sched", C.ShowSched()),
    ("note don't   forget: lr=3", C.Note("don't   forget: lr=3")),
    ("journal mixup AND lr", C.SearchJournal("mixup AND lr")),
    ("replay 12", C.Replay("12")),
    ("show loop", C.ShowLoop()),
    ("status", C.Status()),
    ("help", C.Help()),
    ("help  cb   add", C.Help("cb add")),
    ("  status  ", C.Status()),
]


@pytest.mark.parametrize(("text", "expected"), ROUND_TRIP)
def test_parse_and_canonical_text(text: str, expected: C.Command) -> None:
    cmd = parse(text)
    assert cmd == expected
    assert parse(cmd.text) == cmd
    assert cmd.when in C.WHEN_VALUES


def test_when_classes() -> None:
    assert parse("status").when == "now"
    assert parse("set lr=1").when == "batch"
    assert parse("pause").when == "batch"
    assert parse("opt sgd").when == "epoch"
    assert parse("norm batch").when == "epoch"
    assert parse("fit 1").when == "idle"
    # Every registered class is reachable from the parser, and its name is a word the parser knows.
    for cls in C.COMMAND_CLASSES:
        assert C.lookup(cls.name) is cls
        assert cls.name.split()[0] in C.COMMAND_NAMES
        assert cls.usage.startswith(cls.name) and cls.summary


def test_commands_are_frozen_and_hashable() -> None:
    cmd = parse("set lr=1e-3")
    with pytest.raises(AttributeError):
        cmd.group = 2  # type: ignore[misc]
    assert len({parse("fit 2"), parse("fit  2"), parse("fit 3")}) == 2


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("fti 3", "unknown command 'fti'; did you mean 'fit'? commands: fit,"),
        ("cb ad x", "unknown cb sub-command 'ad'; did you mean 'add'? available: add, rm, list"),
        ("cb", "cb needs a sub-command: add, rm, list"),
        ("norm bach", "did you mean 'batch'?"),
        ("fit", "fit needs a number of epochs"),
        ("fit x", "must be a whole number"),
        ("fit 0", "at least 1"),
        ("fit 2 3", "takes 1 word(s), got 2"),
        ("fit 2 pct_start=3", "unknown option 'pct_start' for fit"),
        ("set", "at least one name=value"),
        ("set lr=abc", "lr must be a number"),
        ("set lr=1,2 group=0", "not both"),
        ("set lr=1 lr=2", "given twice"),
        ("set lr=1e999", "out of range"),
        ("set lr=", "missing value"),
        ("set lr=1,,2", "empty item"),
        ("set 3=4", "bad option name"),
        ("telemetry maybe", "on or off"),
        ("telemetry every=0", "every must be"),
        ("hook add x kind=side", "forward or backward"),
        ("hook rm abc", "hook id must be a whole number"),
        ('note "', None),
        ('set lr="1', "unterminated"),
        ("note", "note needs text"),
        ("help fitt", "did you mean 'fit'"),
        ("help cb ad", "did you mean 'add'"),
        ("cb add file.txt:Cls", "not path/to/file.py:ClassName"),
        ("fit_one_cycle 2 pct_start=2", "between 0 and 1"),
        ("lr_find num_it=1", "num_it"),
        ("", "empty command"),
    ],
)
def test_errors_are_one_clear_line(text: str, fragment: str | None) -> None:
    if fragment is None:  # a note keeps its text verbatim, quotes included
        assert parse(text) == C.Note('"')
        return
    with pytest.raises(CommandError) as e:
        parse(text)
    msg = str(e.value)
    assert "\n" not in msg and fragment in msg
    assert isinstance(e.value, LabconError)


def test_help_text() -> None:
    full = help_text()
    for cls in C.COMMAND_CLASSES:
        assert cls.usage in full
    one = help_text("set")
    assert one.startswith("usage: set NAME=VALUE") and "batch boundary" in one
    assert "cb rm NAME" in help_text("cb") and "cb list" in help_text("cb")
    with pytest.raises(CommandError, match="did you mean 'status'"):
        help_text("stauts")


CTX = StaticContext(
    callbacks_available=["mixup", "grad_clip", "early_stopping"],
    callbacks_installed=["recorder", "train_eval", "grad_clip"],
    hyper_names=["lr", "mom", "sqr_mom", "eps", "wd"],
    n_groups=2,
    module_paths=["", "0", "1", "1.conv", "1.bn"],
    hook_ids=[1, 4],
    state="running",
)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (
            "cb add mixpu",
            "unknown callback 'mixpu'; did you mean 'mixup'? available: early_stopping, grad_clip, mixup",
        ),
        ("cb add grad_clip", "already installed"),
        ("cb add /no/such/file.py:Cls", "no file"),
        ("cb rm mixup", "unknown installed callback 'mixup'"),
        ("set lrr=1", "did you mean 'lr'?"),
        ("set lr=1,2,3", "3 values for 2 param group(s)"),
        ("set lr=1 group=2", "param group 2 does not exist"),
        ("set lr=1e-4,1e-3,1e-2", "3 values for 2 param group(s)"),
        ("opt adamw", "unknown optimizer 'adamw'; did you mean 'adam'?"),
        ("hook add 1.cnv", "did you mean '1.conv'?"),
        ("hook rm 7", "no hook with id 7; hooks: 1, 4"),
        ("telemetry layers=0,9", "unknown module path '9'"),
        ("fit 3", "while the session is running"),
    ],
)
def test_validate_errors(text: str, fragment: str) -> None:
    with pytest.raises(CommandError) as e:
        validate(parse(text), CTX)
    assert fragment in str(e.value)


def test_replay_is_accepted_while_training() -> None:
    """A replay runs in its own session process, so a live fit here does not stand in its way."""
    assert validate(parse("replay 3"), CTX) == C.Replay("3")


def test_resume_needs_a_paused_or_running_session() -> None:
    idle = dataclasses.replace(CTX, state="idle")
    with pytest.raises(CommandError, match="nothing to resume: the session is idle"):
        validate(parse("resume"), idle)
    validate(parse("resume"), CTX)  # running: may cancel a pause still queued (the session decides)


@pytest.mark.parametrize(
    "text",
    [
        "cb add mixup alpha=0.4",
        "cb rm grad_clip",
        "set lr=1e-3,1e-2",
        "set wd=0 group=-1",
        "opt lamb",
        "hook add 1.bn kind=backward",
        "hook rm 4",
        "telemetry layers=0,1.conv",
        "pause",
        "stop",
        "status",
        "note hi",
    ],
)
def test_validate_ok(text: str) -> None:
    cmd = parse(text)
    assert validate(cmd, CTX) is cmd


def test_validate_states() -> None:
    idle = StaticContext(state="idle")
    paused = StaticContext(state="paused")
    validate(parse("fit 1"), idle)
    validate(parse("resume"), paused)
    validate(parse("stop"), paused)
    with pytest.raises(CommandError, match="nothing to pause"):
        validate(parse("pause"), idle)
    with pytest.raises(CommandError, match="nothing to stop"):
        validate(parse("stop"), idle)
    with pytest.raises(CommandError, match="2 values for 1 param group"):
        validate(parse("fit_one_cycle 1 lr=1,2"), idle)


def test_validate_custom_callback_path(tmp_path) -> None:
    f = tmp_path / "my_cb.py"
    f.write_text("x = 1\n")
    validate(parse(f"cb add {f}:Mine"), CTX)  # the class is checked when loaded (apply.load_callback_class)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", C.COMMAND_NAMES),
        ("f", ["fit", "fit_one_cycle", "freeze", "fine_tune"]),
        ("sh", ["show"]),
        ("cb ", ["add", "rm", "list"]),
        ("cb r", ["rm"]),
        ("cb add ", ["early_stopping", "grad_clip", "mixup"]),
        ("cb add m", ["mixup"]),
        ("cb rm ", ["grad_clip", "recorder", "train_eval"]),
        ("opt ", ["adam", "lamb", "sgd"]),
        ("opt sgd ", ["lr=", "mom=", "wd=", "decouple_wd="]),
        ("opt sgd mom=0.9 ", ["lr=", "wd=", "decouple_wd="]),
        ("set ", ["eps=", "lr=", "mom=", "sqr_mom=", "wd=", "group="]),
        ("set l", ["lr="]),
        ("set lr=1 ", ["eps=", "mom=", "sqr_mom=", "wd=", "group="]),
        ("norm g", ["group"]),
        ("hook add ", ["0", "1", "1.conv", "1.bn", "kind="]),
        ("hook add 1 kind=b", ["kind=backward"]),
        ("hook rm ", ["1", "4"]),
        ("telemetry layers=0,1.", ["layers=0,1.conv", "layers=0,1.bn"]),
        ("telemetry o", ["on", "off"]),
        ("help ", C.COMMAND_NAMES),
        ("help hook ", ["add", "rm"]),
        ("note so", []),
        ('set lr="', []),
        ("nosuch ", []),
    ],
)
def test_complete(text: str, expected: list[str]) -> None:
    assert complete(text, CTX) == list(expected)


def test_complete_without_context_uses_registries() -> None:
    assert complete("opt ") == ["adam", "lamb", "sgd"]
    assert "lr=" in complete("set ")
    assert complete("norm ") == list(C.NORM_KINDS)


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["run", "--lr", "-1"], "lr must be a number > 0"),
        (["run", "--lr", "nan"], "got nan"),
        (["run", "--lr", "0"], "got 0"),
        (["run", "--epochs", "0"], "epochs must be a whole number >= 1"),
        (["run", "--lr", "abc"], "got 'abc'"),
    ],
)
def test_cli_hyper_flags_refused_with_non_zero_exit(argv, fragment, capsys, tmp_path) -> None:
    from labcon.cli import main

    with pytest.raises(SystemExit) as e:
        main(["--sessions-dir", str(tmp_path), *argv, "--no-socket"])
    assert e.value.code != 0
    assert fragment in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # refused before anything was created


def test_replay_then_is_checked_before_anything_runs(tmp_path) -> None:
    from labcon.session.replay import start_replay

    with pytest.raises(CommandError, match="unknown command 'garbage'"):
        start_replay(1, tmp_path, until=1, then="garbage here")
    with pytest.raises(CommandError, match="lr must be a number > 0"):
        start_replay(1, tmp_path, until=1, then="set lr=-1")
    assert not any(tmp_path.iterdir())  # the journal was not even opened
    assert C.check("set lr=1e-3 fixed") == C.Set((("lr", 1e-3),), fixed=True)


def test_complete_after_a_space_keeps_the_line_and_offers_each_option_once() -> None:
    for ctx in (None, CTX):
        cands = complete("set ", ctx)
        assert cands.count("group=") == 1 and "lr=" in cands
        assert C.apply_completion("set ", cands) == "set "  # Tab after `set ` used to empty the line
    assert C.apply_completion("set l", complete("set l")) == "set lr="
    assert C.apply_completion("set lr=1 ", ["group="]) == "set lr=1 group="
    assert complete("sched ") == ["lr=", "mom=", "sqr_mom=", "wd=", "eps=", "dropout="]
    assert complete("sched lr=c") == ["lr=cos:"]
    assert complete("show ") == ["sched", "loop"]
    assert complete("fit 3 ") == ["lr="]


def test_quoted_control_characters_are_shown_visibly_and_help_topics_normalised() -> None:
    for text in ('fit " \n "', '" \n "', 'set lr=" \t"'):
        with pytest.raises(CommandError) as e:
            parse(text)
        assert "\n" not in str(e.value) and "\t" not in str(e.value)
    assert "got ' \\n '" in str(pytest.raises(CommandError, parse, 'fit " \n "').value)
    assert parse('help " fit "') == C.Help("fit") == parse(C.Help("fit").text)
