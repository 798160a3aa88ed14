"""ULMFiT on imdb_sample through real sessions: the LM learns (validation perplexity falls), then a classifier
on its encoder beats the majority class by 10+ points on the validation reviews — from scratch, no pretrained
weights.

Sized for about a minute on two shared cores (~30-40 CPU-seconds); the full-size run (whole reviews for the LM
too) and the figures in bench/RESULTS.md are `python bench/imdb_ulmfit.py`. Where the time went (~290 s wall at
load ~8): torch's two OpenMP threads spin-waiting (an LM step on one thread took ~1/8 the CPU of two; the old run
on one thread: 48 CPU-seconds), then the LM's two epochs over every whole review (~2/3 of what was left), the
classifier (~1/4), tokenising (~1/10). So torch runs on one thread and the LM reads the first LM_WORDS words of
every review (its vocab comes from those), bptt 40; the classifier reads whole reviews as before.
Final validation accuracy by seed with these settings: 77.0 (seed 0, the test's), 78.0, 70.0, 71.0 (seeds 1-3)
against a majority of 53.5, so the bar (63.5) is not met by luck.
"""

from __future__ import annotations

import csv
import math
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from labcon.session.config import parse_config
from labcon.session.session import Session

LM_WORDS = 60
_COMMON = """
seed = {seed}
[data]
kind = "{kind}"
path = "{path}"
valid_col = "is_valid"
max_vocab = 2000
bs = {bs}
bptt = 40
num_workers = 2
[model]
arch = "awd_lstm"
emb_sz = 32
n_hid = 64
n_layers = 2
drop_mult = 0.3
{encoder}
[train]
epochs = {epochs}
lr = 1e-2
device = "cpu"
[telemetry]
enabled = false
"""


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    # On a shared 2-core box OpenMP spin-waiting makes two threads cost several times the CPU of one here.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _first_words(src: Path, dst: Path, n: int) -> Path:
    """texts.csv with each review cut to its first n words (labels and the split unchanged)."""
    with src.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    with dst.open("w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["label", "text", "is_valid"])
        w.writeheader()
        for r in rows:
            w.writerow(
                {"label": r["label"], "text": " ".join(r["text"].split()[:n]), "is_valid": r["is_valid"]}
            )
    return dst


def _majority_pct(csv_file: Path) -> float:
    with csv_file.open(encoding="utf-8", newline="") as f:
        valid = [r["label"] for r in csv.DictReader(f) if r["is_valid"] == "True"]
    return 100 * Counter(valid).most_common(1)[0][1] / len(valid)


def test_ulmfit_from_scratch_on_imdb_sample(imdb_sample: Path, tmp_path: Path) -> None:
    data = imdb_sample / "texts.csv"
    lm_data = _first_words(data, tmp_path / "lm.csv", LM_WORDS)
    lm_cfg = 'name = "imdb_lm"\n' + _COMMON.format(
        seed=0, kind="text_lm", path=lm_data, bs=64, encoder="", epochs=2
    )
    lm = Session(parse_config(lm_cfg), tmp_path)
    assert lm.start_fit(epochs=2).ok
    assert lm.wait(900)
    ppl = [row["perplexity"] for row in lm.history()]
    assert len(ppl) == 2 and ppl[1] < ppl[0], ppl
    assert all(math.isfinite(p) for p in ppl)
    lm_run = lm.persist.run_id
    lm.close()
    enc = tmp_path / "imdb_lm" / "encoder.pt"
    cls_cfg = 'name = "imdb_cls"\n' + _COMMON.format(
        seed=0, kind="text_cls", path=data, bs=32, encoder=f'encoder = "{enc}"', epochs=6
    )
    clf = Session(parse_config(cls_cfg), tmp_path)
    assert clf.start_fit(epochs=6).ok
    assert clf.wait(900)
    accs = [round(100 * row["accuracy"], 1) for row in clf.history()]
    acc = accs[-1]
    assert clf.persist.parent_id == lm_run  # the classifier's journal run is linked to the LM's
    clf.close()
    majority = _majority_pct(data)
    print(
        f"LM valid perplexity by epoch {ppl}; classifier valid accuracy by epoch {accs}; majority {majority:.1f}"
    )
    assert acc >= majority + 10, (acc, majority)
