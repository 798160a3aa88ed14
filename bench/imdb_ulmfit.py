"""ULMFiT from scratch on imdb_sample, full size: LM epochs then a classifier on its encoder, through real sessions.

    python bench/imdb_ulmfit.py [--data ../shared/data/imdb_sample] [--lm-epochs 2] [--cls-epochs 6] [--emb 32]
        [--hid 64] [--max-vocab 2000] [--bs 64] [--bptt 60] [--seed 0] [--threads 1]

--data defaults to $LABCON_SHARED_DATA/imdb_sample, else ../shared/data/imdb_sample beside the checkout.

Prints the LM's validation perplexity per epoch, the classifier's validation accuracy per epoch against the
majority class, and the wall and CPU seconds of each stage (tests/test_text_imdb.py runs a smaller version as a test).
"""

from __future__ import annotations

import argparse
import csv
import os
import resource
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from labcon.session.config import parse_config  # noqa: E402
from labcon.session.session import Session  # noqa: E402

CONFIG = """
name = "{name}"
seed = {seed}
[data]
kind = "{kind}"
path = "{path}"
valid_col = "is_valid"
max_vocab = {max_vocab}
bs = {bs}
bptt = {bptt}
num_workers = 2
[model]
arch = "awd_lstm"
emb_sz = {emb}
n_hid = {hid}
n_layers = 2
drop_mult = 0.3
{encoder}
[train]
lr = 1e-2
device = "cpu"
[telemetry]
enabled = false
"""


def _cpu() -> float:
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def _stage(cfg: str, home: Path, epochs: int) -> tuple[Session, float, float]:
    w0, c0 = time.perf_counter(), _cpu()
    s = Session(parse_config(cfg), home)
    assert s.start_fit(epochs=epochs).ok
    if not s.wait(3600):
        raise SystemExit("the fit did not finish within an hour")
    return s, time.perf_counter() - w0, _cpu() - c0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for k, v in (
        ("lm-epochs", 2),
        ("cls-epochs", 6),
        ("emb", 32),
        ("hid", 64),
        ("max-vocab", 2000),
        ("bs", 64),
        ("bptt", 60),
        ("seed", 0),
        ("threads", 1),
    ):
        ap.add_argument(f"--{k}", type=int, default=v)
    shared = Path(
        os.environ.get("LABCON_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
    )
    ap.add_argument("--data", default=str(shared / "imdb_sample"))
    a = ap.parse_args()
    # One thread by default: on a shared 2-core box OpenMP spin-waiting costs several times the CPU of one.
    torch.set_num_threads(a.threads)
    data = Path(a.data) / "texts.csv"
    if not data.is_file():
        raise SystemExit(f"{data} is missing: give --data the imdb_sample folder (texts.csv inside)")
    with data.open(encoding="utf-8", newline="") as f:
        valid = [r["label"] for r in csv.DictReader(f) if r["is_valid"] == "True"]
    majority = 100 * Counter(valid).most_common(1)[0][1] / len(valid)
    sizes = {"seed": a.seed, "max_vocab": a.max_vocab, "bptt": a.bptt, "emb": a.emb, "hid": a.hid}
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        lm_cfg = CONFIG.format(name="lm", kind="text_lm", path=data, bs=a.bs, encoder="", **sizes)
        lm, lm_wall, lm_cpu = _stage(lm_cfg, home, a.lm_epochs)
        ppl = [round(r["perplexity"], 1) for r in lm.history()]
        lm.close()
        enc = f'encoder = "{home / "lm" / "encoder.pt"}"'
        cls_cfg = CONFIG.format(name="cls", kind="text_cls", path=data, bs=a.bs // 2, encoder=enc, **sizes)
        clf, cls_wall, cls_cpu = _stage(cls_cfg, home, a.cls_epochs)
        accs = [round(100 * r["accuracy"], 1) for r in clf.history()]
        clf.close()
    print(
        f"LM valid perplexity by epoch: {ppl}   ({lm_wall:.0f} s wall, {lm_cpu:.0f} s CPU, tokenising included)"
    )
    print(f"classifier valid accuracy by epoch: {accs} vs majority {majority:.1f} %")
    print(f"   ({cls_wall:.0f} s wall, {cls_cpu:.0f} s CPU); threads {a.threads}")


if __name__ == "__main__":
    main()
