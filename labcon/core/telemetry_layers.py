"""Which modules telemetry records by default, how it reads their outputs, and the histogram range their kind
calls for."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from labcon.core.hooks import HookRegistry
from labcon.errors import LabconError
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


# The histogram's top for outputs that are non-negative by kind (ReLU and the like): the course's 0..10.
DEFAULT_HI = 10.0


def kind_range(m: nn.Module | None, hi: float = DEFAULT_HI) -> tuple[float, float] | None:
    """The histogram range a module's outputs have by its kind (ReLU: (0, hi), Tanh: (-1, 1) ...), or None
    when only its values can tell (conv, linear, norm and other outputs that may go negative)."""
    if isinstance(m, GeneralRelu):
        if m.leak:
            return None
        low = -float(m.sub) if m.sub is not None and m.sub > 0 else 0.0
        top = float(m.maxv) if m.maxv is not None else hi
        return (low, top) if low < top else None
    if isinstance(m, nn.ReLU6):
        return (0.0, 6.0)
    if isinstance(m, nn.ReLU):
        return (0.0, hi)
    if isinstance(m, nn.Sigmoid):
        return (0.0, 1.0)
    if isinstance(m, nn.Tanh):
        return (-1.0, 1.0)
    return None


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


def select_layers(
    model: nn.Module, spec: Sequence[str | type[nn.Module]] | None, max_layers: int
) -> list[str]:
    """The module paths telemetry records on `model`: `spec`'s paths and types (None: the default types), each
    type at most `max_layers` of its modules, evenly spaced."""
    named = [(n, m) for n, m in model.named_modules() if n]
    if spec is None:
        return spread([n for n, m in named if isinstance(m, DEFAULT_TYPES)], max_layers)
    reg = HookRegistry(model)
    paths: list[str] = []
    for item in spec:
        if isinstance(item, str):
            reg.resolve(item)  # clear error with close matches
            paths.append(item)
        elif isinstance(item, type) and issubclass(item, nn.Module):
            paths += spread([n for n, m in named if isinstance(m, item)], max_layers)
        else:
            raise LabconError(f"Telemetry layers must be module paths or nn.Module types, got {item!r}")
    return list(dict.fromkeys(paths))
