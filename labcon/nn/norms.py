"""Normalisation layers written from scratch, and `swap_norm` to change a live model's normalisation."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from labcon.errors import LabconError


def _bshape(x: Tensor) -> tuple[int, ...]:
    """Shape that broadcasts a per-channel vector against x of shape (N, C, *)."""
    return (1, -1) + (1,) * (x.dim() - 2)


def _check_input(x: Tensor, nf: int, name: str, min_dim: int = 2) -> None:
    if x.dim() < min_dim or x.shape[1] != nf:
        raise LabconError(
            f"{name}({nf}) got input of shape {tuple(x.shape)}; it expects (batch, {nf}, ...) "
            f"with at least {min_dim} dimensions — check the number of channels of the layer before it"
        )


class _AffineNorm(nn.Module):
    """Shared parts: per-channel `weight`/`bias` (named like PyTorch's so optimizers and swaps see them)."""

    def __init__(self, nf: int, eps: float = 1e-5):
        super().__init__()
        self.nf, self.eps = nf, eps
        self.weight = nn.Parameter(torch.ones(nf))
        self.bias = nn.Parameter(torch.zeros(nf))

    def _affine(self, x: Tensor) -> Tensor:
        s = _bshape(x)
        return x * self.weight.view(s) + self.bias.view(s)

    def extra_repr(self) -> str:
        return f"{self.nf}, eps={self.eps}"


class BatchNorm(_AffineNorm):
    """Batch normalisation over (N, C, *) inputs; matches nn.BatchNorm1d/2d/3d (running stats as buffers)."""

    def __init__(self, nf: int, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__(nf, eps)
        self.momentum = momentum
        self.register_buffer("running_mean", torch.zeros(nf))
        self.register_buffer("running_var", torch.ones(nf))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def forward(self, x: Tensor) -> Tensor:
        _check_input(x, self.nf, "BatchNorm")
        s = _bshape(x)
        if self.training:
            dims = [0, *range(2, x.dim())]
            var, mean = torch.var_mean(x, dim=dims, correction=0)
            n = x.numel() // self.nf
            with torch.no_grad():
                # PyTorch's momentum 0.1 means new = 0.9 old + 0.1 batch; running var is unbiased.
                self.running_mean.lerp_(mean.to(self.running_mean.dtype), self.momentum)
                unbiased = var * (n / max(n - 1, 1))
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), self.momentum)
                self.num_batches_tracked.add_(1)
        else:
            mean, var = self.running_mean, self.running_var
        x = (x - mean.view(s)) * torch.rsqrt(var.view(s) + self.eps)
        return self._affine(x)


class LayerNorm(_AffineNorm):
    """Normalise each sample over all but the batch dimension, per-channel scale and shift."""

    def forward(self, x: Tensor) -> Tensor:
        _check_input(x, self.nf, "LayerNorm")
        dims = list(range(1, x.dim()))
        var, mean = torch.var_mean(x, dim=dims, keepdim=True, correction=0)
        return self._affine((x - mean) * torch.rsqrt(var + self.eps))


class InstanceNorm(_AffineNorm):
    """Normalise each channel of each sample over its spatial positions (style transfer, not classifiers)."""

    def forward(self, x: Tensor) -> Tensor:
        _check_input(x, self.nf, "InstanceNorm", min_dim=3)
        dims = list(range(2, x.dim()))
        var, mean = torch.var_mean(x, dim=dims, keepdim=True, correction=0)
        return self._affine((x - mean) * torch.rsqrt(var + self.eps))


def _fit_groups(nf: int, groups: int) -> int:
    """The largest group count <= groups that divides nf."""
    g = max(1, min(groups, nf))
    while nf % g:
        g -= 1
    return g


