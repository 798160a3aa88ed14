"""Losses from the foundations: log-softmax via logsumexp, NLL, cross-entropy, label smoothing."""

from __future__ import annotations

import torch


def logsumexp(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """log(sum(exp(x))) computed stably by factoring out the max (no overflow for huge logits)."""
    # Detached: the shift cancels out mathematically, so no gradient needs to flow through it.
    # An all -inf row would give nan from (-inf) - (-inf); nan_to_num keeps the shift at 0 there (one kernel).
    m = torch.nan_to_num(x.detach().amax(dim=dim, keepdim=True), neginf=0.0, posinf=0.0)
    return (x - m).exp().sum(dim=dim).log() + m.squeeze(dim)


def log_softmax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """x - logsumexp(x)."""
    return x - logsumexp(x, dim).unsqueeze(dim)


def _reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def nll_loss(logp: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Negative log-likelihood of the target class."""
    return _reduce(-logp.gather(-1, target.unsqueeze(-1)).squeeze(-1), reduction)


def cross_entropy(pred: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy on raw logits (computed in float32 even under autocast)."""
    return nll_loss(log_softmax(pred.float()), target, reduction)


class LabelSmoothingCrossEntropy:
    """(1 - eps) * NLL + eps * mean over classes of -log p (eps = 0.1 by default)."""

    def __init__(self, eps: float = 0.1, reduction: str = "mean"):
        if not 0 <= eps < 1:
            raise ValueError(f"label smoothing eps must be in [0, 1), got {eps}")
        self.eps, self.reduction = eps, reduction

    def __call__(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logp = log_softmax(pred.float())
        smooth = -logp.mean(dim=-1)
        nll = nll_loss(logp, target, reduction="none")
        return _reduce((1 - self.eps) * nll + self.eps * smooth, self.reduction)

    def __repr__(self) -> str:
        return f"LabelSmoothingCrossEntropy(eps={self.eps})"


def bce_with_logits(pred: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Binary cross-entropy of sigmoid(pred) against 0/1 targets (multi-label), stable for large logits.

    -[y log s(x) + (1-y) log(1-s(x))] = max(x, 0) - x*y + log(1 + exp(-|x|)), in float32 under autocast.
    """
    x, y = pred.float(), target.float()
    if x.shape != y.shape:
        raise ValueError(
            f"bce needs one target per output: predictions {tuple(x.shape)}, targets {tuple(y.shape)}; "
            "multi-label data gives multi-hot targets (a labeller with a label delimiter)"
        )
    return _reduce(x.clamp_min(0) - x * y + torch.log1p(torch.exp(-x.abs())), reduction)


LOSSES = {
    "cross_entropy": cross_entropy,
    "label_smoothing": LabelSmoothingCrossEntropy,
    "bce": bce_with_logits,
}
