"""Recurrent training: AR/TAR penalties on the LSTM's activations and the hidden state's lifetime."""

from __future__ import annotations

from torch import nn

from labcon.core.events import Callback


def _encoder(model: nn.Module) -> nn.Module | None:
    # Through DistributedDataParallel's .module too; None when the model has no recurrent encoder.
    m = getattr(model, "module", model)
    enc = getattr(m, "encoder", None)
    return enc if enc is not None and hasattr(enc, "raw_outputs") else None


class RNNTrainer(Callback):
    """AR (alpha * mean squared activation of the last layer, after dropout) and TAR (beta * mean squared
    change between time steps of its raw output) added to the loss that is back-propagated; the carried
    hidden state is reset at the start of every training and validation pass.

    Runs before mixed precision (order 10), so a loss scaler scales the penalised loss.
    """

    order = 0
    cb_name = "rnn_trainer"

    def __init__(self, alpha: float = 2.0, beta: float = 1.0):
        if alpha < 0 or beta < 0:
            raise ValueError(f"alpha and beta must be >= 0, got alpha={alpha}, beta={beta}")
        self.alpha, self.beta = alpha, beta

    def _reset(self) -> None:
        m = getattr(self.runner.model, "module", self.runner.model)
        if hasattr(m, "reset"):
            m.reset()

    def before_train(self) -> None:
        self._reset()

    def before_validate(self) -> None:
        self._reset()

    def after_loss(self) -> None:
        r = self.runner
        enc = _encoder(r.model)
        if not r.training or enc is None or not enc.outputs:
            return
        extra = 0.0
        if self.alpha:
            extra = extra + self.alpha * enc.outputs[-1].float().pow(2).mean()
        if self.beta:
            h = enc.raw_outputs[-1]
            if h.size(1) > 1:
                extra = extra + self.beta * (h[:, 1:] - h[:, :-1]).float().pow(2).mean()
        r.loss_grad = r.loss_grad + extra
