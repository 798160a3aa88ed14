"""Host memory kept for reuse (labcon/core/allocator.py) vs glibc's default, side by side.

The setting is per process and cannot be undone, so each measurement is a fresh child process, the two kinds
alternated round by round (machine drift hits both). A child trains in a thread of its own (as a session trains)
and reports CPU time per step and page faults per step: the built-in job through its real loaders (`session`),
or labcon's Runner / a hand-written loop on in-memory batches (`runner`, `raw`).
Usage: python bench/host_memory.py [--workload session|runner|raw] [--model simple_cnn|xresnet18] [--size 32]
       [--bs 64] [--batches 60] [--passes 2] [--rounds 4] [--threads 1]
Prints JSON, then one line: steps/s of each kind and the speed-up.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def child(args: argparse.Namespace) -> dict[str, Any]:
    """One measurement in this process: a warm-up pass, then `--passes` timed passes in a training thread."""
    from labcon.core.allocator import keep_freed_memory

    kept = keep_freed_memory() if args.child == "keep" else False
    import torch
    from torch.nn import functional as F

    sys.path.insert(0, str(HERE))
    from common import make_batches

    from labcon import DataLoaders, Runner
    from labcon.nn.models import simple_cnn
    from labcon.nn.xresnet import xresnet18

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    out: dict[str, Any] = {"kept": kept}
    if args.workload == "session":
        import tempfile

        from labcon.session.config import parse_config
        from labcon.session.session import Session

        # `labcon run`'s job: the built-in dataset through its real loaders (worker processes, collate, batch
        # transforms), the default model and callbacks.
        session = Session(parse_config("", source="<built-in defaults>"), tempfile.mkdtemp(), journal=False)
        runner, n_batches = session.runner, len(session.dls.train)
        fit = runner.fit
    else:
        model = xresnet18(c_in=3, n_out=10) if args.model == "xresnet18" else simple_cnn(3, 10)
        train = make_batches(args.batches, args.bs, (3, args.size, args.size), torch.device("cpu"))
        n_batches = args.batches
        if args.workload == "runner":
            runner = Runner(
                model, DataLoaders(train, train[:1]), loss_func=F.cross_entropy, lr=1e-3, device="cpu"
            )
            fit = runner.fit
        else:
            opt = torch.optim.Adam(model.parameters(), lr=1e-3)

            def fit(n: int) -> None:
                for _ in range(n):
                    for xb, yb in train:
                        F.cross_entropy(model(xb), yb).backward()
                        opt.step()
                        opt.zero_grad(set_to_none=True)

    def work() -> None:
        fit(1)  # warm-up
        cpu0, faults0 = time.process_time(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        fit(args.passes)
        steps = args.passes * n_batches
        out["cpu_ms_per_step"] = 1e3 * (time.process_time() - cpu0) / steps
        out["faults_per_step"] = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults0) / steps

    t = threading.Thread(target=work)
    t.start()
    t.join()
    out["max_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--workload",
        choices=["session", "runner", "raw"],
        default="session",
        help="session: the built-in job through its real loaders; runner / raw: labcon's Runner / a hand-written "
        "loop on in-memory batches of --model",
    )
    ap.add_argument("--model", choices=["simple_cnn", "xresnet18"], default="simple_cnn")
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--bs", type=int, default=64)
    ap.add_argument("--batches", type=int, default=60)
    ap.add_argument("--passes", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--child", choices=["default", "keep"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return
    passed = sys.argv[1:]
    runs: dict[str, list[dict[str, Any]]] = {"default": [], "keep": []}
    for i in range(args.rounds):
        for kind in ("default", "keep") if i % 2 == 0 else ("keep", "default"):
            env = {**os.environ, "LABCON_KEEP_HOST_MEMORY": "1" if kind == "keep" else "0"}
            done = subprocess.run(
                [sys.executable, __file__, *passed, "--child", kind],
                capture_output=True,
                text=True,
                env=env,
                check=True,
            )
            runs[kind].append(json.loads(done.stdout.strip().splitlines()[-1]))
    med = {k: statistics.median(r["cpu_ms_per_step"] for r in v) for k, v in runs.items()}
    report = {
        "bench": "host memory kept for reuse",
        "workload": args.workload,
        "model": "built-in default" if args.workload == "session" else args.model,
        "input": [3, args.size, args.size],
        "batch_size": args.bs,
        "threads": args.threads,
        "runs": runs,
        "cpu_ms_per_step_median": {k: round(v, 3) for k, v in med.items()},
        "faults_per_step_median": {
            k: round(statistics.median(r["faults_per_step"] for r in v), 1) for k, v in runs.items()
        },
        "speedup": round(med["default"] / med["keep"], 3),
    }
    print(json.dumps(report, indent=2))
    print(
        f"{args.workload} {report['model']}: default {1e3 / med['default']:.1f} steps/s, kept "
        f"{1e3 / med['keep']:.1f} steps/s, x{report['speedup']:.3f} "
        f"(faults/step {report['faults_per_step_median']['default']:.0f} -> "
        f"{report['faults_per_step_median']['keep']:.0f})"
    )


if __name__ == "__main__":
    main()
