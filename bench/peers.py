"""labcon next to its peers, measured side by side: the same model, data and optimizer trained by a raw PyTorch
loop, labcon's Runner, fastai's Learner and Lightning's Trainer, each in lockstep with its own raw twin (a raw
step after each framework step, bench/lockstep.py), rounds interleaved, in one process.

Optional dependencies: a peer that is not installed is skipped with a note. Install them in a virtual
environment of their own with torch pinned (README.md: torch 2.13.0, torchvision 0.28.0, fastai 2.8.12,
lightning 2.6.6; torchvision must be the build made for that torch: PyPI's pair, or both `+cpu`). Not in CI.
Prints JSON: per peer, steps/s and the ratio of the raw loop's step time over the peer's (1.0: no cost).
Usage: python bench/peers.py [--model small_cnn|xresnet18] [--rounds 3] [--batches 30] [--threads N]
       [--clock wall|cpu] [--size 64] [--bs 64]
       python bench/peers.py --pipeline [--data DIR] [--n 2560] [--workers 2]   (image pipelines,
       bench/peers_data.py)
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import make_batches  # noqa: E402
from lockstep import Lockstep, raw_step_fn, twin  # noqa: E402

from labcon import DataLoaders, Runner
from labcon.nn.models import simple_cnn

Fit = Callable[[], None]


def control_peer(model: torch.nn.Module, lock: Lockstep, valid: list, dev: torch.device) -> Fit:
    """The control: a hand-written loop in the framework's seat. It reads 1.0 when the pairing is fair; what it
    reads otherwise is the bench's own bias on this model and machine, to read the frameworks against."""
    step = raw_step_fn(model, torch.optim.Adam(model.parameters(), lr=1e-3), F.cross_entropy)

    def fit() -> None:
        for batch in lock:
            step(batch)

    return fit


def labcon_peer(model: torch.nn.Module, lock: Lockstep, valid: list, dev: torch.device) -> Fit:
    """labcon's Runner with its default callbacks."""
    r = Runner(
        model,
        DataLoaders(lock, valid),
        loss_func=F.cross_entropy,
        opt_func=torch.optim.Adam,
        lr=1e-3,
        device=dev,
    )
    return lambda: r.fit(1)


def fastai_peer(model: torch.nn.Module, lock: Lockstep, valid: list, dev: torch.device) -> Fit:
    """fastai's Learner over the same batches, torch's Adam through OptimWrapper, no progress bar."""
    from functools import partial

    from fastai.data.core import DataLoaders as FastDataLoaders
    from fastai.learner import Learner
    from fastai.optimizer import OptimWrapper

    dls = FastDataLoaders(lock, valid, device=dev)
    learn = Learner(
        dls, model, loss_func=F.cross_entropy, opt_func=partial(OptimWrapper, opt=torch.optim.Adam), lr=1e-3
    )
    learn.remove_cbs([cb for cb in learn.cbs if type(cb).__name__ == "ProgressCallback"])
    learn.logger = lambda *_a, **_k: None  # without its progress bar fastai prints each epoch's metrics
    return lambda: learn.fit(1, lr=1e-3)


def lightning_peer(model: torch.nn.Module, lock: Lockstep, valid: list, dev: torch.device) -> Fit:
    """Lightning's Trainer, one Trainer and one optimizer for every round (each call trains one more epoch),
    no logger, checkpointing, progress bar, model summary or validation."""
    import logging

    import lightning as L

    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # its per-fit banners, not its errors

    class Module(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.model = model
            # One optimizer across fits, as the other peers keep theirs (Lightning asks again on every fit).
            self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-3)

        def training_step(self, batch: Any, _i: int) -> torch.Tensor:
            xb, yb = batch
            return F.cross_entropy(self.model(xb), yb)

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return self.opt

    module = Module()
    trainer = L.Trainer(
        max_epochs=0,
        accelerator="gpu" if dev.type == "cuda" else "cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
    )

    def fit() -> None:
        trainer.fit_loop.max_epochs = trainer.current_epoch + 1
        trainer.fit(module, train_dataloaders=lock)

    return fit


