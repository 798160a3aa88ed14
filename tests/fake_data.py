"""Fixed, realistic data for the test fake: journal rows, telemetry, epoch and batch histories (no clock)."""

from __future__ import annotations

import math

import numpy as np

from labcon.core.telemetry_history import FIELDS, History, TelemetrySnapshot, make_snapshot
from labcon.core.timing import InputMeter
from labcon.session.journal import Journal

N_TRAIN, N_VALID = 100, 20
INPUT_BOUND = InputMeter.INPUT_BOUND
LAYERS = (
    "stem.0",
    "stem.1",
    "layers.0.conv1",
    "layers.0.conv2",
    "layers.1.conv1",
    "layers.1.conv2",
    "head.fc",
)
# Fixed journal times (2026-11-02 10:00 UTC + a day per run), so snapshots never depend on the clock.
T0 = 1793613600.0


def fill_journal(journal: Journal, session: str) -> int:
    """Five finished runs with real rows (config, epochs, commands, final metrics) at fixed times; the last id."""
    specs = [
        ("baseline", "done", 1e-3, 0.412, 0.871, "first try"),
        ("mixup", "done", 3e-3, 0.388, 0.889, "mixup alpha=0.4"),
        ("high-lr", "failed", 1e-1, math.nan, 0.1, "diverged at epoch 2"),
        ("one-cycle", "done", 4e-3, 0.351, 0.902, "fit_one_cycle 5"),
        (session, "stopped", 2e-3, 0.402, 0.880, "stopped to try a lower lr"),
    ]
    rid = 0
    for k, (name, status, lr, vl, acc, note) in enumerate(specs):
        config = f'name = "{name}"\nseed = 0\n[train]\nepochs = 5\nlr = {lr!r}\n'
        rid = journal.start_run(name, config, 0, env={}, code_version="test")
        for e, row in enumerate(make_history(3)):
            journal.log_epoch(rid, e, {k2: v for k2, v in row.items() if k2 != "epoch"})
        when = T0 + 86400 * k + 60
        journal.log_event(rid, "command", "set lr=0.002", 1, 140, {"point": "batch"}, when=when)
        journal.log_event(rid, "note", note, when=when)
        journal.end_run(rid, status, {"train_loss": round(vl * 0.9, 4), "valid_loss": vl, "accuracy": acc})
        with journal.transaction() as conn:  # fixed times: no clock in snapshots
            conn.execute(
                "UPDATE runs SET started = ?, ended = ?, host = 'lab', pid = 1 WHERE id = ?",
                (T0 + 86400 * k, T0 + 86400 * k + 300, rid),
            )
    return rid


def _stats(i: int, t: int) -> tuple[float, ...]:
    name = LAYERS[i]
    decay = math.exp(-t / 25)
    if name == "layers.1.conv2":  # dead
        return (0.01 * decay, 0.05 + 0.5 * decay, min(0.95, 0.3 + t / 70), 0.01, 1e-5)
    if name == "head.fc":  # exploding
        return (0.2 + t / 20, 1.0 + (t / 12) ** 2, 0.02, 5.0 + t, 0.05)
    return (0.1 * i * decay, 1.0 - 0.3 * decay + 0.02 * i, 0.1 + 0.05 * i * decay, 0.5, 1e-3)


def fake_telemetry(train_iter: int = 300, n: int = 60) -> TelemetrySnapshot:
    """A real TelemetrySnapshot: n reports of 7 layers, histograms a Gaussian following each layer's std."""
    lo, hi, bins = -4.0, 4.0, 40
    hist = History(list(LAYERS), bins, horizon=max(4, n))
    centres = lo + (np.arange(bins) + 0.5) * (hi - lo) / bins
    for t in range(n):
        row = np.zeros((len(LAYERS), len(FIELDS) + bins), dtype=np.float32)
        for i in range(len(LAYERS)):
            s = _stats(i, t)
            z = (centres - s[0]) / max(s[1], 1e-3)
            counts = 1000.0 * np.exp(-0.5 * z * z)
            counts[19:21] += 800.0 * s[2]
            row[i, : len(FIELDS)] = s
            row[i, len(FIELDS) :] = counts
        hist.append(t * 5, row)
    hist.ranges[:] = (lo, hi)
    return make_snapshot(hist, train_iter, dead_frac=0.5, explode_std=10.0)


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


def _lcg(seed: int):
    """A tiny deterministic pseudo-random stream (no global RNG state, identical on every platform)."""
    x = seed
    while True:
        x = (1103515245 * x + 12345) % (2**31)
        yield x / 2**31


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