def default_groups(nf: int) -> int:
    """Groups for nf channels when none are given: up to 32, at least 4 channels per group.

    A fixed 32 gives 16- and 32-channel layers one channel per group, which is InstanceNorm.
    """
    return _fit_groups(nf, max(1, min(32, nf // 4)))


class GroupNorm(_AffineNorm):
    """Normalise each sample over groups of channels (and all spatial positions); groups fitted to nf.

    groups None: `default_groups(nf)` (at least 4 channels per group, at most 32 groups).
    """

    def __init__(self, nf: int, groups: int | None = None, eps: float = 1e-5):
        super().__init__(nf, eps)
        self.groups = default_groups(nf) if groups is None else _fit_groups(nf, groups)

    def forward(self, x: Tensor) -> Tensor:
        _check_input(x, self.nf, "GroupNorm")
        n = x.shape[0]
        g = x.reshape(n, self.groups, -1)
        var, mean = torch.var_mean(g, dim=2, keepdim=True, correction=0)
        return self._affine(((g - mean) * torch.rsqrt(var + self.eps)).view_as(x))

    def extra_repr(self) -> str:
        return f"{self.nf}, groups={self.groups}, eps={self.eps}"


class RunningBatchNorm(_AffineNorm):
    """BatchNorm that normalises with running statistics in training too, so tiny batches (even 2) work."""

    def __init__(self, nf: int, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__(nf, eps)
        self.momentum = momentum
        self.register_buffer("sums", torch.zeros(nf))
        self.register_buffer("sqrs", torch.zeros(nf))
        self.register_buffer("count", torch.tensor(0.0))
        self.register_buffer("seen", torch.tensor(0.0))

    def _stats(self, sums: Tensor, sqrs: Tensor, count: Tensor, seen: Tensor) -> tuple[Tensor, Tensor]:
        count = count.clamp_min(1e-12)
        mean = sums / count
        var = sqrs / count - mean * mean
        # Until 20 items have been seen the variance estimate is noise: keep it away from zero.
        var = torch.where(seen < 20, var.clamp_min(0.01), var.clamp_min(0.0))
        return mean, var

    def forward(self, x: Tensor) -> Tensor:
        _check_input(x, self.nf, "RunningBatchNorm")
        s = _bshape(x)
        if self.training:
            bs = x.shape[0]
            dims = [0, *range(2, x.dim())]
            xs = x.to(self.sums.dtype)
            bsum, bsqr = xs.sum(dims), (xs * xs).sum(dims)
            c = float(x.numel() // self.nf)
            # Momentum adjusted for batch size: small batches move the statistics less.
            mom1 = 1 - (1 - self.momentum) / math.sqrt(max(bs - 1, 1))
            # The current batch stays in the graph (as in the original); the buffers themselves do not.
            sums, sqrs = self.sums.lerp(bsum, mom1), self.sqrs.lerp(bsqr, mom1)
            count = self.count + (c - self.count) * mom1
            seen = self.seen + bs
            with torch.no_grad():
                self.sums.copy_(sums)
                self.sqrs.copy_(sqrs)
                self.count.copy_(count)
                self.seen.copy_(seen)
        else:
            sums, sqrs, count, seen = self.sums, self.sqrs, self.count, self.seen
        mean, var = self._stats(sums, sqrs, count, seen)
        # Fast form: one multiply-add over the activations.
        factor = self.weight / torch.sqrt(var + self.eps)
        offset = self.bias - mean * factor
        return x * factor.to(x.dtype).view(s) + offset.to(x.dtype).view(s)

    def extra_repr(self) -> str:
        return f"{self.nf}, eps={self.eps}, momentum={self.momentum}"


NORMS: dict[str, type[nn.Module]] = {
    "batch": BatchNorm,
    "running": RunningBatchNorm,
    "layer": LayerNorm,
    "group": GroupNorm,
    "instance": InstanceNorm,
}

# Every normalisation layer type swap_norm recognises (PyTorch's and labcon's).
NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._BatchNorm,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.modules.instancenorm._InstanceNorm,
    _AffineNorm,
)


def make_norm(kind: str | None, nf: int, **kwargs: Any) -> nn.Module | None:
    """A labcon normalisation layer of `kind` for nf channels (None for kind None)."""
    if kind is None:
        return None
    if kind not in NORMS:
        raise LabconError(f"unknown normalisation {kind!r}; choose one of: {', '.join(NORMS)}")
    return NORMS[kind](nf, **kwargs)


def describe_norms(model: nn.Module) -> str:
    """What normalisation the model has, e.g. 'GroupNorm 16ch/4 groups x1, 32ch/8 groups x1' or 'none'."""
    counts: dict[str, int] = {}
    for m in model.modules():
        if not isinstance(m, NORM_TYPES):
            continue
        groups = getattr(m, "groups", getattr(m, "num_groups", None))
        nf = _channels(m)
        key = f"{type(m).__name__} {nf}ch" + (f"/{groups} groups" if isinstance(groups, int) else "")
        counts[key] = counts.get(key, 0) + 1
    return ", ".join(f"{k} x{n}" for k, n in counts.items()) or "none"


def _channels(m: nn.Module) -> int:
    for attr in ("nf", "num_features", "num_channels"):
        if isinstance(getattr(m, attr, None), int):
            return getattr(m, attr)
    if isinstance(m, nn.LayerNorm):
        return m.normalized_shape[0]
    raise LabconError(f"cannot tell how many channels {type(m).__name__} normalises")


def _running_stats(m: nn.Module) -> tuple[Tensor, Tensor] | None:
    """(mean, var) running statistics of a norm layer, when it keeps them."""
    if isinstance(m, RunningBatchNorm):
        if float(m.count) <= 0:
            return None
        return m._stats(m.sums, m.sqrs, m.count, m.seen)
    mean, var = getattr(m, "running_mean", None), getattr(m, "running_var", None)
    if isinstance(mean, Tensor) and isinstance(var, Tensor):
        return mean, var
    return None


# Pseudo-count given to RunningBatchNorm statistics carried over from another layer: enough to trust them.
_CARRIED_COUNT = 100.0


def _build_like(old: nn.Module, kind: str, **kwargs: Any) -> nn.Module:
    nf = _channels(old)
    kwargs.setdefault("eps", getattr(old, "eps", 1e-5))
    if kind == "group" and isinstance(old, nn.GroupNorm | GroupNorm):
        kwargs.setdefault("groups", getattr(old, "num_groups", getattr(old, "groups", None)))
    if kind in ("batch", "running") and isinstance(getattr(old, "momentum", None), float):
        kwargs.setdefault("momentum", old.momentum)
    new = make_norm(kind, nf, **kwargs)
    tensors = list(old.parameters()) + list(old.buffers())
    ref = next((t for t in tensors if t.is_floating_point()), None)
    if ref is not None:
        new = new.to(device=ref.device, dtype=ref.dtype)
    with torch.no_grad():
        for name in ("weight", "bias"):
            src = getattr(old, name, None)
            if isinstance(src, Tensor) and src.shape == (nf,):
                getattr(new, name).copy_(src)
                getattr(new, name).requires_grad_(src.requires_grad)
        stats = _running_stats(old)
        if stats is not None:
            mean, var = stats
            if isinstance(new, BatchNorm):
                new.running_mean.copy_(mean)
                new.running_var.copy_(var)
            elif isinstance(new, RunningBatchNorm):
                new.count.fill_(_CARRIED_COUNT)
                new.seen.fill_(_CARRIED_COUNT)
                new.sums.copy_(mean * _CARRIED_COUNT)
                new.sqrs.copy_((var + mean * mean) * _CARRIED_COUNT)
    new.train(old.training)
    return new


def _replace_in_opt(
    opt: torch.optim.Optimizer, old: nn.Module, new: nn.Module, before: Tensor | None
) -> None:
    """Point the optimizer at new's parameters instead of old's, carrying state when shapes match."""
    olds = {name: p for name, p in old.named_parameters(recurse=False)}
    keep = getattr(opt, "keep_trainable", None)
    for name, p_new in new.named_parameters(recurse=False):
        p_old = olds.pop(name, None)
        placed = False
        if p_old is not None:
            for g in opt.param_groups:
                for i, p in enumerate(g["params"]):
                    if p is p_old:
                        g["params"][i], placed = p_new, True
            st = opt.state.pop(p_old, None)
            if st and all(
                not isinstance(v, Tensor) or v.dim() == 0 or v.shape == p_new.shape for v in st.values()
            ):
                opt.state[p_new] = st
            if isinstance(keep, set) and id(p_old) in keep:
                keep.discard(id(p_old))
                keep.add(id(p_new))
        if not placed:
            # A parameter the old layer did not have (or did not give the optimizer): join the group
            # of the parameter that precedes it in the model, so it gets that group's learning rate.
            group = next((g for g in opt.param_groups if any(q is before for q in g["params"])), None)
            (group or opt.param_groups[-1])["params"].append(p_new)
            if isinstance(keep, set):
                keep.add(id(p_new))
    for p_old in olds.values():
        for g in opt.param_groups:
            g["params"] = [q for q in g["params"] if q is not p_old]
        opt.state.pop(p_old, None)


def swap_norm(model: nn.Module, kind: str, opt: torch.optim.Optimizer | None = None, **kwargs: Any) -> int:
    """Replace every normalisation layer of a live model by labcon's `kind`; returns how many were swapped.

    kind: 'batch' | 'running' | 'layer' | 'group' | 'instance'. Affine parameters and running statistics
    are carried over where both layers have them; new layers sit on the same device and dtype. With `opt`,
    the optimizer's param groups (and per-parameter state) are moved to the new parameters. Extra kwargs
    go to the new layer's constructor (e.g. groups=8).
    """
    if kind not in NORMS:
        raise LabconError(f"unknown normalisation {kind!r}; choose one of: {', '.join(NORMS)}")
    targets = [(name, m) for name, m in model.named_modules() if isinstance(m, NORM_TYPES) and name]
    if not targets:
        return 0
    params_in_order = list(model.parameters())
    first_of = {id(p): i for i, p in enumerate(params_in_order)}
    for path, old in targets:
        parent_path, _, attr = path.rpartition(".")
        parent = model.get_submodule(parent_path) if parent_path else model
        new = _build_like(old, kind, **kwargs)
        if opt is not None:
            own = list(old.parameters(recurse=False))
            idx = min((first_of[id(p)] for p in own if id(p) in first_of), default=None)
            before = params_in_order[idx - 1] if idx else None
            _replace_in_opt(opt, old, new, before)
        setattr(parent, attr, new)
    return len(targets)
