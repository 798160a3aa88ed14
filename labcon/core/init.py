"""LSUV (layer-sequential unit variance) initialisation on one batch; Kaiming lives in labcon.nn.init."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor, nn

from labcon.core.hooks import Hook
from labcon.errors import LabconError
from labcon.nn.init import WEIGHTED


class _Stop(Exception):
    """Raised from a hook to cut the forward pass once the measured layer has run."""


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


def lsuv_init(
    model: nn.Module,
    xb: Tensor,
    tol: float = 1e-3,
    max_iter: int = 10,
    layers: Iterable[nn.Module] | None = None,
) -> nn.Module:
    """LSUV: for each conv/linear layer in order, shift its bias and scale its weight until its output on
    xb has mean 0 and std 1 (within tol). Raises LabconError naming a layer that will not converge.
    Buffers (e.g. BatchNorm running statistics) are left as they were. Returns the model.
    """
    if max_iter < 1:
        raise LabconError(f"lsuv_init needs max_iter >= 1, got {max_iter}")
    names = {m: n for n, m in model.named_modules()}
    targets = list(layers) if layers is not None else [m for m in model.modules() if isinstance(m, WEIGHTED)]
    saved = {n: b.detach().clone() for n, b in model.named_buffers()}
    try:
        with torch.no_grad():
            for layer in targets:
                name = names.get(layer, type(layer).__name__)
                bias = getattr(layer, "bias", None)
                bias = bias if isinstance(bias, Tensor) else None
                mean, std = _measure(model, layer, xb)
                for _ in range(max_iter):
                    if not (math.isfinite(mean) and math.isfinite(std)) or std < 1e-8:
                        raise LabconError(
                            f"LSUV: layer '{name}' outputs mean={mean:.3g} std={std:.3g} on this batch, "
                            "so it cannot be scaled to unit variance; check the layers before it "
                            "(dead activations?) or use kaiming_init"
                        )
                    if abs(std - 1) <= tol and (bias is None or abs(mean) <= tol):
                        break
                    # The layer's output is affine in its own weight and bias: y' = (y - mean) / std.
                    layer.weight.div_(std)
                    if bias is not None:
                        bias.sub_(mean).div_(std)
                    mean, std = _measure(model, layer, xb)
                else:
                    if not (abs(std - 1) <= tol and (bias is None or abs(mean) <= tol)):
                        raise LabconError(
                            f"LSUV: layer '{name}' did not reach mean 0 / std 1 within tol={tol} in "
                            f"{max_iter} iterations (now mean={mean:.4g}, std={std:.4g}); "
                            "raise max_iter or tol, or use a larger batch"
                        )
    finally:
        with torch.no_grad():
            for n, b in model.named_buffers():
                if n in saved:
                    b.copy_(saved[n])
    return model
