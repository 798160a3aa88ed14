"""torch.distributed support on CPU: 2 gloo processes, DDP weight equality, command broadcast, launcher."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data.distributed import DistributedSampler

from labcon.core import distributed as ld
from tests.helpers import free_port

WORLD = 2
pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch.distributed unavailable")


def _setup(rank: int, port: int) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(WORLD),
    )
    torch.set_num_threads(1)
    env = ld.init_distributed(backend="gloo")
    assert env.is_distributed and env.rank == rank and dist.is_initialized()


def _gather_flat(model: nn.Module) -> list[torch.Tensor]:
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    out = [torch.empty_like(flat) for _ in range(WORLD)]
    dist.all_gather(out, flat)
    return out


def _data(n: int = 64, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    return TensorDataset(x, (x[:, 0] + x[:, 1] > 0).long())


def _plain_loop(rank: int, out_dir: str) -> None:
    """DDP by hand: each rank sees a different shard; weights must agree after every step."""
    torch.manual_seed(100 + rank)  # different initial weights: DDP must broadcast rank 0's
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    ddp = nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
    ds = _data()
    dl = DataLoader(ds, batch_size=8, sampler=DistributedSampler(ds, WORLD, rank, shuffle=True, seed=1))
    max_diff, got_at, lrs = 0.0, None, []
    pending = ["set lr=0.01"]
    for it, (xb, yb) in enumerate(dl):
        # Rank 0's control queue holds a command from iteration 2 on; others pass None.
        texts = ld.broadcast_texts(pending if rank == 0 and it == 2 else None)
        for t in texts:
            got_at = it
            opt.param_groups[0]["lr"] = float(t.split("=")[1])
        loss = nn.functional.cross_entropy(ddp(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        lrs.append(opt.param_groups[0]["lr"])
        a, b = _gather_flat(model)
        max_diff = max(max_diff, (a - b).abs().max().item())
    Path(out_dir, f"plain{rank}.json").write_text(
        json.dumps({"max_diff": max_diff, "got_at": got_at, "lrs": lrs, "steps": len(lrs)})
    )


def _worker(rank: int, port: int, out_dir: str) -> None:
    """One 2-process job for both scenarios: process start-up and DDP's first use cost seconds each."""
    _setup(rank, port)
    try:
        _plain_loop(rank, out_dir)
        _runner_fit(rank, out_dir)
        _nan_on_one_rank(rank, out_dir)
    finally:
        ld.cleanup()


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(free_port(), str(out)), nprocs=WORLD, join=True)
    return out


def test_ddp_plain_loop_and_broadcast(ddp_results: Path) -> None:
    res = [json.loads((ddp_results / f"plain{r}.json").read_text()) for r in range(WORLD)]
    for r in res:
        assert r["steps"] == 4  # 64 samples / 2 ranks / batch 8
        assert r["max_diff"] < 1e-6
        assert r["got_at"] == 2
        assert r["lrs"] == [0.1, 0.1, 0.01, 0.01]


class _Control:
    """A stand-in for the session's control callback: rank 0 queues a command, all ranks apply it."""

    def __init__(self, rank: int):
        self.rank, self.applied = rank, []

    def texts(self, train_iter: int) -> list[str] | None:
        return ["set lr=0.01"] if self.rank == 0 and train_iter == 3 else None


def _runner_fit(rank: int, out_dir: str) -> None:
    """The real Runner with DistributedCallback: weights equal per step, metrics reduced, clean keys after."""
    from labcon.core.events import Callback
    from labcon.core.metrics import accuracy
    from labcon.core.optim import SGD
    from labcon.core.runner import Runner
    from labcon.data.loaders import DataLoaders

    ctl = _Control(rank)
    diffs: list[float] = []

    class Check(Callback):
        order = 0

        def before_batch(self) -> None:
            r = self.runner
            if r.training:
                for t in ld.broadcast_texts(ctl.texts(r.train_iter)):
                    r.set_hyper("lr", float(t.split("=")[1]))
                    ctl.applied.append(r.train_iter)

        def after_step(self) -> None:
            a, b = _gather_flat(self.runner.model)
            diffs.append((a - b).abs().max().item())

    torch.manual_seed(7 + rank)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))
    train, valid = _data(64, 0), _data(32, 1)
    dls = DataLoaders(
        DataLoader(train, batch_size=8, sampler=DistributedSampler(train, WORLD, rank, seed=3)),
        DataLoader(valid, batch_size=8, sampler=DistributedSampler(valid, WORLD, rank, shuffle=False)),
    )
    cbs = [ld.DistributedCallback(), Check()]
    runner = Runner(model, dls, opt_func=SGD, lr=0.1, cbs=cbs, metrics=[accuracy], device="cpu")
    runner.fit(2)
    full = runner.model(valid.tensors[0])
    ref_loss = nn.functional.cross_entropy(full, valid.tensors[1]).item()
    Path(out_dir, f"runner{rank}.json").write_text(
        json.dumps(
            {
                "diffs": diffs,
                "applied": ctl.applied,
                "lr": runner.hyper("lr"),
                "rows": runner.recorder.rows,
                "ref_valid_loss": ref_loss,
                "unwrapped": type(runner.model).__name__,
                "keys": sorted(runner.model.state_dict()),
                "reduce_fn_cleared": runner.recorder.reduce_fn is None,
                "sampler_epoch": dls.train.sampler.epoch,
            }
        )
    )


