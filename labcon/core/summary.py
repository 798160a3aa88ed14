"""model_summary: per-layer output shape, parameter count and multiply-adds, measured with forward hooks."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor, nn

from labcon.core.hooks import Hook
from labcon.core.telemetry_layers import first_tensor
from labcon.fmt import fmt_count


@dataclass(frozen=True)
class ModuleRow:
    """One module: its path, type, (first) output shape with the batch dim, parameters (trainable among them) and
    multiply-adds of the batch; a leaf layer's own in `model_summary`, over the whole subtree in `module_stats`."""

    path: str
    kind: str
    out_shape: tuple[int, ...]
    params: int
    trainable: int
    macs: int


def _macs(m: nn.Module, out: Tensor) -> int:
    """Multiply-adds of one forward of `m` for the whole batch (conv/linear weights; norms count 1 per item)."""
    if isinstance(m, nn.modules.conv._ConvNd):
        # Each output element costs (in_channels / groups) x kernel area multiply-adds.
        return out.numel() * (m.in_channels // m.groups) * int(torch.tensor(m.kernel_size).prod())
    if isinstance(m, nn.Linear):
        return out.numel() * m.in_features
    if any(True for _ in m.parameters(recurse=False)):
        return out.numel()  # normalisation and other elementwise affine layers
    return 0


def _observed_forward(model: nn.Module, xb: Tensor, hooks: list[Hook]) -> None:
    """One forward of xb in eval mode without grad, watched by `hooks`; the mode is restored, the hooks removed."""
    was = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(xb)
    finally:
        model.train(was)
        for h in hooks:
            h.remove()


def _observe(model: nn.Module, xb: Tensor) -> tuple[list[ModuleRow], dict[str, tuple[int, ...]]]:
    """One forward of xb (eval mode, no grad; mode restored): a row per call of a leaf layer, in call order,
    with the layer's own parameters and multiply-adds; and every module's first output shape by path."""
    calls: list[ModuleRow] = []
    shapes: dict[str, tuple[int, ...]] = {}

    def grab(path: str, leaf: bool) -> Any:
        def fn(m: nn.Module, _inp: object, out: object) -> None:
            t = first_tensor(out)
            if t is None:
                return
            shapes.setdefault(path, tuple(t.shape))  # a module called again keeps its first shape
            if leaf:
                own = list(m.parameters(recurse=False))
                n, trainable = sum(p.numel() for p in own), sum(p.numel() for p in own if p.requires_grad)
                calls.append(ModuleRow(path, type(m).__name__, tuple(t.shape), n, trainable, _macs(m, t)))

        return fn

    named = list(model.named_modules())
    _observed_forward(model, xb, [Hook(m, grab(n, not any(True for _ in m.children()))) for n, m in named])
    return calls, shapes


def model_summary(model: nn.Module, xb: Tensor) -> list[ModuleRow]:
    """Run xb through the model and describe every leaf layer that ran (a layer called several times appears
    once per call, in call order)."""
    return [r if r.path else replace(r, path="(model)") for r in _observe(model, xb)[0]]


def module_stats(model: nn.Module, xb: Tensor) -> list[ModuleRow]:
    """Every module of the model (named_modules order, '' is the model) as ModuleRow, from one forward of xb
    (eval mode, no grad; mode restored). A module that did not run has an empty shape and no multiply-adds."""
    calls, shapes = _observe(model, xb)
    out = []
    for path, m in model.named_modules():
        ps = list(m.parameters())  # shared parameters count once, as named_modules lists the module once
        under = [c.macs for c in calls if not path or c.path == path or c.path.startswith(path + ".")]
        out.append(
            ModuleRow(
                path,
                type(m).__name__,
                shapes.get(path, ()),
                sum(p.numel() for p in ps),
                sum(p.numel() for p in ps if p.requires_grad),
                sum(under),
            )
        )
    return out


def format_summary(rows: list[ModuleRow], model: nn.Module, batch: int) -> str:
    """A table as the course prints it, plus totals (multiply-adds per item)."""
    lines = [f"{'layer':<28} {'type':<20} {'output':<20} {'params':>9} {'MACs/item':>10}"]
    for r in rows:
        shape = "x".join(str(d) for d in r.out_shape[1:])
        frozen = "" if r.trainable == r.params else " (frozen)"
        lines.append(
            f"{r.path:<28} {r.kind:<20} {shape:<20} {r.params:>9,} {fmt_count(r.macs // max(batch, 1)):>10}{frozen}"
        )
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    macs = sum(r.macs for r in rows) // max(batch, 1)
    lines.append(
        f"total: {total:,} params ({trainable:,} trainable), {fmt_count(macs)} multiply-adds per item"
    )
    return "\n".join(lines)
