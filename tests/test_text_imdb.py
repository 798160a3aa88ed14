"""ULMFiT on imdb_sample through real sessions: the LM learns (validation perplexity falls), then a classifier
on its encoder beats the majority class by 10+ points — from scratch, no pretrained weights."""

from __future__ import annotations

import csv
import math
from collections import Counter
from pathlib import Path

from labcon.session.config import parse_config
from labcon.session.session import Session

# A small model: 2 LM + 6 classifier epochs, about 140 CPU-seconds in all (two tokenisations, one per session
# folder, included). Seeds fixed, so the figures repeat on the same torch build: LM perplexity 160.5 -> 152.8,
# classifier 77.0 % vs 53.5 % for the majority class.
_COMMON = """
seed = 0
[data]
kind = "{kind}"
path = "{path}"
valid_col = "is_valid"
max_vocab = 2000
bs = {bs}
bptt = 60
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


def _majority_pct(csv_file: Path) -> float:
    with csv_file.open(encoding="utf-8", newline="") as f:
        valid = [r["label"] for r in csv.DictReader(f) if r["is_valid"] == "True"]
    return 100 * Counter(valid).most_common(1)[0][1] / len(valid)


def test_ulmfit_from_scratch_on_imdb_sample(imdb_sample: Path, tmp_path: Path) -> None:
    data = imdb_sample / "texts.csv"
    lm_cfg = 'name = "imdb_lm"\n' + _COMMON.format(kind="text_lm", path=data, bs=64, encoder="", epochs=2)
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
        kind="text_cls", path=data, bs=32, encoder=f'encoder = "{enc}"', epochs=6
    )
    clf = Session(parse_config(cls_cfg), tmp_path)
    assert clf.start_fit(epochs=6).ok
    assert clf.wait(900)
    accs = [round(100 * row["accuracy"], 1) for row in clf.history()]
    acc = accs[-1]
    assert clf.persist.parent_id == lm_run  # the classifier's journal run is linked to the LM's
    clf.close()
    print(
        f"LM valid perplexity by epoch {ppl}; classifier valid accuracy by epoch {accs}; majority {_majority_pct(data):.1f}"
    )
    assert acc >= _majority_pct(data) + 10, (acc, _majority_pct(data))
