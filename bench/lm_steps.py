"""LM training steps/s: AWD-LSTM with every dropout on vs a plain nn.LSTM model of the same size.

    python bench/lm_steps.py [--emb 100] [--hid 200] [--layers 2] [--vocab 2000] [--bs 32] [--bptt 50] [--steps 8]

Both run the same plain loop (forward, cross-entropy, backward, Adam step) on the same random batches,
in alternating rounds (A B B A), timed by wall clock and by this process's CPU time (the CPU time is the
steadier figure on a shared machine).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from labcon.nn.awd_lstm import PlainLSTMLM, awd_lstm_lm  # noqa: E402


def _round(
    model: torch.nn.Module, opt: torch.optim.Optimizer, batches: list, vocab: int
) -> tuple[float, float]:
    w0, c0 = time.perf_counter(), time.process_time()
    for x, y in batches:
        loss = F.cross_entropy(model(x).view(-1, vocab), y.view(-1))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return time.perf_counter() - w0, time.process_time() - c0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for k, v in (
        ("emb", 100),
        ("hid", 200),
        ("layers", 2),
        ("vocab", 2000),
        ("bs", 32),
        ("bptt", 50),
        ("steps", 8),
    ):
        ap.add_argument(f"--{k}", type=int, default=v)
    a = ap.parse_args()
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    batches = [
        (
            torch.randint(0, a.vocab, (a.bs, a.bptt), generator=g),
            torch.randint(0, a.vocab, (a.bs, a.bptt), generator=g),
        )
        for _ in range(a.steps)
    ]
    models = {
        "awd_lstm": awd_lstm_lm(a.vocab, a.emb, a.hid, a.layers, pad_idx=1).train(),
        "nn.LSTM": PlainLSTMLM(a.vocab, a.emb, a.hid, a.layers).train(),
    }
    opts = {k: torch.optim.Adam(m.parameters(), lr=1e-3) for k, m in models.items()}
    for k, m in models.items():  # warm-up
        _round(m, opts[k], batches[:2], a.vocab)
    wall = dict.fromkeys(models, 0.0)
    cpu = dict.fromkeys(models, 0.0)
    for k in ("awd_lstm", "nn.LSTM", "nn.LSTM", "awd_lstm"):
        w, c = _round(models[k], opts[k], batches, a.vocab)
        wall[k] += w
        cpu[k] += c
    n = 2 * a.steps
    print(
        f"shape: vocab {a.vocab}, emb {a.emb}, hid {a.hid}, {a.layers} layers, bs {a.bs}, bptt {a.bptt}; {n} steps each"
    )
    for k in models:
        print(f"{k:<9} {n / wall[k]:6.2f} steps/s wall   {n / cpu[k]:6.2f} steps/s of CPU time")
    print(
        f"awd_lstm / nn.LSTM speed: {wall['nn.LSTM'] / wall['awd_lstm']:.2f} (wall), "
        f"{cpu['nn.LSTM'] / cpu['awd_lstm']:.2f} (CPU time)"
    )


if __name__ == "__main__":
    main()
