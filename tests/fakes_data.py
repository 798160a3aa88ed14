"""Fixed, realistic data behind FakeSession: telemetry, a journal, epoch and batch histories."""

from __future__ import annotations

import math
import re
from typing import Any

from labcon.core.telemetry_history import LayerStats

N_TRAIN, N_VALID = 100, 20
LAYERS = (
    "stem.0",
    "stem.1",
    "layers.0.conv1",
    "layers.0.conv2",
    "layers.1.conv1",
    "layers.1.conv2",
    "head.fc",
)


def _lcg(seed: int):
    """A tiny deterministic pseudo-random stream (no global RNG state, identical on every platform)."""
    x = seed
    while True:
        x = (1103515245 * x + 12345) % (2**31)
        yield x / 2**31


class FakeTelemetry:
    """A TelemetrySnapshot look-alike: 60 reports for 7 layers, one dead and one exploding."""

    def __init__(self, train_iter: int = 300, n: int = 60) -> None:
        self.train_iter = train_iter
        self.layers = list(LAYERS)
        self.hist_range = (-4.0, 4.0)
        self.flags = {"layers.1.conv2": "dead", "head.fc": "exploding"}
        self._n = n
        self.latest = {name: self._stats(i, n - 1) for i, name in enumerate(self.layers)}

    def _stats(self, i: int, t: int) -> LayerStats:
        name = self.layers[i]
        decay = math.exp(-t / 25)
        if self.flags.get(name) == "dead":
            return LayerStats(0.01 * decay, 0.05 + 0.5 * decay, min(0.95, 0.3 + t / 70), 0.01, 1e-5)
        if self.flags.get(name) == "exploding":
            return LayerStats(0.2 + t / 20, 1.0 + (t / 12) ** 2, 0.02, 5.0 + t, 0.05)
        return LayerStats(0.1 * i * decay, 1.0 - 0.3 * decay + 0.02 * i, 0.1 + 0.05 * i * decay, 0.5, 1e-3)

    def history(self, layer: str) -> dict[str, list[float]]:
        """Per-report series for one layer."""
        i = self.layers.index(layer)
        rows = [self._stats(i, t) for t in range(self._n)]
        out: dict[str, list[float]] = {"iters": [float(t * 5) for t in range(self._n)]}
        for key in ("mean", "std", "near_zero", "grad_norm", "update_ratio"):
            out[key] = [getattr(r, key) for r in rows]
        return out

    def history_tail(self, layer: str, n: int) -> dict[str, list[float]]:
        """The last n reports of history(layer)."""
        return {k: v[-n:] for k, v in self.history(layer).items()}

    def heatmap(self, layer: str) -> list[list[float]]:
        """Rows = time, 40 bins of raw counts: a Gaussian whose width follows the layer's std."""
        i = self.layers.index(layer)
        lo, hi = self.hist_range
        out = []
        for t in range(self._n):
            s = self._stats(i, t)
            row = []
            for b in range(40):
                x = lo + (b + 0.5) * (hi - lo) / 40
                z = (x - s.mean) / max(s.std, 1e-3)
                row.append(1000.0 * math.exp(-0.5 * z * z) + (800.0 * s.near_zero if b in (19, 20) else 0.0))
            out.append(row)
        return out


