"""Speed switches: channels-last memory format and torch.compile of the model; and a count of the graph
breaks the installed callbacks cause in the compiled forward."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from labcon.core.distributed import unwrap_model
from labcon.core.events import Callback, CancelFitException


class ChannelsLast(Callback):
    """Model and 4-d input batches in channels-last memory format (faster convolutions on tensor cores)."""

    order = -14  # after the device callback has moved the batch

    def before_fit(self) -> None:
        self.runner.model.to(memory_format=torch.channels_last)

    def before_batch(self) -> None:
        r = self.runner
        if isinstance(r.xb, torch.Tensor) and r.xb.dim() == 4:
            r.xb = r.xb.contiguous(memory_format=torch.channels_last)


class Compile(Callback):
    """Compiles the model's call in place (as `nn.Module.compile` means to): the module, its paths and
    state_dict keys stay the same, so hooks, telemetry and checkpoints work unchanged. The first batches pay
    the compile."""

    order = -13

    def __init__(self, backend: str | Callable[..., Any] = "inductor", mode: str | None = None):
        self.backend, self.mode = backend, mode
        self._compiled: int | None = None

    def before_fit(self) -> None:
        model = unwrap_model(self.runner.model)
        if self._compiled != id(model):  # once per model object (a resumed session builds a new one)
            compile_in_place(model, backend=self.backend, mode=self.mode)
            self._compiled = id(model)


def compile_in_place(
    model: nn.Module, backend: str | Callable[..., Any] = "inductor", mode: str | None = None
) -> None:
    """`model.compile()` that captures the whole forward: calls to `model` run a compiled graph of its
    `_call_impl` (hooks included), the module object and its state_dict keys unchanged."""
    call = model._call_impl

    # nn.Module.compile() hands torch.compile the bound `_call_impl`, a frame in torch/nn/modules/module.py,
    # which Dynamo skips (torch 2.13: "frame is in the Dynamo skipfiles list"): only the leaf forwards written
    # outside torch get compiled, every conv and norm runs eagerly, and the step is slower than without
    # compile. A frame of labcon's own is traced, and Dynamo inlines the module call from there.
    def compiled_call(*args: Any, **kwargs: Any) -> Any:
        return call(*args, **kwargs)

    model._compiled_call_impl = torch.compile(compiled_call, backend=backend, mode=mode)


def is_compiled(model: nn.Module) -> bool:
    """Whether calls to `model` run a compiled graph (`compile_in_place` or `nn.Module.compile`)."""
    return getattr(model, "_compiled_call_impl", None) is not None


def retrace(model: nn.Module) -> bool:
    """Drop a compiled model's graphs so its next call traces the hooks it has now; False when not compiled.

    Dynamo does not guard on module hooks: a hook put on (or taken off) a submodule after the model compiled
    would silently not run (or keep running) inside the graph until something else forced a recompile."""
    if not is_compiled(unwrap_model(model)):
        return False
    torch._dynamo.reset()
    return True


class _BreakProbe(Callback):
    """At the first training batch, after every callback's before_batch (hooks attached as for a sampled
    batch), explains the forward with and without the attached hooks, then ends the fit (nothing trains)."""

    order = 1000

    def __init__(self, xb: torch.Tensor | None):
        self.xb = xb
        self.result: dict[str, Any] = {}

    def before_batch(self) -> None:
        r = self.runner
        model = unwrap_model(r.model)
        xb = (self.xb if self.xb is not None else r.xb).to(r.device)
        state = copy.deepcopy(model.state_dict())  # the explained forward updates norm statistics
        attached = [h for h in r.hooks if h.attached]
        try:
            self.result["hooks attached"] = {**_explain(model, xb), "hooks": len(attached)}
            for h in attached:
                h.detach()
            self.result["no hooks"] = {**_explain(model, xb), "hooks": 0}
        finally:
            for h in attached:
                h.attach()
            model.load_state_dict(state)
        raise CancelFitException("graph-break probe done")


def graph_breaks(runner: Any, xb: torch.Tensor | None = None) -> dict[str, Any]:
    """Graph breaks torch.compile finds in the model's forward with the runner's callbacks installed, on the
    first training batch (a sampled one for Telemetry): with the hooks the callbacks attached, and with none.
    The fit ends before the batch is trained on; weights, buffers and counters are as they were."""
    probe = _BreakProbe(xb)
    saved = runner.epoch, runner.train_iter
    try:
        runner.fit(1, cbs=[probe])
    finally:
        runner.epoch, runner.train_iter = saved
    return probe.result


def _explain(model: nn.Module, xb: torch.Tensor) -> dict[str, Any]:
    import torch._dynamo

    torch._dynamo.reset()
    try:
        ex = torch._dynamo.explain(model)(xb)
    finally:
        torch._dynamo.reset()
    return {
        "graphs": ex.graph_count,
        "breaks": ex.graph_break_count,
        "reasons": sorted({str(b.reason).splitlines()[0] for b in ex.break_reasons}),
    }
