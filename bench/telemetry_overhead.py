"""Telemetry overhead: training steps/s with the default Telemetry callback on vs off, alternating in one process.

CPU: labcon's simple_cnn on 28 px (bs 64). CUDA (when available): xresnet18, bf16 autocast, 128 px (bs 128).
Prints one JSON object per case with steps/s and the ratio on/off (target >= 0.95). For the ratios of the
raw loop in lockstep (Runner and Telemetry side by side) see bench/runner_overhead.py.
Usage: python bench/telemetry_overhead.py [--rounds 7] [--batches 40] [--device cpu|cuda] [--threads N]
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import make_batches  # noqa: E402
from torch import nn

from labcon.core.callbacks.precision import MixedPrecision
from labcon.core.runner import Runner
from labcon.core.telemetry import Telemetry
from labcon.data.loaders import DataLoaders
from labcon.nn.models import simple_cnn
from labcon.nn.xresnet import xresnet18


def timed_fit(runner: Runner, device: torch.device) -> float:
    """Seconds for one fit(1) (training batches plus one validation batch)."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    runner.fit(1)
    sync()
    return time.perf_counter() - t0


def run_case(
    name: str,
    model: nn.Module,
    shape: tuple[int, ...],
    bs: int,
    n_batches: int,
    rounds: int,
    device: torch.device,
    extra_cbs: Any = (),
) -> dict[str, Any]:
    train = make_batches(n_batches, bs, shape, device)
    valid = train[:1]
    tel = Telemetry()
    runners = {
        "off": Runner(copy.deepcopy(model), DataLoaders(train, valid), device=device, cbs=[*extra_cbs()]),
        "on": Runner(copy.deepcopy(model), DataLoaders(train, valid), device=device, cbs=[*extra_cbs(), tel]),
    }
    for r in runners.values():  # warm-up: allocator, kernels, telemetry buffers
        timed_fit(r, device)
    times: dict[str, list[float]] = {"off": [], "on": []}
    for i in range(rounds):
        order = ("off", "on") if i % 2 == 0 else ("on", "off")
        for k in order:
            times[k].append(timed_fit(runners[k], device))
    ratios = [off / on for off, on in zip(times["off"], times["on"], strict=True)]
    snap = tel.snapshot()
    return {
        "case": name,
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "batches_per_round": n_batches,
        "batch_size": bs,
        "rounds": rounds,
        "telemetry_layers": len(tel.layers),
        "telemetry_reports": snap.n_reports if snap is not None else 0,
        "steps_per_s_off": round(n_batches / statistics.median(times["off"]), 2),
        "steps_per_s_on": round(n_batches / statistics.median(times["on"]), 2),
        "ratio_on_off_median": round(statistics.median(ratios), 4),
        "ratio_on_off_of_medians": round(statistics.median(times["off"]) / statistics.median(times["on"]), 4),
        # The fastest round of each is the least disturbed by other processes on a shared machine.
        "ratio_on_off_of_mins": round(min(times["off"]) / min(times["on"]), 4),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--batches", type=int, default=40)
    ap.add_argument("--device", choices=["cpu", "cuda", "auto"], default="auto")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave as is)")
    ap.add_argument("--gpu-bs", type=int, default=128)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cuda = torch.cuda.is_available() and args.device in ("cuda", "auto")
    if args.device in ("cpu", "auto"):
        res = run_case(
            "simple_cnn 28px fp32",
            simple_cnn(1, 10),
            (1, 28, 28),
            64,
            args.batches,
            args.rounds,
            torch.device("cpu"),
            extra_cbs=lambda: [],
        )
        print(json.dumps(res), flush=True)
    if cuda:
        torch.backends.cudnn.benchmark = True
        res = run_case(
            "xresnet18 128px bf16",
            xresnet18(3, 10),
            (3, 128, 128),
            args.gpu_bs,
            args.batches,
            args.rounds,
            torch.device("cuda"),
            extra_cbs=lambda: [MixedPrecision("bf16")],
        )
        print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
