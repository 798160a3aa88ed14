"""One prepared GPU check: CUDA smoke tests plus the GPU benchmarks, results as one JSON file.

Run on a lent GPU machine (see the device tool), e.g.:
    pip install -q -e . && PYTHONUNBUFFERED=1 python bench/gpu_check.py --out $OUT/gpu_check.json
Each part runs in its own subprocess with a time limit, so one failure does not hide the others.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

SMOKE = r"""
import json, torch
from torch.utils.data import DataLoader, TensorDataset
from labcon import DataLoaders, MixedPrecision, Runner, Telemetry, accuracy
from labcon.nn.xresnet import xresnet18
assert torch.cuda.is_available(), "no CUDA device"
out = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__}
g = torch.Generator().manual_seed(0)
x, y = torch.randn(512, 3, 64, 64, generator=g), torch.randint(0, 10, (512,), generator=g)
dls = DataLoaders(DataLoader(TensorDataset(x, y), 64), DataLoader(TensorDataset(x[:128], y[:128]), 128))
for dtype in ("bf16", "fp16"):
    r = Runner(xresnet18(c_in=3, n_out=10), dls, metrics=[accuracy], cbs=[MixedPrecision(dtype)])
    r.fit(3)
    out[dtype] = {"rows": r.recorder.rows, "skipped": r.cb("mixed_precision").skipped_steps,
                  "learned": r.recorder.rows[-1]["train_loss"] < r.recorder.rows[0]["train_loss"]}
# Telemetry on the GPU (its no-sync property is unit-tested on CPU by counting host transfers).
tel = Telemetry(every=8)
r = Runner(xresnet18(c_in=3, n_out=10), dls, cbs=[tel])
r.recorder.flush_every = 8
r.fit(1)
torch.cuda.synchronize()
out["telemetry_layers"] = len(tel.snapshot().layers)
print("JSON" + json.dumps(out))
"""

# The timing pieces on the GPU: matmul ladder (GPU row), hand-written backprop, the profiler's CUDA-event path,
# the input-bound meter and the graph-break report.
TIMING = r"""
import json, torch
from labcon import DataLoaders, MixedPrecision, Runner, Telemetry
from labcon.core.callbacks.speed import ChannelsLast, Compile, graph_breaks
from labcon.core.profiler import run_profile
from labcon.foundations.backprop import bench_backprop
from labcon.foundations.matmul import bench_matmul
from labcon.nn.xresnet import xresnet18
assert torch.cuda.is_available(), "no CUDA device"
out = {}
out["matmul_256"] = [r.__dict__ for r in bench_matmul(256, 256, 256, max_seconds=5, gpu=True)]
out["matmul_1024"] = [r.__dict__ for r in bench_matmul(1024, 1024, 1024, max_seconds=5, gpu=True)]
out["backprop"] = [r.__dict__ for r in bench_backprop()]
g = torch.Generator().manual_seed(0)
b = [(torch.randn(128, 3, 64, 64, generator=g).cuda(), torch.randint(0, 10, (128,), generator=g).cuda())
     for _ in range(24)]
r = Runner(xresnet18(c_in=3, n_out=10), DataLoaders(b, b[:2]),
           cbs=[Telemetry(), MixedPrecision("bf16"), ChannelsLast()])
rep = run_profile(r, 10)
out["profile"] = rep.as_dict()
out["profile_table"] = rep.table()
r.fit(1)
out["input_meter"] = {"share": r.input_meter.share, "bound": r.input_meter.bound}
out["graph_breaks"] = graph_breaks(r)
r.add_cbs([Compile()])
r.fit(1)
out["compiled_fit_ok"] = r.recorder.rows[-1]
print("JSON" + json.dumps(out, default=str))
"""


def run(cmd: list[str], timeout: float) -> dict:
    """Run one part; keep its JSON (a line starting with JSON or a whole JSON stdout) or its error tail."""
    t = time.perf_counter()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=HERE.parent)
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"timed out after {timeout}s"}
    res: dict = {"ok": p.returncode == 0, "seconds": round(time.perf_counter() - t, 1)}
    for line in p.stdout.splitlines():
        if line.startswith("JSON"):
            res["result"] = json.loads(line[4:])
    if "result" not in res:
        try:
            res["result"] = json.loads(p.stdout[p.stdout.index("{") :])
        except ValueError:
            res["stdout_tail"] = p.stdout[-2000:]
    if p.returncode != 0:
        res["stderr_tail"] = p.stderr[-3000:]
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="gpu_check.json")
    ap.add_argument("--quick", action="store_true", help="fewer rounds (for a tight device budget)")
    args = ap.parse_args()
    rounds = "3" if args.quick else "5"
    py = sys.executable
    parts = {
        "smoke": ([py, "-c", SMOKE], 240),
        "runner_overhead": (
            [py, str(HERE / "runner_overhead.py"), "--device", "cuda", "--rounds", rounds],
            240,
        ),
        "timing": ([py, "-c", TIMING], 300),
        "speed_switches": (
            [py, str(HERE / "speed_switches.py"), "--device", "cuda", "--rounds", rounds, "--batches", "20"],
            420,
        ),
        "telemetry_overhead": (
            [py, str(HERE / "telemetry_overhead.py"), "--device", "cuda", "--rounds", rounds],
            240,
        ),
        "tests": (
            [
                py,
                "-m",
                "pytest",
                "-q",
                "-x",
                "tests/test_runner.py",
                "tests/test_callbacks.py",
                "tests/test_telemetry.py",
                "tests/test_profiler.py",
                "tests/test_speed.py",
                "tests/test_foundations.py",
                "tests/test_session.py",
                "-p",
                "no:cacheprovider",
            ],
            300,
        ),
    }
    report = {}
    for name, (cmd, limit) in parts.items():
        report[name] = run(cmd, limit)
        print(name, "ok" if report[name]["ok"] else "FAILED", flush=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(json.dumps({k: v.get("result", v.get("error")) for k, v in report.items()}, indent=2, default=str))


if __name__ == "__main__":
    main()
