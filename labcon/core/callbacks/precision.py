"""Mixed precision: autocast for bf16/fp16, GradScaler for fp16, skipped steps counted on the device."""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from labcon.core.events import Callback

_DTYPES = {
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
}


class MixedPrecision(Callback):
    """Runs forward and loss under torch.autocast; fp16 adds loss scaling and counts skipped steps."""

    order = 10

    def __init__(self, dtype: str = "bf16"):
        if dtype not in _DTYPES:
            raise ValueError(f"mixed precision dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
        self.dtype_name = dtype
        self.dtype = _DTYPES[dtype]
        self.scaler: torch.amp.GradScaler | None = None
        self._skipped: torch.Tensor | None = None
        self._ctx: contextlib.AbstractContextManager[Any] | None = None

    @property
    def skipped_steps(self) -> int:
        """How many fp16 steps were skipped because gradients overflowed (one host sync)."""
        return int(self._skipped.item()) if self._skipped is not None else 0

    def before_fit(self) -> None:
        r = self.runner
        self._device_type = r.device.type
        if self.dtype is torch.float16:
            self.scaler = self.scaler or torch.amp.GradScaler(self._device_type)
            self._skipped = torch.zeros((), device=r.device, dtype=torch.int64)
            r.step_fn = self._scaled_step

    def before_batch(self) -> None:
        self._ctx = torch.autocast(self._device_type, dtype=self.dtype)
        self._ctx.__enter__()

    def _exit(self) -> None:
        if self._ctx is not None:
            self._ctx.__exit__(None, None, None)
            self._ctx = None

    def after_loss(self) -> None:
        # Backward runs outside autocast, as torch recommends.
        self._exit()

    def after_cancel_batch(self) -> None:
        self._exit()

    def before_backward(self) -> None:
        if self.scaler is not None:
            self.runner.loss_grad = self.scaler.scale(self.runner.loss_grad)

    def before_step(self) -> None:
        if self.scaler is not None:
            # Unscale first so gradient clipping (order 20) sees true gradients.
            self.scaler.unscale_(self.runner.opt)

    def _scaled_step(self) -> None:
        opt = self.runner.opt
        found = self.scaler._found_inf_per_device(opt)  # no public accessor; avoids a host sync per step
        self.scaler.step(opt)
        self.scaler.update()
        for v in found.values():
            self._skipped += v.to(self._skipped.device, torch.int64)

    def after_fit(self) -> None:
        self._exit()
        if self.scaler is not None:
            self.runner.step_fn = self.runner._opt_step

    def state_dict(self) -> dict[str, Any]:
        return {"scaler": self.scaler.state_dict() if self.scaler is not None else {}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("scaler") and self.dtype is torch.float16:
            self.scaler = self.scaler or torch.amp.GradScaler()
            self.scaler.load_state_dict(state["scaler"])
