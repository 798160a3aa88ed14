"""Every subcommand's --help: a description, help for each argument, query fields documented, word-boundary wraps."""

from __future__ import annotations

import argparse

import pytest

from labcon.cli import _all_parsers, build_parser
from labcon.session.query_ast import FIELDS, STATUSES


def _parsers() -> list[argparse.ArgumentParser]:
    return _all_parsers(build_parser())


def test_every_subcommand_has_a_description_and_every_argument_help():
    missing = []
    for p in _parsers():
        if not p.description:
            missing.append(f"{p.prog}: no description")
        for a in p._actions:
            if isinstance(a, argparse._HelpAction | argparse._SubParsersAction):
                continue
            if not a.help:
                missing.append(f"{p.prog}: {'/'.join(a.option_strings) or a.dest} has no help")
    assert not missing, "\n".join(missing)


def test_journal_search_help_documents_the_query_fields():
    p = next(p for p in _parsers() if p.prog.endswith("journal search"))
    text = p.format_help()
    for field in FIELDS:
        assert f"{field}:" in text, field
    for status in STATUSES:
        assert status in text, status
    assert "lr>1e-3" in text and "OR" in text and "NOT" in text


@pytest.mark.parametrize("width", [24, 40, 63, 100])
def test_help_wraps_on_word_boundaries(width, monkeypatch):
    wide: dict[str, set[str]] = {}
    monkeypatch.setenv("COLUMNS", "1000")
    for p in _parsers():
        wide[p.prog] = set(p.format_help().split())
    monkeypatch.setenv("COLUMNS", str(width))
    for p in _parsers():
        broken = set(p.format_help().split()) - wide[p.prog]
        assert not broken, f"{p.prog} at {width} columns split words: {sorted(broken)[:8]}"
