"""Mixup: train on convex combinations of pairs of images and of their losses."""

from __future__ import annotations

from typing import Any

import torch
from torch.distributions import Beta

from labcon.core.events import Callback


class Mixup(Callback):
    """lambda ~ Beta(alpha, alpha), max(lambda, 1 - lambda); mixes inputs and the two losses (training only)."""

    order = 30
    run_in_probe = False

    def __init__(self, alpha: float = 0.4):
        if alpha <= 0:
            raise ValueError(f"mixup alpha must be > 0, got {alpha}")
        self.alpha = alpha

    def before_fit(self) -> None:
        a = torch.tensor(float(self.alpha), device=self.runner.device)
        self.distrib = Beta(a, a)
        self._orig_loss = self.runner.loss_func

    def after_fit(self) -> None:
        self.runner.loss_func = self._orig_loss

    def before_batch(self) -> None:
        r = self.runner
        if not r.training:
            r.loss_func = self._orig_loss
            return
        bs = r.yb.shape[0]
        lam = self.distrib.sample((bs,))
        self.lam = torch.maximum(lam, 1 - lam)
        shuffle = torch.randperm(bs, device=r.xb.device)
        self.yb1 = r.yb[shuffle]
        x = r.xb.float() if not r.xb.is_floating_point() else r.xb
        lam_x = self.lam.view(-1, *([1] * (x.ndim - 1))).to(x.dtype)
        r.xb = torch.lerp(x[shuffle], x, lam_x)
        r.loss_func = self._mixed_loss

    def _mixed_loss(self, pred: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        l0 = _unreduced(self._orig_loss, pred, yb)
        l1 = _unreduced(self._orig_loss, pred, self.yb1)
        return torch.lerp(l1, l0, self.lam).mean()


def _unreduced(loss_func: Any, pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample losses from a loss that takes `reduction` as an argument or attribute."""
    if hasattr(loss_func, "reduction"):
        old = loss_func.reduction
        loss_func.reduction = "none"
        try:
            return loss_func(pred, y)
        finally:
            loss_func.reduction = old
    return loss_func(pred, y, reduction="none")
