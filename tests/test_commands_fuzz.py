"""Random text thrown at the parser: only CommandError may escape, and parsed commands round-trip."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labcon.commands.grammar import COMMAND_CLASSES, COMMAND_NAMES, StaticContext, complete, parse, validate
from labcon.errors import CommandError

# Words that make random text look like real commands, so the fuzzer gets past the first word.
_WORDS = [
    *COMMAND_NAMES,
    *(c.name.split()[-1] for c in COMMAND_CLASSES),
    "fixed",
    "cos:1e-3:1e-5",
    "1e-4..1e-3",
    "@0.3",
    "lr=",
    "wd=",
    "group=",
    "kind=",
    "every=",
    "layers=",
    "1e-3",
    "0",
    "-1",
    "3",
    "true",
    "on",
    "off",
    ",",
    "=",
    '"',
    "'",
    "\\",
    "a,b",
    "x.py:C",
    "1.5e400",
]
_TEXT = st.one_of(
    st.text(max_size=60),
    st.lists(st.one_of(st.sampled_from(_WORDS), st.text(max_size=6)), max_size=8).map(" ".join),
    st.lists(st.sampled_from(_WORDS), max_size=6).map("".join),
)
_CTX = StaticContext(
    callbacks_available=["mixup"], module_paths=["", "0", "1.conv"], hook_ids=[1], n_groups=2
)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_TEXT)
def test_parse_only_raises_command_error_and_round_trips(text: str) -> None:
    try:
        cmd = parse(text)
    except CommandError as e:
        assert str(e) and "\n" not in str(e)
        return
    again = parse(cmd.text)
    assert again == cmd and again.text == cmd.text
    for state in ("idle", "running"):
        try:
            validate(cmd, StaticContext(**{**_CTX.__dict__, "state": state}))
        except CommandError:
            pass


@settings(max_examples=300, deadline=None)
@given(_TEXT)
def test_complete_never_raises(text: str) -> None:
    out = complete(text, _CTX)
    assert isinstance(out, list) and all(isinstance(c, str) for c in out)
