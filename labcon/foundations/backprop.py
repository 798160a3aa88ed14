"""A from-scratch MLP: forward and hand-written backward functions on a tiny Module base, as the course
refactors it. No autograd: each module keeps what its forward saw and returns the gradient of its input."""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor


class Module:
    """Base: `__call__` keeps the inputs and output for `backward`, which maps d(loss)/d(out) to d/d(input)."""

    def __init__(self) -> None:
        self.args: tuple[Tensor, ...] = ()
        self.out: Tensor | None = None
        self.grads: dict[str, Tensor] = {}  # gradients of this module's own parameters, by name

    def __call__(self, *args: Tensor) -> Tensor:
        self.args = args
        self.out = self.forward(*args)
        return self.out

    def forward(self, *args: Tensor) -> Tensor:
        """The module's output."""
        raise NotImplementedError

    def backward(self, grad_out: Tensor) -> Tensor:
        """Gradient of the loss w.r.t. the first input, given it w.r.t. the output (fills `grads`)."""
        raise NotImplementedError

    def params(self) -> dict[str, Tensor]:
        """This module's own parameters, by name."""
        return {}


class Linear(Module):
    """x @ w + b."""

    def __init__(self, n_in: int, n_out: int, generator: torch.Generator | None = None) -> None:
        super().__init__()
        # Kaiming init for a layer followed by ReLU: keeps activations' scale through the depth.
        self.w = torch.randn(n_in, n_out, generator=generator, dtype=torch.float64) * math.sqrt(2 / n_in)
        self.b = torch.zeros(n_out, dtype=torch.float64)

    def forward(self, x: Tensor) -> Tensor:
        return x @ self.w + self.b

    def backward(self, grad_out: Tensor) -> Tensor:
        (x,) = self.args
        self.grads = {"w": x.t() @ grad_out, "b": grad_out.sum(0)}
        return grad_out @ self.w.t()

    def params(self) -> dict[str, Tensor]:
        return {"w": self.w, "b": self.b}


class ReLU(Module):
    """max(x, 0)."""

    def forward(self, x: Tensor) -> Tensor:
        return x.clamp_min(0.0)

    def backward(self, grad_out: Tensor) -> Tensor:
        (x,) = self.args
        return grad_out * (x > 0).to(grad_out.dtype)


class MSE(Module):
    """Mean squared error of a single-output prediction (n, 1) against targets (n,)."""

    def forward(self, pred: Tensor, targ: Tensor) -> Tensor:
        return (pred.squeeze(-1) - targ).pow(2).mean()

    def backward(self, grad_out: Tensor | None = None) -> Tensor:
        pred, targ = self.args
        g = 2.0 * (pred.squeeze(-1) - targ).unsqueeze(-1) / targ.shape[0]
        return g if grad_out is None else g * grad_out


class CrossEntropy(Module):
    """Mean negative log-likelihood of integer targets under log-softmax (via logsumexp, stable)."""

    def forward(self, logits: Tensor, targ: Tensor) -> Tensor:
        m = logits.max(-1, keepdim=True).values
        lse = m + (logits - m).exp().sum(-1, keepdim=True).log()
        log_p = logits - lse
        return -log_p[torch.arange(targ.shape[0]), targ].mean()

    def backward(self, grad_out: Tensor | None = None) -> Tensor:
        logits, targ = self.args
        g = logits.softmax(-1)
        g[torch.arange(targ.shape[0]), targ] -= 1.0  # softmax minus one-hot
        g = g / targ.shape[0]
        return g if grad_out is None else g * grad_out


class Sequential(Module):
    """Layers applied in order; backward runs them in reverse."""

    def __init__(self, *layers: Module) -> None:
        super().__init__()
        self.layers = list(layers)

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return x

    def backward(self, grad_out: Tensor) -> Tensor:
        for layer in reversed(self.layers):
            grad_out = layer.backward(grad_out)
        return grad_out

    def params(self) -> dict[str, Tensor]:
        return {f"{i}.{k}": v for i, layer in enumerate(self.layers) for k, v in layer.params().items()}

    def param_grads(self) -> dict[str, Tensor]:
        """Every parameter's gradient from the last backward, by the same names as `params()`."""
        return {f"{i}.{k}": v for i, layer in enumerate(self.layers) for k, v in layer.grads.items()}


