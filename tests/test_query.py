"""The journal query language: parse trees, error carets, SQL compilation, and fuzzing."""

from __future__ import annotations

import datetime as dt
import sqlite3

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labcon.errors import LabconError
from labcon.session.journal import Journal
from labcon.session.query import (
    And,
    Compare,
    Field,
    Not,
    Or,
    QueryError,
    Text,
    compile_query,
    fts_string,
    parse_query,
)


def test_empty_query_matches_everything():
    assert parse_query("") is None
    assert parse_query("   ") is None
    assert compile_query("") == ("1", [])


def test_terms_and_implicit_and():
    assert parse_query("mixup") == Text("mixup")
    assert parse_query("mixup cutout") == And((Text("mixup"), Text("cutout")))
    assert parse_query("mixup AND cutout") == And((Text("mixup"), Text("cutout")))


def test_or_binds_looser_than_and():
    assert parse_query("a b OR c") == Or((And((Text("a"), Text("b"))), Text("c")))
    assert parse_query("a (b OR c)") == And((Text("a"), Or((Text("b"), Text("c")))))


def test_not_and_nesting():
    assert parse_query("NOT a") == Not(Text("a"))
    assert parse_query("a NOT b") == And((Text("a"), Not(Text("b"))))
    assert parse_query("NOT NOT a") == Not(Not(Text("a")))
    assert parse_query("NOT (a OR b)") == Not(Or((Text("a"), Text("b"))))


def test_a_leading_minus_excludes_like_not():
    assert parse_query("-a") == Not(Text("a"))
    assert parse_query("a -b") == And((Text("a"), Not(Text("b"))))
    assert parse_query('-tag:x -"a b" -(c OR d)') == And(
        (Not(Field("tag", "x")), Not(Text("a b", phrase=True)), Not(Or((Text("c"), Text("d")))))
    )
    assert parse_query("a-b") == Text("a-b")  # only a minus that starts a term excludes
    assert parse_query("lr>-1") == Compare("lr", ">", -1.0)


def test_lowercase_keywords_are_words():
    assert parse_query("not and or") == And((Text("not"), Text("and"), Text("or")))


def test_phrases_and_prefix():
    assert parse_query('"label smoothing"') == Text("label smoothing", phrase=True)
    assert parse_query("mix*") == Text("mix", prefix=True)
    assert fts_string(Text("mix", prefix=True)) == '"mix" *'
    assert fts_string(Text('say "hi"', phrase=True)) == '"say ""hi"""'


def test_field_filters():
    assert parse_query("status:done") == Field("status", "done")
    assert parse_query("status:DONE") == Field("status", "done")
    assert parse_query("tag:mixup") == Field("tag", "mixup")
    assert parse_query('tag:"two words"') == Field("tag", "two words")
    assert parse_query("session:exp-1.b") == Field("session", "exp-1.b")
    assert parse_query("run:12") == Field("run", 12)
    assert parse_query("parent:3") == Field("parent", 3)
    assert parse_query("has:error") == Field("has", "error")


def test_dates_are_local_and_until_covers_the_day():
    since = parse_query("since:2026-11-01")
    until = parse_query("until:2026-11-01")
    start = dt.datetime(2026, 11, 1).astimezone().timestamp()
    assert since == Field("since", start)
    assert until == Field("until", (dt.datetime(2026, 11, 1).astimezone() + dt.timedelta(days=1)).timestamp())
    exact = parse_query("since:2026-11-01T10:30:00+00:00")
    assert exact == Field("since", dt.datetime(2026, 11, 1, 10, 30, tzinfo=dt.UTC).timestamp())


@pytest.mark.parametrize(
    ("text", "node"),
    [
        ("lr>1e-3", Compare("lr", ">", 1e-3)),
        ("valid_acc>=0.9", Compare("valid_acc", ">=", 0.9)),
        ("accuracy <= 0.5", Compare("accuracy", "<=", 0.5)),
        ("bs=64", Compare("bs", "=", 64.0)),
        ("bs==64", Compare("bs", "=", 64.0)),
        ("epochs!=3", Compare("epochs", "!=", 3.0)),
        ("train.lr<-1", Compare("train.lr", "<", -1.0)),
    ],
)
def test_comparisons(text, node):
    assert parse_query(text) == node


def test_combined_query():
    q = '(mixup OR "label smoothing") status:done lr>1e-3 NOT tag:bad since:2026-01-01'
    node = parse_query(q)
    assert isinstance(node, And) and len(node.items) == 5
    assert node.items[0] == Or((Text("mixup"), Text("label smoothing", phrase=True)))
    assert node.items[3] == Not(Field("tag", "bad"))