def test_runner_with_distributed_callback(ddp_results: Path) -> None:
    res = [json.loads((ddp_results / f"runner{r}.json").read_text()) for r in range(WORLD)]
    for r in res:
        assert len(r["diffs"]) == 8 and max(r["diffs"]) < 1e-6  # 2 epochs x 4 steps, equal after each
        assert r["applied"] == [3]  # same training iteration on both ranks
        assert r["lr"] == [0.01]
        assert r["unwrapped"] == "Sequential" and not any(k.startswith("module.") for k in r["keys"])
        assert r["reduce_fn_cleared"]
        assert r["sampler_epoch"] == 1  # set_epoch reshuffled the shards for the second epoch
    rows0, rows1 = res[0]["rows"], res[1]["rows"]
    assert len(rows0) == 2
    for a, b in zip(rows0, rows1, strict=True):
        # Metrics are global: both ranks report the same numbers, over the whole valid set.
        assert a["valid_loss"] == pytest.approx(b["valid_loss"], abs=1e-6)
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-6)
    assert rows0[-1]["valid_loss"] == pytest.approx(res[0]["ref_valid_loss"], rel=1e-5)


def _nan_on_one_rank(rank: int, out_dir: str) -> None:
    """Only rank 1's loss turns NaN: both ranks' guards must fire at that batch (else DDP's all-reduce hangs)."""
    from labcon.core.callbacks.guards import NaNGuard
    from labcon.core.events import Callback
    from labcon.core.optim import SGD
    from labcon.core.runner import Runner
    from labcon.data.loaders import DataLoaders

    class Poison(Callback):
        order = 0

        def after_loss(self) -> None:
            r = self.runner
            if rank == 1 and r.training and r.train_iter == 2:
                r.loss = r.loss * float("nan")

    fired: list[int] = []
    guard = NaNGuard(on_nan=lambda msg: fired.append(int(msg.split("iteration ")[1].split(";")[0])))
    torch.manual_seed(3)
    train = _data(64, 0)
    dls = DataLoaders(
        DataLoader(train, batch_size=8, sampler=DistributedSampler(train, WORLD, rank, seed=3)),
        DataLoader(_data(16, 1), batch_size=8),
    )
    runner = Runner(
        nn.Sequential(nn.Linear(4, 2)),
        dls,
        opt_func=SGD,
        lr=0.1,
        cbs=[ld.DistributedCallback(), Poison(), guard],
    )
    runner.fit(1)
    a, b = _gather_flat(runner.model)
    Path(out_dir, f"nan{rank}.json").write_text(
        json.dumps({"fired": fired, "diff": (a - b).abs().max().item(), "steps": runner.train_iter})
    )


def test_nan_on_one_rank_stops_every_rank_at_the_same_batch(ddp_results: Path) -> None:
    res = [json.loads((ddp_results / f"nan{r}.json").read_text()) for r in range(WORLD)]
    for r in res:
        assert r["fired"] == [2]  # rank 0's loss was finite, its guard fired anyway
        assert r["steps"] == 4 and r["diff"] < 1e-6  # the job finished; weights still equal


def test_dist_env_reads_torchrun_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(k, raising=False)
    assert ld.dist_env() == ld.DistEnv(0, 0, 1, False)
    assert ld.init_distributed() == ld.DistEnv(0, 0, 1, False) and not dist.is_initialized()
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "4")
    env = ld.dist_env()
    assert env == ld.DistEnv(3, 1, 4, True) and not env.is_main
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(ValueError, match="RANK=4"):
        ld.dist_env()


def test_single_process_fallbacks() -> None:
    assert ld.broadcast_texts(["pause"]) == ["pause"] and ld.broadcast_texts(None) == []
    t = torch.tensor([1.0, 2.0])
    assert torch.equal(ld.all_reduce_sum(t), t)
    assert ld.is_main_process()
