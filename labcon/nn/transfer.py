"""Transfer learning: split a model into parameter groups, freeze a prefix of them, cut a body, add a head.

A splitter turns a model into parameter groups, body first and head last; every parameter appears in
exactly one group. `freeze_to(model, groups, n)` freezes groups[:n] except normalisation layers
(their scale and shift must follow the new data, as in the course), and unfreezes groups[n:].
Models register their splitter in `SPLITTERS` under a name a config can give as `[model] splitter`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from labcon.errors import LabconError
from labcon.nn.awd_lstm import classifier_splitter, lm_splitter
from labcon.nn.layers import Flatten
from labcon.nn.norms import NORM_TYPES

Splitter = Callable[[nn.Module], list[list[nn.Parameter]]]

# Layers that start a head: everything from the first of these on (at the top level) is the head.
POOL_TYPES: tuple[type[nn.Module], ...] = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


class AdaptiveConcatPool2d(nn.Module):
    """Max and average pooling to `size`, concatenated on channels (2x the input's channels)."""

    def __init__(self, size: int = 1):
        super().__init__()
        self.size = size
        self.mp, self.ap = nn.AdaptiveMaxPool2d(size), nn.AdaptiveAvgPool2d(size)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.mp(x), self.ap(x)], dim=1)


POOL_TYPES = (*POOL_TYPES, AdaptiveConcatPool2d)


def cut_index(model: nn.Module) -> int:
    """Index of the first top-level pooling layer of a sequential model (where its head starts)."""
    if not isinstance(model, nn.Sequential):
        raise LabconError(
            f"cannot find the body of a {type(model).__name__}: cutting needs an nn.Sequential whose head "
            "starts at an adaptive pooling layer; give a splitter for this model"
        )
    for i, m in enumerate(model):
        if isinstance(m, POOL_TYPES):
            return i
    raise LabconError(
        "the model has no adaptive pooling layer at its top level, so its head cannot be cut off"
    )


def cut_body(model: nn.Module) -> nn.Sequential:
    """The model's layers before its pooling (shares their parameters with `model`)."""
    return model[: cut_index(model)]


def create_head(nf: int, n_out: int, p: float = 0.5) -> nn.Sequential:
    """The course's head: concat(max, avg) pool, flatten, dropout, linear (2*nf -> n_out)."""
    return nn.Sequential(AdaptiveConcatPool2d(), Flatten(), nn.Dropout(p), nn.Linear(2 * nf, n_out))


def body_channels(body: nn.Module, c_in: int = 3, size: int = 64) -> int:
    """Channels of the body's output, measured on a dummy batch (in eval mode: no statistics move)."""
    was = body.training
    body.eval()
    try:
        ref = next(body.parameters(), None)
        x = torch.zeros(2, c_in, size, size, device=ref.device if ref is not None else None)
        with torch.no_grad():
            return int(body(x).shape[1])
    finally:
        body.train(was)


def with_new_head(model: nn.Module, n_out: int, p: float = 0.5, c_in: int = 3) -> nn.Sequential:
    """A flat model: `model`'s body (same modules, same parameters) followed by a fresh course head."""
    body = cut_body(model)
    head = create_head(body_channels(body, c_in), n_out, p)
    ref = next(body.parameters(), None)
    if ref is not None:
        head = head.to(ref.device)
    return nn.Sequential(*body, *head)


def load_body(model: nn.Module, state: dict[str, Tensor]) -> int:
    """Copy body tensors (keys whose top-level index is before the cut) from a saved state dict.

    Returns how many tensors were copied. The saved body must match this model's body key for key and
    shape for shape; otherwise the error names the first mismatch.
    """
    cut = cut_index(model)
    own = {k: v for k, v in model.state_dict().items() if int(k.split(".", 1)[0]) < cut}
    missing = [k for k in own if k not in state]
    if missing:
        raise LabconError(
            f"the saved weights have no '{missing[0]}' ({len(missing)} body tensors missing); "
            "they come from a different architecture — use the same arch (and channels) as that session"
        )
    for k, v in own.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise LabconError(
                f"saved '{k}' has shape {tuple(state[k].shape)}, this model's has {tuple(v.shape)}; "
                "use the same arch (and channels) as the session the weights come from"
            )
    with torch.no_grad():
        for k, v in own.items():
            v.copy_(state[k].to(v.dtype))
    return len(own)


def _params(mods: Sequence[nn.Module]) -> list[nn.Parameter]:
    return [p for m in mods for p in m.parameters()]


def body_head_splitter(model: nn.Module) -> list[list[nn.Parameter]]:
    """Two groups: the body (before the pooling) and the head."""
    cut = cut_index(model)
    return [_params(list(model)[:cut]), _params(list(model)[cut:])]


def xresnet_splitter(model: nn.Module) -> list[list[nn.Parameter]]:
    """Three groups: stem + first two stages, last two stages, head (as fastai splits ResNets)."""
    cut = cut_index(model)
    layers = list(model)
    # Stem is 3 conv blocks + max pool; then the stages.
    mid = min(6, cut)
    return [_params(layers[:mid]), _params(layers[mid:cut]), _params(layers[cut:])]


SPLITTERS: dict[str, Splitter] = {
    "body_head": body_head_splitter,
    "simple_cnn": body_head_splitter,
    "xresnet": xresnet_splitter,
    "xresnet18": xresnet_splitter,
    "xresnet34": xresnet_splitter,
    "xresnet50": xresnet_splitter,
    "awd_lstm_lm": lm_splitter,
    "awd_lstm_classifier": classifier_splitter,
}


def check_groups(model: nn.Module, groups: list[list[nn.Parameter]], name: str = "splitter") -> None:
    """Raise LabconError unless every parameter of `model` is in exactly one group and none is empty."""
    seen: dict[int, int] = {}
    for i, g in enumerate(groups):
        if not g:
            raise LabconError(f"{name}: parameter group {i} is empty; every group needs parameters")
        for p in g:
            if id(p) in seen:
                raise LabconError(
                    f"{name}: a parameter is in groups {seen[id(p)]} and {i}; give it one group"
                )
            seen[id(p)] = i
    n_missing = sum(1 for p in model.parameters() if id(p) not in seen)
    if n_missing:
        raise LabconError(
            f"{name}: {n_missing} parameters of the model are in no group; every one needs a group"
        )


def norm_param_ids(model: nn.Module) -> set[int]:
    """ids of the parameters of every normalisation layer (they stay trainable when frozen)."""
    return {id(p) for m in model.modules() if isinstance(m, NORM_TYPES) for p in m.parameters(recurse=False)}


def freeze_to(model: nn.Module, groups: list[list[nn.Parameter]], n: int) -> int:
    """Freeze groups[:n] (n < 0 counts from the end) except normalisation layers; unfreeze groups[n:].

    Returns the number of frozen groups after clamping n to [0, len(groups)].
    """
    if not groups:
        raise LabconError("freeze_to needs at least one parameter group")
    k = len(groups) + n if n < 0 else n
    k = max(0, min(k, len(groups)))
    keep = norm_param_ids(model)
    for i, g in enumerate(groups):
        for p in g:
            p.requires_grad_(i >= k or id(p) in keep)
    return k


def freeze(model: nn.Module, groups: list[list[nn.Parameter]]) -> int:
    """Train only the last group (the head) and the normalisation layers."""
    return freeze_to(model, groups, -1)


def unfreeze(model: nn.Module, groups: list[list[nn.Parameter]]) -> int:
    """Train every group."""
    return freeze_to(model, groups, 0)