class FakeJournal:
    """A Journal look-alike: five runs, a tiny query language (words, field:value, name>number)."""

    def __init__(self) -> None:
        base = {"model": "xresnet18", "opt": "adam", "bs": 64}
        self.runs: dict[int, dict[str, Any]] = {}
        specs = [
            (1, "baseline", "done", 1e-3, 0.412, 0.871, "first try"),
            (2, "mixup", "done", 3e-3, 0.388, 0.889, "mixup alpha=0.4"),
            (3, "high-lr", "failed", 1e-1, float("nan"), 0.1, "diverged at epoch 2"),
            (4, "one-cycle", "done", 4e-3, 0.351, 0.902, "fit_one_cycle 5"),
            (5, "current", "running", 2e-3, 0.402, 0.880, "live run"),
        ]
        for rid, name, status, lr, vl, acc, note in specs:
            self.runs[rid] = {
                "id": rid,
                "name": name,
                "status": status,
                "started": f"2026-11-0{rid} 10:00",
                "epochs": 5,
                "lr": lr,
                "valid_loss": vl,
                "accuracy": acc,
                "note": note,
                "config": {**base, "lr": lr, "epochs": 5},
            }
        self.queries: list[str] = []

    def search(self, query: str) -> list[dict[str, Any]]:
        """Runs matching every term of `query` (free text, status:X, name>N / name<N)."""
        self.queries.append(query)
        if "((" in query:
            raise ValueError("unbalanced parenthesis in query; close every '(' with ')'")
        out = []
        for run in self.runs.values():
            if all(self._match(run, term) for term in query.split()):
                out.append({k: v for k, v in run.items() if k != "config"})
        return out

    @staticmethod
    def _match(run: dict[str, Any], term: str) -> bool:
        m = re.fullmatch(r"([a-z_]+)([<>])([-+.\deE]+)", term)
        if m:
            v = run.get(m[1])
            if not isinstance(v, float | int) or math.isnan(v):
                return False
            return v > float(m[3]) if m[2] == ">" else v < float(m[3])
        if ":" in term:
            k, v = term.split(":", 1)
            return str(run.get(k, "")) == v
        return term.lower() in (run["name"] + " " + run["note"]).lower()

    def get_run(self, run_id: int) -> dict[str, Any]:
        """One run's record."""
        return dict(self.runs[int(run_id)])

    def diff(self, a: int, b: int) -> dict[str, Any]:
        """Config and metric differences between two runs."""
        ra, rb = self.runs[int(a)], self.runs[int(b)]
        config = {
            k: (ra["config"].get(k), rb["config"].get(k))
            for k in ra["config"]
            if ra["config"].get(k) != rb["config"].get(k)
        }
        metrics = {k: (ra[k], rb[k]) for k in ("valid_loss", "accuracy")}
        return {"a": int(a), "b": int(b), "config": config, "metrics": metrics}

    def events(self, run_id: int) -> list[dict[str, Any]]:
        """Commands applied during the run."""
        return [{"epoch": 1, "iter": 40, "kind": "command", "text": "set lr=0.002"}]

    def epochs(self, run_id: int) -> list[dict[str, Any]]:
        """Epoch rows of the run."""
        return make_history(3)


def make_history(n: int) -> list[dict[str, float]]:
    """n deterministic epoch rows."""
    return [
        {
            "epoch": e,
            "train_loss": round(1.9 * 0.62**e + 0.25, 4),
            "valid_loss": round(1.7 * 0.66**e + 0.3, 4),
            "accuracy": round(0.95 - 0.55 * 0.6**e, 4),
            "time": 12.0 + e,
        }
        for e in range(n)
    ]


def make_batch_history(n: int) -> dict[str, list[float]]:
    """n deterministic batches of one-cycle training."""
    rnd = _lcg(7)
    losses, smooth, lrs, moms = [], [], [], []
    avg = 0.0
    for i in range(n):
        base = 2.3 * math.exp(-i / 120) + 0.3
        loss = base + 0.25 * (next(rnd) - 0.5)
        avg = 0.98 * avg + 0.02 * loss
        losses.append(loss)
        smooth.append(avg / (1 - 0.98 ** (i + 1)))
        pct = i / max(1, n - 1)
        if pct < 0.25:
            lr = 1e-3 * (0.1 + 0.9 * math.sin(math.pi * pct / 0.25 / 2))
        else:
            lr = 1e-3 * (1 + math.cos(math.pi * (pct - 0.25) / 0.75)) / 2
        lrs.append(lr)
        moms.append(0.95 - 0.1 * (lr / 1e-3))
    return {"losses": losses, "smooth_losses": smooth, "lrs": lrs, "moms": moms}
