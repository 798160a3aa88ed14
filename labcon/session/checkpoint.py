"""Atomic checkpoints (temp file, fsync, rename) that load only tensors and plain data."""

from __future__ import annotations

import errno
import hashlib
import os
import pickle
import random
import re
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from labcon.errors import CheckpointError

_CKPT_RE = re.compile(r"^ckpt-(\d+)-(\d+)\.pt$")
_TMP_PREFIX = ".ckpt-tmp-"


def checkpoint_name(epoch: int, train_iter: int) -> str:
    """File name of the checkpoint taken at (epoch, train_iter)."""
    return f"ckpt-{epoch:05d}-{train_iter}.pt"


def list_checkpoints(directory: str | Path) -> list[Path]:
    """Checkpoint files in `directory`, oldest first by (epoch, train_iter); temp files are ignored."""
    d = Path(directory)
    if not d.is_dir():
        return []
    found = []
    for p in d.iterdir():
        m = _CKPT_RE.match(p.name)
        if m and p.is_file():
            found.append(((int(m.group(1)), int(m.group(2))), p))
    return [p for _, p in sorted(found)]


def save_checkpoint(directory: str | Path, state: dict[str, Any], keep: int = 2) -> Path:
    """Write `state` atomically as ckpt-<epoch>-<train_iter>.pt, then prune to the newest `keep` files."""
    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    if "epoch" not in state or "train_iter" not in state:
        raise ValueError("checkpoint state needs 'epoch' and 'train_iter' entries")
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    state = {**state, "checksum": state_digest(state)}
    # Leftovers of a save that crashed midway: never complete, never loaded, safe to drop.
    for stray in d.glob(f"{_TMP_PREFIX}*"):
        stray.unlink(missing_ok=True)
    final = d / checkpoint_name(int(state["epoch"]), int(state["train_iter"]))
    fd, tmp_name = tempfile.mkstemp(prefix=_TMP_PREFIX, suffix=".pt", dir=d)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except (OSError, RuntimeError) as e:
        tmp.unlink(missing_ok=True)
        raise _save_failed(final, state, e) from e
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(d)
    # Prune only now that the new file is complete, so a crash above leaves the old ones intact.
    older = [p for p in list_checkpoints(d) if p != final]
    for old in older[: max(0, len(older) + 1 - keep)]:
        old.unlink(missing_ok=True)
    return final


def _save_failed(final: Path, state: dict[str, Any], e: BaseException) -> CheckpointError:
    """Why a checkpoint could not be written, in words: a full disk is the usual cause (torch's zip writer
    reports it as 'unexpected pos'), so the free space is compared with what the state needs."""
    need = sum(t.numel() * t.element_size() for t in _tensors(state))
    free = shutil.disk_usage(final.parent).free
    full = getattr(e, "errno", None) == errno.ENOSPC or free < need + (1 << 20)
    if full:
        return CheckpointError(
            f"no space left on the device of {final.parent} while saving checkpoint {final.name} "
            f"(~{need / 1e6:.1f} MB needed, {free / 1e6:.1f} MB free); the earlier checkpoints are intact. "
            "Free some space, then `labcon resume` the session"
        )
    first = str(e).splitlines()[0] if str(e) else type(e).__name__
    return CheckpointError(
        f"could not write checkpoint {final} ({first}); the earlier checkpoints are intact"
    )


def _tensors(value: Any) -> list[torch.Tensor]:
    """Every tensor in a nested state (dicts and lists)."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _tensors(v)]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors(v)]
    return []


def _fsync_dir(d: Path) -> None:
    """Make the rename durable; some platforms cannot open directories, which is harmless there."""
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint (tensors and plain data only) onto the CPU; CheckpointError when unreadable or unsafe."""
    p = Path(path)
    try:
        state = torch.load(p, weights_only=True, map_location="cpu")
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {p} not found") from None
    except pickle.UnpicklingError as e:
        if "Unsupported global" in str(e) or "GLOBAL" in str(e):
            raise CheckpointError(
                f"checkpoint {p} contains pickled Python objects; labcon loads only tensors and plain data, "
                "because unpickling can run arbitrary code and it may be unsafe. Re-save it with "
                "torch.save() of a dict of tensors/numbers/strings (e.g. model.state_dict())"
            ) from None
        raise _unreadable(p, e) from None
    except Exception as e:  # noqa: BLE001 - a damaged file can fail anywhere in torch's reader
        raise _unreadable(p, e) from None
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {p} holds a {type(state).__name__}, expected a dict of state")
    saved = state.pop("checksum", None)
    if saved is not None and saved != state_digest(state):
        raise CheckpointError(
            f"checkpoint {p} is corrupt: its contents no longer match the checksum written with it "
            "(flipped bytes on disk or in transit)"
        )
    return state


