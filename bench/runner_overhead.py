"""Framework cost in lockstep: a raw PyTorch step after each framework step, same model, data and optimizer.

Side by side in one run: labcon's Runner (default callbacks) and the Runner with Telemetry on, each as a
ratio of the raw loop's step time (1.0: no cost): the ratio of totals over the step pairs where neither step
took over twice its median (robust on a shared machine), and the plain ratio of totals. Targets: Runner >= 0.99,
Telemetry on >= 0.97.
CPU: simple_cnn on 28 px, bs 64. CUDA: xresnet18, bf16 autocast, 128 px, bs 128.
Usage: python bench/runner_overhead.py [--rounds 5] [--batches 40] [--device cpu|cuda] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import make_batches  # noqa: E402
from lockstep import Lockstep, raw_step_fn, twin  # noqa: E402

from labcon import DataLoaders, MixedPrecision, Runner, Telemetry, cross_entropy
from labcon.nn.models import simple_cnn

TARGETS = {"runner": 0.99, "telemetry": 0.97}


def make_case(
    name: str, base: torch.nn.Module, train: list, dev: torch.device, amp: torch.dtype | None, clock: str
) -> tuple[Runner, Lockstep]:
    """A Runner reading from a Lockstep that drives a raw twin of the same model."""
    m_fw, m_raw = twin(base, dev)
    opt_raw = torch.optim.Adam(m_raw.parameters(), lr=1e-3)
    lock = Lockstep(train, raw_step_fn(m_raw, opt_raw, cross_entropy, amp), clock)
    cbs: list[Any] = [MixedPrecision("bf16")] if amp is not None else []
    if name == "telemetry":
        cbs.append(Telemetry())
    runner = Runner(
        m_fw, DataLoaders(lock, train[:1]), opt_func=torch.optim.Adam, lr=1e-3, cbs=cbs, device=dev
    )
    return runner, lock


def measure(rounds: int, batches: int, dev: torch.device, clock: str = "wall") -> dict[str, Any]:
    """Ratios raw/framework for the Runner and for the Runner with Telemetry, interleaved round by round."""
    if dev.type == "cuda":
        from labcon.nn.xresnet import xresnet18

        torch.backends.cudnn.benchmark = True
        base, shape, bs, amp, model = (
            xresnet18(c_in=3, n_out=10),
            (3, 128, 128),
            128,
            torch.bfloat16,
            "xresnet18",
        )
    else:
        base, shape, bs, amp, model = simple_cnn(1, 10), (1, 28, 28), 64, None, "simple_cnn"
    train = make_batches(batches, bs, shape, dev)
    cases = {k: make_case(k, base, train, dev, amp, clock) for k in TARGETS}
    for runner, lock in cases.values():  # warm-up: allocator, kernels, telemetry buffers
        runner.fit(1)
        lock.reset()
    per_round: dict[str, list[float]] = {k: [] for k in cases}
    for i in range(rounds):
        order = list(cases) if i % 2 == 0 else list(reversed(cases))
        for k in order:
            runner, lock = cases[k]
            n0 = len(lock.raw)
            runner.fit(1)
            per_round[k].append(sum(lock.raw[n0:]) / sum(lock.framework[n0:]))
    out: dict[str, Any] = {
        "bench": "runner_overhead (lockstep)",
        "device": str(dev) if dev.type == "cpu" else torch.cuda.get_device_name(dev),
        "model": model,
        "batch_size": bs,
        "batches_per_round": batches,
        "rounds": rounds,
        "threads": torch.get_num_threads(),
        "clock": clock,
    }
    for k, (_, lock) in cases.items():
        out[k] = {
            **lock.summary(),
            "ratio_of_totals_median_of_rounds": round(statistics.median(per_round[k]), 4),
            "target": TARGETS[k],
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batches", type=int, default=40)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    ap.add_argument(
        "--clock", choices=["wall", "cpu"], default="wall", help="cpu: process CPU time (CPU only)"
    )
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    res = measure(args.rounds, args.batches, torch.device(args.device), args.clock)
    print(json.dumps(res, indent=2))
    print(
        "ratio of the raw loop:  "
        + "   ".join(f"{k} {res[k]['ratio_trimmed']:.3f} (>= {TARGETS[k]})" for k in TARGETS)
        + "   (ratio of totals, outlier steps dropped)",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