@pytest.mark.parametrize(
    ("query", "message", "col"),
    [
        ("status:done ) foo", "unexpected ')'", 13),
        ("a AND", "query ends after 'AND'", 6),
        ("NOT", "query ends after 'NOT'", 4),
        ("OR a", "unexpected 'OR'", 1),
        ("a OR OR b", "unexpected 'OR'", 6),
        ("(a OR b", "unclosed '('", 1),
        ("()", "empty parentheses", 2),
        ('"abc', "unterminated quote", 1),
        ('x ""', "empty phrase", 3),
        ("status:ok", "unknown status 'ok'", 8),
        ("colour:red", "unknown field 'colour'", 1),
        ("tag:", "missing value after 'tag:'", 5),
        ("run:abc", "expected a run id", 5),
        ("since:yesterday", "expected a date", 7),
        ("lr>fast", "expected a number after 'lr>'", 4),
        ("lr>", "expected a number after 'lr>'", 4),
        ("lr>nan", "expected a number", 4),
        ("lr=>1", "unknown operator '=>'", 3),
        (">1", "unexpected '>'", 1),
        ("a +++", "has no letters or digits", 3),
        ("has:warning", "unknown event kind", 5),
        ("a --b", "search term '--b' starts with '-'", 3),
    ],
)
def test_errors_point_at_the_token(query, message, col):
    with pytest.raises(QueryError) as info:
        parse_query(query)
    text = str(info.value)
    assert message in text
    assert f"at column {col}" in text
    lines = text.splitlines()
    assert lines[1] == "  " + query
    assert lines[2] == "  " + " " * (col - 1) + "^"
    assert isinstance(info.value, LabconError)


def test_example_from_the_issue_caret_under_the_paren():
    with pytest.raises(QueryError) as info:
        parse_query("mixup status:) x")
    assert "missing value after 'status:'" in str(info.value)
    with pytest.raises(QueryError) as info:
        parse_query("a AND b ) c")
    lines = str(info.value).splitlines()
    assert lines[0].startswith("unexpected ')' at column 9")
    assert lines[2].index("^") == lines[1].index(")")


def test_too_long_and_too_deep():
    with pytest.raises(QueryError, match="limit"):
        parse_query("a " * 2000)
    with pytest.raises(QueryError, match="nests deeper"):
        parse_query("(" * 100 + "a" + ")" * 100)
    assert parse_query("(" * 20 + "a" + ")" * 20) == Text("a")


def test_compiled_sql_never_contains_user_text():
    evil = "x'); DROP TABLE runs; --"
    sql, params = compile_query(f'"{evil}" session:"{evil}" tag:"{evil}"')
    assert "DROP" not in sql and "x'" not in sql
    assert any("DROP" in str(p) for p in params)


def test_operator_from_whitelist_only():
    sql, params = compile_query("lr>=1e-3")
    assert "value >= ?" in sql
    assert params == ["lr", 1e-3, "lr", 1e-3]


@pytest.fixture(scope="module")
def fuzz_journal(tmp_path_factory):
    j = Journal(tmp_path_factory.mktemp("fuzz") / "journal.db")
    rid = j.start_run(
        "fuzz", 'name = "fuzz"\n[train]\nlr = 0.01\n', 1, tags=["mixup"], code_version="t", env={}
    )
    j.add_note(rid, "mixup helped, label smoothing did not")
    j.end_run(rid, "done", {"accuracy": 0.9})
    yield j
    j.close()


_ALPHABET = st.sampled_from(
    list("abcxyz019 ()\"*:<>=!-.+_'\\;%") + ["AND", "OR", "NOT", "tag:", "lr", "status:"]
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(_ALPHABET, max_size=20).map("".join))
def test_fuzz_query_grammar_alphabet(fuzz_journal, text):
    _search_or_labcon_error(fuzz_journal, text)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=40))
def test_fuzz_random_text(fuzz_journal, text):
    _search_or_labcon_error(fuzz_journal, text)


def _search_or_labcon_error(journal: Journal, text: str) -> None:
    try:
        result = journal.search(text)
    except LabconError:
        return
    except sqlite3.Error as e:  # pragma: no cover - this is the failure we are looking for
        pytest.fail(f"sqlite error for {text!r}: {e}")
    assert isinstance(result, list)