def mlp(sizes: list[int], seed: int = 0) -> Sequential:
    """Linear/ReLU layers of the given sizes (no ReLU after the last Linear), float64."""
    if len(sizes) < 2:
        raise ValueError(f"an MLP needs at least an input and an output size, got {sizes}")
    g = torch.Generator().manual_seed(seed)
    layers: list[Module] = []
    for i in range(len(sizes) - 1):
        layers.append(Linear(sizes[i], sizes[i + 1], generator=g))
        if i < len(sizes) - 2:
            layers.append(ReLU())
    return Sequential(*layers)


def manual_grads(model: Sequential, loss: Module, x: Tensor, y: Tensor) -> tuple[float, dict[str, Tensor]]:
    """Loss value and parameter gradients by the hand-written backward functions."""
    value = loss(model(x), y)
    model.backward(loss.backward())
    return float(value), model.param_grads()


def autograd_grads(model: Sequential, loss: Module, x: Tensor, y: Tensor) -> tuple[float, dict[str, Tensor]]:
    """The same loss and gradients by torch's autograd, on copies of the parameters."""
    params = {k: v.detach().clone().requires_grad_(True) for k, v in model.params().items()}
    h = x
    for i, layer in enumerate(model.layers):
        if isinstance(layer, Linear):
            h = h @ params[f"{i}.w"] + params[f"{i}.b"]
        else:
            h = torch.relu(h)
    if isinstance(loss, CrossEntropy):
        value = torch.nn.functional.cross_entropy(h, y)
    else:
        value = torch.nn.functional.mse_loss(h.squeeze(-1), y)
    value.backward()
    return float(value.detach()), {k: p.grad for k, p in params.items()}


def sample_data(n: int, n_in: int, n_classes: int, seed: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    """Random inputs (n, n_in), class targets (n,) and regression targets (n,), float64."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, n_in, generator=g, dtype=torch.float64)
    return x, torch.randint(0, n_classes, (n,), generator=g), torch.randn(n, generator=g, dtype=torch.float64)


@dataclass(frozen=True)
class BackpropRow:
    """One loss: seconds per forward+backward by hand and by autograd, and the largest gradient difference."""

    loss: str
    manual_s: float
    autograd_s: float
    max_grad_diff: float


def _best(fn: Callable[[], object], reps: int) -> float:
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def backprop_bytes(n: int, sizes: tuple[int, ...]) -> int:
    """About the most memory bench_backprop holds at once (float64): weights, two sets of gradients and
    autograd's copy, and each layer's saved activations and their gradients for a batch of n."""
    weights = sum(a * b + b for a, b in zip(sizes, sizes[1:], strict=False))
    return 8 * (4 * weights + 6 * n * sum(sizes))


def bench_backprop(
    n: int = 256, sizes: tuple[int, ...] = (64, 50, 10), reps: int = 20, seed: int = 0
) -> list[BackpropRow]:
    """MSE (one output) and cross-entropy: hand-written vs autograd gradients, compared and timed."""
    rows = []
    for name, loss, out in (("mse", MSE(), 1), ("cross_entropy", CrossEntropy(), sizes[-1])):
        model = mlp([*sizes[:-1], out], seed=seed)
        x, y_cls, y_reg = sample_data(n, sizes[0], sizes[-1], seed=seed)
        y = y_cls if name == "cross_entropy" else y_reg
        _, mine = manual_grads(model, loss, x, y)
        _, ref = autograd_grads(model, loss, x, y)
        diff = max(float((mine[k] - ref[k]).abs().max()) for k in ref)
        t_manual = _best(functools.partial(manual_grads, model, loss, x, y), reps)
        t_auto = _best(functools.partial(autograd_grads, model, loss, x, y), reps)
        rows.append(BackpropRow(name, t_manual, t_auto, diff))
    return rows
