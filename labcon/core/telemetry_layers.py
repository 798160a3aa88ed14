"""Which modules telemetry records by default, and how it reads their outputs."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from labcon.nn.layers import GeneralRelu
from labcon.nn.norms import NORM_TYPES

ACTIVATION_TYPES: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.ELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Hardswish,
    nn.Tanh,
    nn.Sigmoid,
    GeneralRelu,
)
DEFAULT_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.conv._ConvNd,
    nn.Linear,
    nn.LSTM,  # output (out, (h, c)): first_tensor reads out
    *NORM_TYPES,
    *ACTIVATION_TYPES,
)


def first_tensor(out: Any) -> Tensor | None:
    """The module output itself, or the first tensor of a tuple/list output."""
    if isinstance(out, Tensor):
        return out
    if isinstance(out, (tuple, list)):
        return next((o for o in out if isinstance(o, Tensor)), None)
    return None


def flat_view(x: Tensor) -> Tensor:
    """x as a 1-d view in memory order (channels-last too), copying only when there is no such view."""
    if x.is_contiguous():
        return x.view(-1)
    y = x.permute(sorted(range(x.dim()), key=lambda d: -x.stride(d)))
    return y.view(-1) if y.is_contiguous() else y.reshape(-1)


def spread(items: list[Any], cap: int) -> list[Any]:
    """At most `cap` items, evenly spaced, first and last kept."""
    if len(items) <= cap:
        return items
    if cap == 1:
        return items[-1:]
    step = (len(items) - 1) / (cap - 1)
    return [items[round(i * step)] for i in range(cap)]
