"""torch.distributed support: process-group setup, a DDP callback, command broadcast and the launcher."""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from labcon.core.events import Callback

# Seconds a collective waits for the other ranks before it fails (torch's default is 30 min): a hung or
# stopped peer is then reported instead of blocking every rank while `status` says running.
PEER_TIMEOUT_ENV = "LABCON_PEER_TIMEOUT"
DEFAULT_PEER_TIMEOUT_S = 120.0
# How gloo and NCCL word a peer that stopped answering (timeout) or went away (killed, crashed).
_LOST_PEER_MARKS = (
    "timed out",
    "timeout",
    "connection closed by peer",
    "connection reset",
    "broken pipe",
    "communicator was aborted",
    "nccl error",
)


def peer_timeout() -> float:
    """The collective timeout in seconds ($LABCON_PEER_TIMEOUT, else DEFAULT_PEER_TIMEOUT_S)."""
    raw = os.environ.get(PEER_TIMEOUT_ENV, "")
    try:
        value = float(raw) if raw else DEFAULT_PEER_TIMEOUT_S
    except ValueError:
        raise ValueError(f"{PEER_TIMEOUT_ENV}={raw!r} is not a number of seconds") from None
    if not value > 0:
        raise ValueError(f"{PEER_TIMEOUT_ENV} must be > 0 seconds, got {raw!r}")
    return value


def lost_peer(exc: BaseException) -> bool:
    """Whether `exc` (or what caused it) is a collective that failed because another rank hung or died."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        text = str(seen).lower()
        if isinstance(seen, (RuntimeError, TimeoutError, ConnectionError)) and any(
            m in text for m in _LOST_PEER_MARKS
        ):
            return True
        seen = seen.__cause__ or seen.__context__ or getattr(seen, "original", None)
    return False


@dataclass(frozen=True)
class DistEnv:
    """Where this process sits in a torchrun job (a single process is rank 0 of 1)."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    is_distributed: bool = False

    @property
    def is_main(self) -> bool:
        """True on the process that writes the journal and checkpoints and serves the control socket."""
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(
            f"environment variable {name}={raw!r} is not an integer (torchrun sets it)"
        ) from None


def dist_env() -> DistEnv:
    """Read RANK / LOCAL_RANK / WORLD_SIZE as torchrun sets them."""
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"inconsistent torchrun environment: RANK={rank}, WORLD_SIZE={world}")
    return DistEnv(rank, _env_int("LOCAL_RANK", rank), world, world > 1)


def is_main_process() -> bool:
    """Rank 0 of an initialised process group, or any process when not distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return dist_env().is_main


def local_device(env: DistEnv | None = None) -> torch.device:
    """This worker's device: cuda:LOCAL_RANK when CUDA is available, else the CPU."""
    env = env or dist_env()
    return torch.device("cuda", env.local_rank) if torch.cuda.is_available() else torch.device("cpu")


def init_distributed(backend: str | None = None) -> DistEnv:
    """Join the torchrun process group (nccl on CUDA, gloo otherwise); a no-op for a single process."""
    env = dist_env()
    if not env.is_distributed or (dist.is_available() and dist.is_initialized()):
        return env
    if not dist.is_available():
        raise RuntimeError("this PyTorch build has no torch.distributed; run without --nproc")
    missing = [v for v in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(v)]
    if missing:
        raise RuntimeError(
            f"{', '.join(missing)} not set; start workers with torchrun or `labcon run --nproc N`"
        )
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() and dist.is_nccl_available() else "gloo"
    if torch.cuda.is_available():
        # Each worker owns one GPU; NCCL collectives use the current device.
        torch.cuda.set_device(env.local_rank)
    dist.init_process_group(
        backend=backend,
        rank=env.rank,
        world_size=env.world_size,
        timeout=datetime.timedelta(seconds=peer_timeout()),
    )
    return env


