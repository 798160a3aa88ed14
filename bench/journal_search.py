"""Journal search latency over a generated journal (default 10,000 runs and 1,000,000 events).

    python bench/journal_search.py [--runs 10000] [--events 1000000] [--rounds 30] [--db PATH]

Builds the journal through the real schema (triggers, FTS index) with executemany in big
transactions, then times typical queries round-robin (one of each per round, so they share
the same cache conditions) and prints p50/p95 per query. Target: p95 < 50 ms for a typical query.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from labcon.session.journal import Journal, config_params  # noqa: E402

WORDS = (
    "loss accuracy batch epoch learning rate warmup schedule augment resize crop flip noise layer "
    "activation gradient norm weight decay momentum optimizer adam sgd lamb cosine cycle valid train "
    "split dataset image text token vocab embedding dropout head body freeze unfreeze finetune "
    "pretrained checkpoint resume pause stop memory gpu speed throughput precision bf16 fp16 slower "
    "faster better worse stable unstable spike nan ok fine good bad odd try again next maybe"
).split()
SPECIAL = [
    "plateau",
    "diverged",
    "overfitting",
    "label smoothing",
    "mixup",
    "cutout",
    "promising",
    "regression",
]
COMMANDS = [
    "set lr {lr:.1e}",
    "set wd {wd}",
    "pause",
    "resume",
    "add_cb mixup alpha=0.4",
    "remove_cb mixup",
    "add_cb cutout size=16",
    "freeze body",
    "unfreeze",
    "hook add body.{n} stats",
    "schedule lr cosine {lr:.1e}",
    "stop",
]
TAGS = ["baseline", "mixup", "cutout", "ls", "ablation", "sweep", "bf16", "fp16", "xresnet18", "xresnet34"]
STATUSES = ["done"] * 80 + ["stopped"] * 8 + ["failed"] * 5 + ["crashed"] * 5 + ["running"] * 2
YEAR = dt.datetime(2026, 1, 1).timestamp()


def make_config(rng: random.Random, i: int) -> tuple[str, int]:
    seed = rng.randrange(10_000)
    lr = 10 ** rng.uniform(-5, -1)
    cfg = (
        f'name = "exp-{i:04d}"\nseed = {seed}\n\n[data]\nbs = {rng.choice([32, 64, 128, 256])}\n'
        f'size = {rng.choice([64, 128, 160])}\n\n[model]\narch = "{rng.choice(["simple_cnn", "xresnet18", "xresnet34"])}"\n'
        f'norm = "{rng.choice(["batch", "layer", "group"])}"\n\n[train]\nepochs = {rng.randint(1, 30)}\n'
        f'lr = {lr:.3g}\nwd = {rng.choice([0.0, 1e-4, 1e-2, 0.1])}\nopt = "{rng.choice(["adam", "sgd", "lamb"])}"\n'
    )
    return cfg, seed


def note(rng: random.Random) -> str:
    words = rng.choices(WORDS, k=rng.randint(5, 12))
    if rng.random() < 0.3:
        words.insert(rng.randrange(len(words)), rng.choice(SPECIAL))
    return " ".join(words)


def generate(path: Path, n_runs: int, n_events: int, seed: int = 0) -> float:
    """Fill a fresh journal at `path`; returns seconds taken."""
    rng = random.Random(seed)
    t0 = time.perf_counter()
    j = Journal(path)
    conn = j._conn
    # Bulk load only: no fsync per checkpoint, bigger page cache (the journal's own settings stay as they are).
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("PRAGMA cache_size = -262144")
    per_run = max(1, n_events // n_runs)
    env = json.dumps({"python": "3.11", "torch": "2.13", "host": "bench"})
    with j.transaction():
        runs, params, tags, metrics, epochs = [], [], [], [], []
        for i in range(1, n_runs + 1):
            cfg, s = make_config(rng, i)
            started = YEAR + i * (365 * 86400 / n_runs)
            status = rng.choice(STATUSES)
            acc = rng.uniform(0.5, 0.99)
            final = {"accuracy": acc, "valid_loss": 2.0 * (1 - acc)} if status != "running" else {}
            runs.append(
                (i, f"exp-{i % 500:04d}", (i - 1) if rng.random() < 0.2 and i > 1 else None, cfg, s, "v0.1.0",
                 env, "bench", 1, started, None if status == "running" else started + 3600, status,
                 json.dumps(final))
            )  # fmt: skip
            params += [(i, k, v) for k, v in config_params(cfg, s).items()]
            tags += [(i, t) for t in rng.sample(TAGS, rng.randint(0, 3))]
            metrics += [(i, k, v) for k, v in final.items()]
            epochs += [
                (i, e, name, rng.random())
                for e in range(5)
                for name in ("train_loss", "valid_loss", "accuracy")
            ]
        conn.executemany("INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", runs)
        conn.executemany("INSERT INTO params VALUES (?, ?, ?)", params)
        conn.executemany("INSERT INTO tags VALUES (?, ?)", tags)
        conn.executemany("INSERT INTO run_metrics VALUES (?, ?, ?)", metrics)
        conn.executemany("INSERT INTO epoch_metrics VALUES (?, ?, ?, ?)", epochs)
    kinds = ["command"] * 25 + ["note"] * 5 + ["info"] * 65 + ["error"] * 3 + ["cancel"] * 2
    chunk: list[tuple[object, ...]] = []
    for i in range(1, n_runs + 1):
        started = YEAR + i * (365 * 86400 / n_runs)
        for k in range(per_run):
            kind = rng.choice(kinds)
            if kind == "command":
                text = rng.choice(COMMANDS).format(
                    lr=10 ** rng.uniform(-5, -1), wd=rng.choice([0, 0.01]), n=k % 4
                )
            elif kind == "note":
                text = note(rng)
            elif kind == "error":
                text = rng.choice(["CUDA out of memory", "loss is nan", "dataloader worker died"])
            else:
                text = f"epoch {k // 20} done" if kind == "info" else "cancelled batch"
            chunk.append((i, kind, text, k // 20, k * 10, started + k, None))
        if len(chunk) >= 200_000 or i == n_runs:
            with j.transaction():
                conn.executemany(
                    "INSERT INTO events (run_id, kind, text, epoch, iteration, time, data) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    chunk,
                )
            chunk = []
    conn.execute("INSERT INTO search_fts(search_fts) VALUES ('optimize')")
    conn.execute("ANALYZE")
    j.close()
    return time.perf_counter() - t0


QUERIES = {
    "free text (rare word)": "plateau",
    "free text (common word)": "lr",
    "phrase": '"label smoothing"',
    "prefix": "overfit*",
    "boolean": "mixup AND NOT diverged",
    "field filters": "status:done tag:mixup",
    "session": "session:exp-0042",
    "metric comparison": "accuracy>=0.95",
    "config comparison": "lr>1e-3",
    "date range": "since:2026-06-01 until:2026-06-30",
    "has event kind": "has:error status:crashed",
    "combined": "(mixup OR cutout) status:done lr>1e-3 accuracy>=0.9 since:2026-03-01",
    "combined text": '"set lr" NOT tag:baseline promising',
}


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--db", default=None, help="reuse/keep the journal here (generated when missing)")
    args = ap.parse_args()
    tmp = None
    if args.db:
        path = Path(args.db)
    else:
        tmp = tempfile.TemporaryDirectory()
        path = Path(tmp.name) / "journal.db"
    if not path.exists():
        secs = generate(path, args.runs, args.events)
        print(
            f"generated {args.runs} runs, {args.events} events in {secs:.1f} s ({path.stat().st_size / 2**20:.0f} MiB)"
        )
    j = Journal(path)
    times: dict[str, list[float]] = {name: [] for name in QUERIES}
    hits: dict[str, int] = {}
    for name, q in QUERIES.items():  # warm-up: page cache and statement cache
        hits[name] = j.count(q)
        j.search(q)
    for _ in range(args.rounds):
        for name, q in QUERIES.items():
            t0 = time.perf_counter()
            j.search(q, limit=50)
            times[name].append((time.perf_counter() - t0) * 1000)
    rid = j.search("", limit=1)[0]["id"]
    reads = {
        "get_run": lambda: j.get_run(rid),
        "events(run)": lambda: j.events(rid),
        "epochs(run)": lambda: j.epochs(rid),
    }
    for name, fn in reads.items():
        times[name] = []
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - t0) * 1000)
    j.close()
    print(f"{'query':<26} {'matches':>8} {'p50 ms':>8} {'p95 ms':>8}")
    for name, ts in times.items():
        q = QUERIES.get(name, "")
        print(f"{name:<26} {hits.get(name, ''):>8} {statistics.median(ts):8.2f} {pct(ts, 0.95):8.2f}   {q}")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
