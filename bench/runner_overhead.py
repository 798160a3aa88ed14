"""Runner (default callbacks) vs a hand-written PyTorch loop: same model, data and optimizer, alternating.

Prints JSON with the per-epoch times and the ratio runner/hand (target: <= 1.03 on CPU for a small CNN,
<= 1.01 on a GPU for a ResNet-18-size model in bf16).
Usage: python bench/runner_overhead.py [--rounds 7] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import make_batches  # noqa: E402
from torch import nn

from labcon import Adam, DataLoaders, MixedPrecision, Runner, cross_entropy
from labcon.core.metrics import accuracy
from labcon.nn.models import simple_cnn


def hand_loop(
    model: nn.Module, opt: torch.optim.Optimizer, train: list, valid: list, amp: torch.dtype | None
) -> float:
    dev = next(model.parameters()).device
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    model.train()
    losses = []
    for xb, yb in train:
        with torch.autocast(dev.type, dtype=amp, enabled=amp is not None):
            loss = cross_entropy(model(xb), yb)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.detach())
    model.eval()
    tot = torch.zeros(2, device=dev)
    with torch.no_grad():
        for xb, yb in valid:
            with torch.autocast(dev.type, dtype=amp, enabled=amp is not None):
                pred = model(xb)
            tot += torch.stack([cross_entropy(pred, yb), accuracy(pred, yb)]) * len(yb)
    torch.stack(losses).cpu()
    tot.cpu()
    sync()
    return time.perf_counter() - t0


def runner_epoch(runner: Runner) -> float:
    sync = torch.cuda.synchronize if runner.device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    runner.fit(1)
    sync()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    if dev.type == "cuda":
        from labcon.nn.xresnet import xresnet18

        torch.backends.cudnn.benchmark = True
        base, shape, bs, n_train, amp = xresnet18(c_in=3, n_out=10), (3, 128, 128), 128, 60, torch.bfloat16
    else:
        base, shape, bs, n_train, amp = simple_cnn(1, 10), (1, 28, 28), 64, 60, None
    train, valid = make_batches(n_train, bs, shape, dev), make_batches(n_train // 6, bs, shape, dev)
    m_hand, m_run = copy.deepcopy(base).to(dev), copy.deepcopy(base).to(dev)
    opt_hand = Adam(m_hand.parameters(), lr=1e-3)
    cbs = [MixedPrecision("bf16")] if amp is not None else []
    runner = Runner(
        m_run, DataLoaders(train, valid), opt_func=Adam, lr=1e-3, metrics=[accuracy], cbs=cbs, device=dev
    )
    # Warm up both (allocator, cudnn autotune, lazy inits).
    hand_loop(m_hand, opt_hand, train, valid, amp)
    runner_epoch(runner)
    hand_t, run_t = [], []
    for i in range(args.rounds):
        # Alternate which goes first so drift (thermal, other load) hits both equally.
        if i % 2:
            hand_t.append(hand_loop(m_hand, opt_hand, train, valid, amp))
            run_t.append(runner_epoch(runner))
        else:
            run_t.append(runner_epoch(runner))
            hand_t.append(hand_loop(m_hand, opt_hand, train, valid, amp))
    res = {
        "bench": "runner_overhead",
        "device": str(dev) if dev.type == "cpu" else torch.cuda.get_device_name(dev),
        "model": type(base).__name__ if dev.type == "cuda" else "small_cnn",
        "batches_per_epoch": n_train,
        "hand_median_s": statistics.median(hand_t),
        "runner_median_s": statistics.median(run_t),
        "ratio_runner_over_hand": statistics.median(run_t) / statistics.median(hand_t),
        "target": 1.01 if dev.type == "cuda" else 1.03,
    }
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
