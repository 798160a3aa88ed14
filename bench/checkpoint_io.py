"""Atomic save_checkpoint (temp file + fsync + rename + dir fsync + prune) vs a bare torch.save, alternating.

Also load_latest (weights_only) vs a bare torch.load(weights_only=False). Prints JSON with median times and
the ratios labcon/bare for a ResNet-18-size state (model + Adam state + RNG state).
Usage: python bench/checkpoint_io.py [--rounds 7] [--mparams 11]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from labcon.session.checkpoint import load_latest, rng_state, save_checkpoint


def make_state(mparams: float) -> dict:
    """Model weights plus two Adam moments of the same size, like a real checkpoint."""
    n = int(mparams * 1e6)
    weights = {f"layer{i}.weight": torch.randn(n // 8) for i in range(8)}
    moments = {
        k: {"exp_avg": torch.zeros_like(v), "exp_avg_sq": torch.zeros_like(v)} for k, v in weights.items()
    }
    return {"epoch": 1, "train_iter": 100, "model": weights, "opt": moments, "rng": rng_state()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--mparams", type=float, default=11.0)
    args = ap.parse_args()
    state = make_state(args.mparams)
    times: dict[str, list[float]] = {"bare_save": [], "atomic_save": [], "bare_load": [], "load_latest": []}
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        for r in range(args.rounds):
            t = time.perf_counter()
            torch.save(state, d / "bare.pt")
            times["bare_save"].append(time.perf_counter() - t)
            t = time.perf_counter()
            save_checkpoint(d / "ckpts", {**state, "train_iter": r})
            times["atomic_save"].append(time.perf_counter() - t)
            t = time.perf_counter()
            torch.load(d / "bare.pt", weights_only=False)
            times["bare_load"].append(time.perf_counter() - t)
            t = time.perf_counter()
            load_latest(d / "ckpts")
            times["load_latest"].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    size_mb = sum(t.numel() * 4 for t in state["model"].values()) * 3 / 1e6
    print(
        json.dumps(
            {
                "state_mb": round(size_mb, 1),
                "median_s": {k: round(v, 4) for k, v in med.items()},
                "save_ratio": round(med["atomic_save"] / med["bare_save"], 3),
                "load_ratio": round(med["load_latest"] / med["bare_load"], 3),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
