"""Tokenising text the course's way: spaCy's rule-based tokenizer (`spacy.blank`, no model download) plus
rules that fix HTML and mark repetition and case with special tokens, run in chunks over a process pool
and cached on disk under a key made of the rules, the language and the texts.

A tokenised document is held as one string with the tokens joined by `SEP` (far smaller than a list of
Python strings); `split_doc` turns it back into a list.
"""

from __future__ import annotations

import hashlib
import html
import importlib.metadata
import inspect
import multiprocessing
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

UNK, PAD, BOS, EOS = "xxunk", "xxpad", "xxbos", "xxeos"
TK_REP, TK_WREP, TK_UP, TK_MAJ = "xxrep", "xxwrep", "xxup", "xxmaj"
SPECIAL_TOKENS: tuple[str, ...] = (UNK, PAD, BOS, EOS, TK_REP, TK_WREP, TK_UP, TK_MAJ)
SEP, DOC_SEP = "\x1f", "\x1e"  # token / document separators; removed from input texts by fix_html
CHUNK = 500  # documents per task sent to a worker

_RE_SPACES = re.compile(r" {2,}")
_RE_REP = re.compile(r"(\S)(\1{3,})")
_RE_WREP = re.compile(r"\b(\w+)((?:\s+\1\b){3,})", re.IGNORECASE)
_RE_SPEC = re.compile(r"([/#\\])")
_RE_BR = re.compile(r"<\s*br\s*/?>", re.IGNORECASE)
_RE_CTRL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def fix_html(t: str) -> str:
    """Undo HTML escapes and markup left in scraped text (`&amp;`, `#39;`, `<br />`), drop control characters."""
    t = (
        html.unescape(t)
        .replace("#39;", "'")
        .replace("#146;", "'")
        .replace("nbsp;", " ")
        .replace("#36;", "$")
        .replace("\\n", "\n")
        .replace("quot;", "'")
        .replace('\\"', '"')
        .replace(" @.@ ", ".")
        .replace(" @,@ ", ",")
        .replace(" @-@ ", "-")
    )
    t = _RE_BR.sub("\n", t)
    return _RE_SPACES.sub(" ", _RE_CTRL.sub(" ", t))


def replace_rep(t: str) -> str:
    """'cooool' -> 'c xxrep 4 o l': a character repeated 4+ times becomes xxrep, count, character."""

    def sub(m: re.Match[str]) -> str:
        c, cc = m.groups()
        return f" {TK_REP} {len(cc) + 1} {c} "

    return _RE_REP.sub(sub, t)


def replace_wrep(t: str) -> str:
    """'so so so so good' -> 'xxwrep 4 so good': a word repeated 4+ times in a row."""

    def sub(m: re.Match[str]) -> str:
        w, rest = m.groups()
        return f" {TK_WREP} {len(rest.split()) + 1} {w} "

    return _RE_WREP.sub(sub, t)


def spec_add_spaces(t: str) -> str:
    """Spaces around / # and backslash so they become tokens of their own."""
    return _RE_SPEC.sub(r" \1 ", t)


def rm_useless_spaces(t: str) -> str:
    """Runs of spaces become one."""
    return _RE_SPACES.sub(" ", t)


def replace_all_caps(toks: list[str]) -> list[str]:
    """'WOW' -> 'xxup wow' (words of 2+ letters all in capitals)."""
    out: list[str] = []
    for t in toks:
        if t.isupper() and len(t) > 1 and t not in SPECIAL_TOKENS:
            out += [TK_UP, t.lower()]
        else:
            out.append(t)
    return out


def deal_caps(toks: list[str]) -> list[str]:
    """'Hello' -> 'xxmaj hello' (a capital first letter, the rest lower case); then everything lower case."""
    out: list[str] = []
    for t in toks:
        if t == "":
            continue
        if t[0].isupper() and len(t) > 1 and t[1:].islower():
            out.append(TK_MAJ)
        out.append(t.lower())
    return out


PRE_RULES: tuple[Callable[[str], str], ...] = (
    fix_html,
    replace_rep,
    replace_wrep,
    spec_add_spaces,
    rm_useless_spaces,
)
POST_RULES: tuple[Callable[[list[str]], list[str]], ...] = (replace_all_caps, deal_caps)


