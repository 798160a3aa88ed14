"""Tokens/s of labcon's tokeniser with 1 and 2 worker processes vs a plain `spacy.blank(lang).pipe` loop.

    python bench/tokenize_throughput.py [--data ../shared/data/imdb_sample/texts.csv] [--repeat 4]

The corpus is the CSV's text column repeated `--repeat` times (large enough to amortise the pool's
start-up). Each tokeniser runs once on it, in the order plain / 1 worker / 2 workers; the 2-worker
output must equal the 1-worker output exactly. Memory: the peak of Python allocations (tracemalloc)
while tokenising and numericalising the un-repeated corpus in this process, as a multiple of its size
in UTF-8 bytes, and the peak RSS of the worker processes.
"""

from __future__ import annotations

import argparse
import csv
import resource
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from labcon.data.text_tokenize import split_doc, tokenize_texts  # noqa: E402
from labcon.data.text_vocab import Vocab  # noqa: E402


def _cpu() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _texts(path: Path) -> list[str]:
    with path.open(encoding="utf-8", newline="") as f:
        return [row["text"] for row in csv.DictReader(f)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="../shared/data/imdb_sample/texts.csv")
    ap.add_argument("--repeat", type=int, default=4)
    ap.add_argument("--lang", default="en")
    a = ap.parse_args()
    base = _texts(Path(a.data))
    texts = base * a.repeat
    mb = sum(len(t.encode()) for t in texts) / 1e6
    print(f"corpus: {len(texts)} texts, {mb:.1f} MB")

    import spacy

    nlp = spacy.blank(a.lang)
    t0 = time.perf_counter()
    n_plain = sum(len(d) for d in nlp.pipe(texts))
    plain = time.perf_counter() - t0
    print(
        f"plain spacy.blank pipe : {n_plain / plain:>9.0f} tokens/s  ({plain:.1f} s, {n_plain} tokens, no rules)"
    )

    results = {}
    for w in (1, 2):
        t0, c0 = time.perf_counter(), _cpu()
        docs = tokenize_texts(texts, a.lang, n_workers=w)
        dt, cpu = time.perf_counter() - t0, _cpu() - c0
        n = sum(d.count("\x1f") + 1 for d in docs)
        results[w] = (docs, dt, n)
        # CPU seconds (this process + its workers) per wall second: ~2 when two cores were really free.
        print(
            f"labcon, {w} worker{'s' if w > 1 else ' '}      : {n / dt:>9.0f} tokens/s  ({dt:.1f} s, {n} tokens; "
            f"{cpu:.1f} CPU s, {cpu / dt:.2f} cores busy)"
        )
    same = results[1][0] == results[2][0]
    print(f"2 workers vs 1: {results[1][1] / results[2][1]:.2f}x, output identical: {same}")
    child_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    del results

    size = sum(len(t.encode()) for t in base)
    tracemalloc.start()
    docs = tokenize_texts(base, a.lang, n_workers=1)
    vocab = Vocab.build(docs)
    ids = [vocab.numericalize(d) for d in docs]
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    held = sum(len(d) for d in docs) + sum(x.nbytes for x in ids)
    print(
        f"memory: corpus {size / 1e6:.2f} MB; tokenise+numericalise peak {peak / 1e6:.1f} MB of Python allocations "
        f"({peak / size:.1f}x the corpus; tokens kept as {held / 1e6:.1f} MB of strings + ids, "
        f"{len(split_doc(docs[0]))} tokens in the first text); worker peak RSS {child_rss:.0f} MB"
    )
    if not same:
        raise SystemExit("2-worker output differs from 1-worker output")


if __name__ == "__main__":
    main()
