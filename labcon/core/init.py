"""LSUV (layer-sequential unit variance) initialisation on one batch, as the course does it.

Kaiming lives in labcon.nn.init. A *unit* is a conv/linear layer, the normalisation layer after it (if
any) and the GeneralRelu after that, inside one nn.Sequential. LSUV measures the unit's output after
its activation (a forward hook on the GeneralRelu) and, layer by layer in order, divides the scale of the
unit (the norm's affine weight and bias, or else the conv's weight and bias) by the output's std and
adds the output's mean to the GeneralRelu's `sub`, until mean ~0 and std ~1. A conv/linear with no
GeneralRelu after it is measured on its own output and shifted with its bias where it has one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from labcon.core.hooks import Hook
from labcon.errors import LabconError
from labcon.nn.init import WEIGHTED
from labcon.nn.layers import GeneralRelu
from labcon.nn.norms import NORM_TYPES


class _Stop(Exception):
    """Raised from a hook to cut the forward pass once the measured layer has run."""


@dataclass
class LsuvUnit:
    """What LSUV measures (`out`), what it scales (`scale`) and how it shifts the mean (`act` or bias)."""

    name: str
    layer: nn.Module
    scale: nn.Module
    out: nn.Module
    act: GeneralRelu | None


def lsuv_units(model: nn.Module) -> list[LsuvUnit]:
    """Every conv/linear layer of the model in order, with the activation it feeds (see module doc)."""
    units: list[LsuvUnit] = []
    for path, m in model.named_modules():
        if not isinstance(m, nn.Sequential):
            continue
        kids = list(m.named_children())
        for i, (name, layer) in enumerate(kids):
            if not isinstance(layer, WEIGHTED):
                continue
            scale, act = layer, None
            for _, nxt in kids[i + 1 :]:
                if (
                    isinstance(nxt, NORM_TYPES)
                    and scale is layer
                    and getattr(nxt, "weight", None) is not None
                ):
                    scale = nxt
                elif isinstance(nxt, GeneralRelu):
                    act = nxt
                    break
                else:
                    break
            full = f"{path}.{name}" if path else name
            if act is None:
                # No activation: measure and correct the layer's own output (a norm after it is left alone).
                units.append(LsuvUnit(full, layer, layer, layer, None))
            else:
                units.append(LsuvUnit(full, layer, scale, act, act))
    return units


def _measure(model: nn.Module, layer: nn.Module, xb: Tensor) -> tuple[float, float]:
    """Mean and std of `layer`'s output on xb (the forward pass stops right after that layer)."""
    got: list[Tensor] = []

    def grab(_m: nn.Module, _inp: object, out: object) -> None:
        got.append(out.detach() if isinstance(out, Tensor) else out[0].detach())
        raise _Stop

    with Hook(layer, grab):
        try:
            model(xb)
        except _Stop:
            pass
    if not got:
        raise LabconError(f"LSUV: layer {type(layer).__name__} never ran in the forward pass; pass layers=")
    out = got[0].float()
    return out.mean().item(), out.std().item()


def _div_(module: nn.Module, by: float) -> None:
    for attr in ("weight", "bias"):
        t = getattr(module, attr, None)
        if isinstance(t, Tensor):
            t.div_(by)


def _shift(unit: LsuvUnit, mean: float) -> bool:
    """Move the unit's output mean by -mean; False when the unit has nothing to shift with."""
    if unit.act is not None:
        unit.act.sub = (unit.act.sub or 0.0) + mean
        return True
    bias = getattr(unit.scale, "bias", None)
    if isinstance(bias, Tensor):
        bias.sub_(mean)
        return True
    return False


def lsuv_init(
    model: nn.Module,
    xb: Tensor,
    tol: float = 1e-3,
    max_iter: int = 10,
    layers: Iterable[nn.Module] | None = None,
) -> nn.Module:
    """LSUV on one batch: each unit's output (after its GeneralRelu) gets mean 0 and std 1 within tol.

    `layers` restricts it to the units of those conv/linear layers. Raises LabconError naming a layer
    that will not converge. Buffers (e.g. BatchNorm running statistics) are left as they were.
    """
    if max_iter < 1:
        raise LabconError(f"lsuv_init needs max_iter >= 1, got {max_iter}")
    units = lsuv_units(model)
    if layers is not None:
        wanted = {id(m) for m in layers}
        units = [u for u in units if id(u.layer) in wanted]
    saved = {n: b.detach().clone() for n, b in model.named_buffers()}
    try:
        with torch.no_grad():
            for unit in units:
                _fit_unit(model, unit, xb, tol, max_iter)
    finally:
        with torch.no_grad():
            for n, b in model.named_buffers():
                if n in saved:
                    b.copy_(saved[n])
    return model


def _fit_unit(model: nn.Module, unit: LsuvUnit, xb: Tensor, tol: float, max_iter: int) -> None:
    mean, std = _measure(model, unit.out, xb)
    can_shift = unit.act is not None or isinstance(getattr(unit.scale, "bias", None), Tensor)
    for _ in range(max_iter):
        if not (math.isfinite(mean) and math.isfinite(std)) or std < 1e-8:
            raise LabconError(
                f"LSUV: layer '{unit.name}' outputs mean={mean:.3g} std={std:.3g} on this batch, "
                "so it cannot be scaled to unit variance; check the layers before it "
                "(dead activations?) or use kaiming_init"
            )
        if abs(std - 1) <= tol and (not can_shift or abs(mean) <= tol):
            return
        # Scaling the unit's weight and bias (and sub) by 1/std scales a (leaky) ReLU's output by 1/std.
        _div_(unit.scale, std)
        if unit.act is not None and unit.act.sub is not None:
            unit.act.sub /= std
        mean, std = _measure(model, unit.out, xb)
        if can_shift and abs(mean) > tol:
            _shift(unit, mean)
            mean, std = _measure(model, unit.out, xb)
    if not (abs(std - 1) <= tol and (not can_shift or abs(mean) <= tol)):
        raise LabconError(
            f"LSUV: layer '{unit.name}' did not reach mean 0 / std 1 within tol={tol} in "
            f"{max_iter} iterations (now mean={mean:.4g}, std={std:.4g}); "
            "raise max_iter or tol, or use a larger batch"
        )