def rules_fingerprint() -> str:
    """A hash of the rules' source and patterns and spaCy's version: any change invalidates cached tokens."""
    h = hashlib.sha256()
    for f in (*PRE_RULES, *POST_RULES, _tokenize_chunk, _nlp):
        try:
            h.update(inspect.getsource(f).encode())
        except (OSError, TypeError):  # no source (a builtin, a frozen app): its name stands in
            h.update(f"{getattr(f, '__module__', '')}.{getattr(f, '__qualname__', repr(f))}".encode())
    h.update("|".join(SPECIAL_TOKENS).encode())
    h.update(importlib.metadata.version("spacy").encode())  # its tokenizer rules change between releases
    for rx in (
        _RE_SPACES,
        _RE_REP,
        _RE_WREP,
        _RE_SPEC,
        _RE_BR,
        _RE_CTRL,
    ):  # the rules' patterns live outside them
        h.update(f"{rx.pattern}/{rx.flags}".encode())
    return h.hexdigest()[:16]


_NLP: dict[str, Any] = {}


def _nlp(lang: str) -> Any:
    # One blank pipeline per process and language; special tokens are kept whole by the tokenizer.
    if lang not in _NLP:
        import spacy
        from spacy.symbols import ORTH

        nlp = spacy.blank(lang)
        for w in SPECIAL_TOKENS:
            nlp.tokenizer.add_special_case(w, [{ORTH: w}])
        _NLP[lang] = nlp
    return _NLP[lang]


def _tokenize_chunk(args: tuple[str, Sequence[str]]) -> list[str]:
    """Tokenise a chunk of texts (runs in a worker): pre-rules, spaCy, post-rules, xxbos/xxeos."""
    lang, texts = args
    nlp = _nlp(lang)
    pre = []
    for t in texts:
        for rule in PRE_RULES:
            t = rule(t)
        pre.append(t)
    out = []
    for doc in nlp.tokenizer.pipe(pre):
        toks = [tok.text for tok in doc if not tok.text.isspace() or "\n" in tok.text]
        toks = ["\n" if t.isspace() else t for t in toks]
        for rule in POST_RULES:
            toks = rule(toks)
        out.append(SEP.join([BOS, *toks, EOS]))
    return out


def split_doc(doc: str) -> list[str]:
    """The token list of a tokenised document."""
    return doc.split(SEP)


def _chunks(texts: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for i in range(0, len(texts), size):
        yield texts[i : i + size]


def _pool_context() -> multiprocessing.context.BaseContext:
    # fork shares the already-imported spaCy with the workers (spawn would import it again: seconds each);
    # workers only run the tokenizer and exit, so the parent's threads do not matter to them.
    if sys.platform.startswith("linux"):
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def tokenize_texts(
    texts: Sequence[str], lang: str = "en", n_workers: int = 1, chunk: int = CHUNK
) -> list[str]:
    """Tokenise `texts` (order kept) with `n_workers` processes; returns one SEP-joined string per text."""
    if n_workers <= 1 or len(texts) <= chunk:
        return [d for c in _chunks(texts, chunk) for d in _tokenize_chunk((lang, c))]
    _nlp(lang)  # load once here so forked workers inherit it
    with ProcessPoolExecutor(max_workers=n_workers, mp_context=_pool_context()) as ex:
        return [d for res in ex.map(_tokenize_chunk, ((lang, c) for c in _chunks(texts, chunk))) for d in res]


def cache_key(texts: Sequence[str], lang: str) -> str:
    """Hash of the rules, the language and every text (length-prefixed, so boundaries count)."""
    h = hashlib.sha256(f"{rules_fingerprint()}|{lang}|{len(texts)}".encode())
    for t in texts:
        b = t.encode("utf-8", "surrogatepass")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()[:24]


class Tokenizer:
    """spaCy + course rules for one language; `__call__` tokenises, using and filling a disk cache when given."""

    def __init__(self, lang: str = "en", n_workers: int = 1, cache_dir: str | Path | None = None):
        self.lang, self.n_workers = lang, n_workers
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.last_from_cache = False

    def cache_path(self, texts: Sequence[str]) -> Path | None:
        """Where the tokens of `texts` are (or would be) cached."""
        if self.cache_dir is None:
            return None
        return self.cache_dir / f"tokens-{cache_key(texts, self.lang)}.txt"

    def __call__(self, texts: Sequence[str]) -> list[str]:
        """Tokenised documents (SEP-joined strings), read from the cache when the same texts were seen."""
        path = self.cache_path(texts)
        if path is not None and path.is_file():
            docs = path.read_text(encoding="utf-8").split(DOC_SEP)
            if len(docs) == len(texts):
                self.last_from_cache = True
                return docs
        self.last_from_cache = False
        docs = tokenize_texts(texts, self.lang, self.n_workers)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tokens-")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    f.write(DOC_SEP.join(docs))
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        return docs

    def tokenize_one(self, text: str) -> list[str]:
        """The tokens of one text (no cache, this process)."""
        return split_doc(_tokenize_chunk((self.lang, [text]))[0])

    def __repr__(self) -> str:
        return f"Tokenizer(lang={self.lang!r}, n_workers={self.n_workers})"
