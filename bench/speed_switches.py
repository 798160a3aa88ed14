"""Speed switches, labcon vs a hand-written loop, in one run: for each switch, the raw loop's speed-up and
labcon's speed-up (each over its own switch-off baseline), and labcon's share of the raw speed-up.

Everything runs in lockstep (bench/lockstep.py: a raw step after each Runner step, same model, data and
optimizer), so labcon's share of the raw speed-up is ratio(switch on) / ratio(switch off), where ratio is the raw
loop's step time over the Runner's in the same steps (target >= 0.98). Telemetry is on in the Runner (as in a
session). CPU: simple_cnn 28 px bs 64 (compile only with --compile: inductor compiles for a minute here).
CUDA: xresnet18 128 px bs 128, compile included.
Usage: python bench/speed_switches.py [--rounds 3] [--batches 20] [--compile] [--threads N] [--clock cpu]
       [--only SWITCH ...]
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
from labcon.core.callbacks.speed import ChannelsLast, Compile, graph_breaks
from labcon.nn.models import simple_cnn


def _cl(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last)


def make_case(
    switch: str, base: torch.nn.Module, train: list, dev: torch.device, clock: str
) -> tuple[Runner, Lockstep]:
    """Runner (with Telemetry) and its raw twin, both with `switch` on ('off': neither)."""
    m_fw, m_raw = twin(base, dev)
    amp, prep, cbs = None, None, [Telemetry()]
    if switch == "channels_last":
        m_raw.to(memory_format=torch.channels_last)
        prep = _cl
        cbs.append(ChannelsLast())
    elif switch in ("bf16", "fp16"):
        amp = torch.bfloat16 if switch == "bf16" else torch.float16
        cbs.append(MixedPrecision(switch))
    elif switch == "compile":
        # The hand-written loop's usual recipe (nn.Module.compile() leaves torch's own modules uncompiled in
        # torch 2.13: see labcon.core.callbacks.speed.compile_in_place).
        m_raw = torch.compile(m_raw)
        cbs.append(Compile())
    opt_raw = torch.optim.Adam(m_raw.parameters(), lr=1e-3)
    step = raw_step_fn(m_raw, opt_raw, cross_entropy, amp, prep)
    if switch == "fp16":  # the raw loop needs a scaler too, as the Runner's MixedPrecision uses one
        scaler = torch.amp.GradScaler(dev.type)

        def step(batch: Any, m=m_raw, o=opt_raw) -> None:
            xb, yb = batch
            with torch.autocast(dev.type, dtype=torch.float16):
                loss = cross_entropy(m(xb), yb)
            scaler.scale(loss).backward()
            scaler.step(o)
            scaler.update()
            o.zero_grad(set_to_none=True)

    lock = Lockstep(train, step, clock)
    runner = Runner(
        m_fw, DataLoaders(lock, train[:1]), opt_func=torch.optim.Adam, lr=1e-3, cbs=cbs, device=dev
    )
    return runner, lock


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--compile", action="store_true", help="include torch.compile on the CPU")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall")
    ap.add_argument(
        "--only", nargs="+", metavar="SWITCH", help="measure these switches only (and the baseline)"
    )
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dev = torch.device(args.device)
    if dev.type == "cuda":
        from labcon.nn.xresnet import xresnet18

        torch.backends.cudnn.benchmark = True
        base, shape, bs = xresnet18(c_in=3, n_out=10), (3, 128, 128), 128
        switches = ["channels_last", "bf16", "fp16", "compile"]
    else:
        base, shape, bs = simple_cnn(1, 10), (1, 28, 28), 64
        switches = ["channels_last", "bf16"] + (["compile"] if args.compile else [])
    if args.only:
        unknown = sorted(set(args.only) - set(switches))
        if unknown:
            sys.exit(f"--only: unknown switch {', '.join(unknown)} here; choose from {', '.join(switches)}")
        switches = [k for k in switches if k in args.only]
    train = make_batches(args.batches, bs, shape, dev)
    cases = {k: make_case(k, base, train, dev, args.clock) for k in ["off", *switches]}
    for runner, lock in cases.values():  # warm-up (and compilation)
        runner.fit(1)
        lock.reset()
    for i in range(args.rounds):
        order = list(cases) if i % 2 == 0 else list(reversed(cases))
        for k in order:
            cases[k][0].fit(1)
    med = {k: (statistics.median(lk.raw), statistics.median(lk.framework)) for k, (_, lk) in cases.items()}
    ratio = {k: lk.step_ratio() for k, (_, lk) in cases.items()}
    out: dict[str, Any] = {
        "bench": "speed_switches (lockstep, Telemetry on)",
        "device": str(dev) if dev.type == "cpu" else torch.cuda.get_device_name(dev),
        "batch_size": bs,
        "steps_per_case": args.batches * args.rounds,
        "clock": args.clock,
        "baseline": {
            "raw_ms": round(1e3 * med["off"][0], 3),
            "labcon_ms": round(1e3 * med["off"][1], 3),
            "ratio_raw_over_labcon": round(ratio["off"], 4),
        },
        "switches": {},
    }
    for k in switches:
        raw_speedup = med["off"][0] / med[k][0]
        fw_speedup = med["off"][1] / med[k][1]
        out["switches"][k] = {
            "raw_speedup": round(raw_speedup, 3),
            "labcon_speedup": round(fw_speedup, 3),
            "labcon_share_of_raw_speedup": round(ratio[k] / ratio["off"], 4),
            "ratio_raw_over_labcon": round(ratio[k], 4),
        }
    # Graph breaks labcon's own callbacks cause in the compiled forward (Telemetry's hooks on a sampled batch).
    out["graph_breaks"] = graph_breaks(cases["off"][0])
    print(json.dumps(out, indent=2))
    for k, v in out["switches"].items():
        print(
            f"{k:<14} raw x{v['raw_speedup']:.3f}  labcon x{v['labcon_speedup']:.3f}  "
            f"labcon keeps {v['labcon_share_of_raw_speedup']:.3f} of the raw speed-up (>= 0.98)",
            file=sys.stderr,
        )


if __name__ == "__main__":
    main()
