"""Metrics: functions of (pred, target) returning the batch mean as a tensor (no host sync)."""

from __future__ import annotations

import math

import torch

from labcon.core.losses import cross_entropy


def accuracy(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Fraction of rows whose argmax equals the target."""
    return (pred.argmax(dim=-1) == target).float().mean()


def error_rate(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - accuracy."""
    return 1 - accuracy(pred, target)


def perplexity(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Language-model perplexity: the batch cross-entropy here; the Recorder exponentiates the epoch mean."""
    return cross_entropy(pred, target)


# exp(mean loss), not the mean of per-batch exps: the Recorder applies `finalize` after averaging.
perplexity.finalize = math.exp  # type: ignore[attr-defined]


def accuracy_multi(pred: torch.Tensor, target: torch.Tensor, thresh: float = 0.5) -> torch.Tensor:
    """Multi-label accuracy: fraction of (row, label) pairs where sigmoid(pred) > thresh matches the 0/1 target."""
    return ((pred.float().sigmoid() > thresh) == target.bool()).float().mean()


METRICS = {
    "accuracy": accuracy,
    "error_rate": error_rate,
    "perplexity": perplexity,
    "accuracy_multi": accuracy_multi,
}
