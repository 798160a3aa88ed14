"""labcon next to its peers, measured side by side: the same model, data and optimizer trained by a raw PyTorch
loop, labcon's Runner, fastai's Learner and Lightning's Trainer, each in lockstep with its own raw twin (a raw
step after each framework step, bench/lockstep.py), rounds interleaved, in one process.

Optional dependencies: a peer that is not installed is skipped with a note (install with torch pinned, e.g.
`pip install fastai lightning "torch==$(python -c 'import torch; print(torch.__version__)')"`). Not run in CI.
Prints JSON: per peer, steps/s and the ratio of the raw loop's step time over the peer's (1.0: no cost).
Usage: python bench/peers.py [--model small_cnn|xresnet18] [--rounds 3] [--batches 30] [--threads N]
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
    return lambda: learn.fit(1, lr=1e-3)


def lightning_peer(model: torch.nn.Module, lock: Lockstep, valid: list, dev: torch.device) -> Fit:
    """Lightning's Trainer (one epoch per call), no logger, checkpointing or progress bar."""
    import lightning as L

    class Module(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def training_step(self, batch: Any, _i: int) -> torch.Tensor:
            xb, yb = batch
            return F.cross_entropy(self.model(xb), yb)

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.Adam(self.parameters(), lr=1e-3)

    module = Module()
    acc = "gpu" if dev.type == "cuda" else "cpu"
    epochs = [0]

    def fit() -> None:
        epochs[0] += 1
        trainer = L.Trainer(
            max_epochs=epochs[0],
            accelerator=acc,
            devices=1,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            limit_val_batches=0,
        )
        trainer.fit(module, train_dataloaders=lock, ckpt_path=None)

    return fit


PEERS: dict[str, tuple[str | None, Callable[..., Fit]]] = {
    "labcon": (None, labcon_peer),
    "fastai": ("fastai", fastai_peer),
    "lightning": ("lightning", lightning_peer),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=["small_cnn", "xresnet18"], default="small_cnn")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batches", type=int, default=30)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dev = torch.device(args.device)
    if args.model == "xresnet18":
        from labcon.nn.xresnet import xresnet18

        base, shape, bs = xresnet18(c_in=3, n_out=10), (3, 64, 64), 64
    else:
        base, shape, bs = simple_cnn(1, 10), (1, 28, 28), 64
    train = make_batches(args.batches, bs, shape, dev)
    valid = train[:1]
    out: dict[str, Any] = {
        "bench": "peers (lockstep)",
        "model": args.model,
        "batch_size": bs,
        "device": str(dev),
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
        lock = Lockstep(
            train, raw_step_fn(m_raw, torch.optim.Adam(m_raw.parameters(), lr=1e-3), F.cross_entropy)
        )
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


if __name__ == "__main__":
    main()
