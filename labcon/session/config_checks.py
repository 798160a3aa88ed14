"""Checks of a whole config when it is read: what would otherwise fail later (unknown metrics, bad transform
settings, a model and batch that cannot fit in memory) is refused naming file, line and key."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from labcon.core.allocator import ram_bytes
from labcon.errors import ConfigError

if TYPE_CHECKING:
    from labcon.session.config import Config

# Rough training memory per input pixel per image (activations kept for backward, fp32) of the built-in
# ResNets, from their activation sizes at 224 px; only absurd configs are refused, so rough is enough.
_BYTES_PER_PIXEL = {"xresnet18": 2000, "xresnet34": 3000, "xresnet50": 6000}
_PARAMS = {"xresnet18": 11.7e6, "xresnet34": 21.8e6, "xresnet50": 25.6e6}
_GIB = 1024**3


def check_config(config: Config) -> None:
    """Raise ConfigError (with file:line) for values that pass their own checks but would fail later."""
    from labcon.core.metrics import METRICS
    from labcon.data.config import check_data_table
    from labcon.session.config import add_location

    for i, m in enumerate(config.train.metrics):
        if m not in METRICS:
            raise add_location(
                f"train.metrics[{i}]: unknown metric {m!r}; known metrics: {', '.join(sorted(METRICS))}",
                config,
            )
    try:
        check_data_table(config.data.raw)
    except ConfigError as e:
        raise add_location(e, config) from None
    _check_memory(config)


def memory_estimate(arch: str, channels: tuple[int, ...], size: int | None, bs: int) -> tuple[float, float]:
    """(weights + optimizer bytes, activation bytes for one training batch) of a model on bs size x size images."""
    if arch in _PARAMS:
        params = _PARAMS[arch]
        acts = float(bs * (size or 0) ** 2 * _BYTES_PER_PIXEL[arch])
    else:
        nfs = [3, *channels]
        params = float(sum(9 * a * b for a, b in zip(nfs, nfs[1:], strict=False)))
        side = float(size or 0)
        acts = float(bs * 3 * side * side * 4)  # the input batch
        for c in channels:
            side = max(1.0, side / 2)  # each conv block has stride 2
            acts += bs * 3 * c * side * side * 4  # conv, norm and activation outputs, fp32
    return params * 4 * 4, acts  # weights, gradients and two optimizer moments


def available_memory(device: str) -> tuple[float, str]:
    """Bytes the training can hope to use, and where (GPU memory, or this machine's RAM)."""
    import torch

    if device != "cpu" and torch.cuda.is_available():
        index = int(device.split(":")[1]) if ":" in device else 0
        if index < torch.cuda.device_count():
            return float(torch.cuda.get_device_properties(index).total_memory), f"GPU {index} memory"
    return ram_bytes(), "RAM"


def _check_memory(config: Config) -> None:
    data: dict[str, Any] = config.data.raw
    size, bs = data.get("size"), data.get("bs", 64)
    size = size if isinstance(size, int) and not isinstance(size, bool) else None
    bs = bs if isinstance(bs, int) and not isinstance(bs, bool) else 64
    weights, acts = memory_estimate(config.model.arch, tuple(config.model.channels), size, bs)
    have, where = available_memory(config.train.device)
    if weights + acts <= have:
        return
    from labcon.session.config import add_location

    need = (
        f"about {(weights + acts) / _GIB:,.1f} GiB ({weights / _GIB:,.1f} GiB of weights and optimizer state"
    )
    need += f", {acts / _GIB:,.1f} GiB of activations for a batch of {bs}"
    need += f" {size}x{size} images)" if size else ")"
    have_s = f"this machine has {have / _GIB:,.1f} GiB of {where}"
    if weights > have / 2 and config.model.arch == "simple_cnn":
        key, fix = "model.channels", "use fewer channels (e.g. [16, 32, 64, 64])"
    elif size and size > 512:
        key, fix = "data.size", "use a smaller image size (e.g. 64-224)"
    else:
        key, fix = "data.bs", "use a smaller batch (bs) or image size"
    raise add_location(f"{key}: this config needs {need}; {have_s}. {fix}", config)