def cleanup() -> None:
    """Leave the process group (safe to call when none was joined)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside a DistributedDataParallel wrapper (or the model itself)."""
    return model.module if isinstance(model, DistributedDataParallel) else model


def _collective_device() -> torch.device:
    """Where a collective's tensors must live: the current GPU for NCCL, else the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """A new tensor holding the element-wise sum of `t` over all ranks (t itself is not changed)."""
    if not (dist.is_available() and dist.is_initialized()):
        return t.clone()
    out = t.detach().to(_collective_device(), copy=True)
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out.to(t.device)


def _set_epoch(dl: Any, epoch: int) -> None:
    """Reshuffle a sharded loader per epoch: the loader's own set_epoch or its DistributedSampler's."""
    if hasattr(dl, "set_epoch"):
        dl.set_epoch(epoch)
        return
    for sampler in (
        getattr(dl, "sampler", None),
        getattr(getattr(dl, "batch_sampler", None), "sampler", None),
    ):
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
            return


class DistributedCallback(Callback):
    """Wraps the model in DistributedDataParallel for each fit and makes the Recorder's metrics global."""

    order = -12  # after DeviceCallback (-15) has put the model on its device
    removable = False

    def __init__(self, find_unused_parameters: bool = False, broadcast_buffers: bool = True):
        self.find_unused_parameters = find_unused_parameters
        self.broadcast_buffers = broadcast_buffers

    @property
    def active(self) -> bool:
        """Whether a process group is up (in a single process the callback does nothing)."""
        return dist.is_available() and dist.is_initialized()

    def wrap(self) -> None:
        """(Re)wrap runner.model; call again after swapping layers mid-fit so DDP sees the new parameters."""
        r = self.runner
        module = unwrap_model(r.model)
        ids = None
        if r.device.type == "cuda":
            ids = [r.device.index if r.device.index is not None else torch.cuda.current_device()]
        # broadcast_buffers=True is DDP's default; passing it at all triggers a FutureWarning in torch >= 2.13.
        extra = {} if self.broadcast_buffers else {"broadcast_buffers": False}
        r.model = DistributedDataParallel(
            module, device_ids=ids, find_unused_parameters=self.find_unused_parameters, **extra
        )

    def before_fit(self) -> None:
        if not self.active:
            return
        self.wrap()
        recorder = getattr(self.runner, "recorder", None)
        if recorder is not None:
            recorder.reduce_fn = all_reduce_sum

    def before_epoch(self) -> None:
        if self.active:
            _set_epoch(self.runner.dls.train, self.runner.epoch)

    def after_fit(self) -> None:
        # Outside fits the runner holds the bare module, so checkpoints have clean state_dict keys.
        self.runner.model = unwrap_model(self.runner.model)
        recorder = getattr(self.runner, "recorder", None)
        if recorder is not None and getattr(recorder, "reduce_fn", None) is all_reduce_sum:
            recorder.reduce_fn = None


def broadcast_texts(texts: Sequence[str] | None, src: int = 0) -> list[str]:
    """Every rank gets rank `src`'s list of strings (JSON bytes in a uint8 tensor, never pickle)."""
    if not (dist.is_available() and dist.is_initialized()):
        return list(texts or [])
    device = _collective_device()
    is_src = dist.get_rank() == src
    payload = json.dumps(list(texts or [])).encode() if is_src and texts else b""
    n = torch.tensor([len(payload)], dtype=torch.int64, device=device)
    dist.broadcast(n, src)
    size = int(n.item())
    if size == 0:
        return []  # the usual case: one tiny collective per call
    if is_src:
        buf = torch.frombuffer(bytearray(payload), dtype=torch.uint8).to(device)
    else:
        buf = torch.empty(size, dtype=torch.uint8, device=device)
    dist.broadcast(buf, src)
    out = json.loads(bytes(buf.cpu().tolist()).decode("utf-8"))
    if not isinstance(out, list) or not all(isinstance(s, str) for s in out):
        raise ValueError("broadcast_texts received something other than a list of strings")
    return out