def _unreadable(p: Path, e: BaseException) -> CheckpointError:
    """A file torch could not read, in words: not torch.save's archive at all (cut short, overwritten, another kind
    of file), or an archive that is damaged inside. (Old torch's non-archive files load before this is asked.)"""
    if not zipfile.is_zipfile(p):
        return CheckpointError(
            f"checkpoint {p} is truncated or corrupt: not the archive torch.save writes "
            f"({p.stat().st_size:,} bytes: cut short, overwritten, or another kind of file)"
        )
    first = str(e).splitlines()[0] if str(e) else type(e).__name__
    return CheckpointError(f"checkpoint {p} is truncated or corrupt ({first}); delete it or restore a backup")


def state_digest(state: Any) -> str:
    """SHA-256 over a checkpoint's keys, plain values and tensor bytes (written with it, checked on load)."""
    h = hashlib.sha256()
    _digest_into(h, state)
    return h.hexdigest()


def _digest_into(h: Any, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy())
    elif isinstance(value, dict):
        h.update(f"D{len(value)}".encode())
        for k in sorted(value, key=repr):
            if k != "checksum":
                h.update(repr(k).encode())
                _digest_into(h, value[k])
    elif isinstance(value, (list, tuple)):
        h.update(f"L{len(value)}".encode())
        for v in value:
            _digest_into(h, v)
    else:
        h.update(repr(value).encode())


def quarantine(path: Path) -> Path:
    """Move an unloadable checkpoint out of the rotation (kept beside it as *.bad for inspection)."""
    bad = path.with_name(path.name + ".bad")
    os.replace(path, bad)
    return bad


def load_latest(directory: str | Path) -> tuple[dict[str, Any], Path, list[str]]:
    """Newest loadable checkpoint in `directory`, its path, and warning lines for newer ones that failed."""
    ckpts = list_checkpoints(directory)
    if not ckpts:
        raise CheckpointError(f"no checkpoints (ckpt-*.pt) in {directory}; nothing to resume from")
    warnings: list[str] = []
    problems: list[str] = []
    for p in reversed(ckpts):
        try:
            state = load_checkpoint(p)
        except CheckpointError as e:
            problems.append(str(e))
            continue
        warnings = [f"{msg}; fell back to the previous checkpoint {p.name}" for msg in problems]
        return state, p, warnings
    raise CheckpointError(
        f"no loadable checkpoint in {directory}: " + "; ".join(x.rstrip(".") for x in problems)
    )


def rng_state() -> dict[str, Any]:
    """RNG states of python, numpy, torch CPU and every CUDA device, as tensors and plain data."""
    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {
        "python": {"version": version, "state": torch.tensor(internal, dtype=torch.int64), "gauss": gauss},
        "torch": torch.get_rng_state(),
    }
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state["numpy"] = {
        "kind": str(kind),
        "keys": torch.from_numpy(keys.astype(np.int64)),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "cached_gaussian": float(cached),
    }
    if torch.cuda.is_available():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` returned (parts that are absent are left alone)."""
    if "python" in state:
        py = state["python"]
        internal = tuple(int(x) for x in torch.as_tensor(py["state"]).tolist())
        random.setstate((int(py["version"]), internal, py["gauss"]))
    if "torch" in state:
        torch.set_rng_state(torch.as_tensor(state["torch"], dtype=torch.uint8).cpu())
    if "numpy" in state:
        n = state["numpy"]
        keys = torch.as_tensor(n["keys"]).numpy().astype(np.uint32)
        np.random.set_state(
            (n["kind"], keys, int(n["pos"]), int(n["has_gauss"]), float(n["cached_gaussian"]))
        )
    if "cuda" in state and torch.cuda.is_available():
        # A resume on a box with fewer GPUs restores the devices that exist.
        cuda_states = list(state["cuda"])[: torch.cuda.device_count()]
        for i, s in enumerate(cuda_states):
            torch.cuda.set_rng_state(torch.as_tensor(s, dtype=torch.uint8).cpu(), i)