PEERS: dict[str, tuple[str | None, Callable[..., Fit]]] = {
    "control": (None, control_peer),
    "labcon": (None, labcon_peer),
    "fastai": ("fastai", fastai_peer),
    "lightning": ("lightning", lightning_peer),
}


def versions() -> dict[str, str]:
    """torch's and each installed peer's version."""
    out = {"torch": torch.__version__}
    for dist in ("fastai", "lightning", "torchvision"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=["small_cnn", "xresnet18"], default="small_cnn")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batches", type=int, default=30)
    ap.add_argument("--size", type=int, default=64, help="xresnet18 picture size (px)")
    ap.add_argument("--bs", type=int, default=64, help="xresnet18 batch size")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall", help="cpu: this process's CPU time")
    ap.add_argument("--pipeline", action="store_true", help="image pipelines instead of training steps")
    ap.add_argument(
        "--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/imagenette2-160")
    )
    ap.add_argument("--n", type=int, default=2560, help="images per pipeline pass")
    ap.add_argument("--workers", type=int, default=2, help="loader worker processes (pipelines)")
    ap.add_argument(
        "--host-memory",
        choices=["keep", "default"],
        default="keep",
        help="keep: freed host memory reused by every side (labcon/core/allocator.py), so no side's step pays page "
        "faults that another's memory layout happens to avoid; default: glibc's own trimming",
    )
    args = ap.parse_args()
    if args.host_memory == "keep":
        from labcon.core.allocator import keep_freed_memory

        keep_freed_memory()
    if args.pipeline:
        from peers_data import run_pipelines

        res = run_pipelines(Path(args.data), args.n, 64, args.workers, args.rounds)
        print(json.dumps({**res, "versions": versions()}, indent=2))
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dev = torch.device(args.device)
    if args.model == "xresnet18":
        from labcon.nn.xresnet import xresnet18

        # A CPU step at 64 px bs 64 takes ~1.2 s: a framework's millisecond drowns in its noise, so a CPU
        # ranking wants smaller steps (--size 32 --bs 16) on the same model.
        base, shape, bs = xresnet18(c_in=3, n_out=10), (3, args.size, args.size), args.bs
    else:
        base, shape, bs = simple_cnn(1, 10), (1, 28, 28), 64
    train = make_batches(args.batches, bs, shape, dev)
    valid = train[:1]
    out: dict[str, Any] = {
        "bench": "peers (lockstep)",
        "model": args.model,
        "batch_size": bs,
        "input": list(shape),
        "device": str(dev),
        "threads": torch.get_num_threads(),
        "clock": args.clock,
        "host_memory": args.host_memory,
    }
    out["versions"] = {"torch": torch.__version__}
    fits: dict[str, tuple[Fit, Lockstep]] = {}
    for name, (dist, make) in PEERS.items():
        if dist is not None:
            try:
                out["versions"][name] = md.version(dist)
            except md.PackageNotFoundError:
                out[name] = {"skipped": f"{dist} is not installed"}
                continue
        m_fw, m_raw = twin(base, dev)
        raw = raw_step_fn(m_raw, torch.optim.Adam(m_raw.parameters(), lr=1e-3), F.cross_entropy)
        lock = Lockstep(train, raw, args.clock)
        try:
            fits[name] = (make(m_fw, lock, valid, dev), lock)
            fits[name][0]()  # warm-up
            lock.reset()
        except Exception as e:  # noqa: BLE001 - one peer's API drift must not hide the others' figures
            out[name] = {"skipped": f"{type(e).__name__}: {e}"}
            fits.pop(name, None)
    for i in range(args.rounds):
        order = list(fits) if i % 2 == 0 else list(reversed(fits))
        for name in order:
            fits[name][0]()
    for name, (_, lock) in fits.items():
        s = lock.summary()
        out[name] = {**s, "steps_per_s": round(1e3 / s["framework_ms_median"], 2)}
    print(json.dumps(out, indent=2))
    for name in fits:
        v = out[name]
        print(
            f"{args.model:<10} {name:<10} {v['steps_per_s']:8.2f} steps/s  raw/{name} {v['ratio_trimmed']:.3f}"
            f" (totals {v['ratio_of_totals']:.3f}), overhead {v['overhead_ms_median']:+.2f} ms/step",
            file=sys.stderr,
        )


if __name__ == "__main__":
    main()
