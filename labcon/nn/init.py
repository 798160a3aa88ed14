"""Weight initialisation used by models: leak-aware Kaiming."""

from __future__ import annotations

import math

import torch
from torch import nn

from labcon.errors import LabconError

WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def kaiming_init(model: nn.Module, mode: str = "normal", leak: float = 0.0) -> nn.Module:
    """Kaiming-initialise every conv/linear weight (std = gain/sqrt(fan_in)) and zero the biases.

    gain = sqrt(2 / (1 + leak^2)); fan_in = input channels per group x kernel area. mode 'normal' or
    'uniform' (same std). Returns the model.
    """
    if mode not in ("normal", "uniform"):
        raise LabconError(f"kaiming_init mode must be 'normal' or 'uniform', not {mode!r}")
    gain = math.sqrt(2.0 / (1.0 + leak * leak))
    with torch.no_grad():
        for m in model.modules():
            if not isinstance(m, WEIGHTED):
                continue
            fan_in = m.weight[0].numel()
            std = gain / math.sqrt(fan_in)
            if mode == "normal":
                m.weight.normal_(0.0, std)
            else:
                bound = math.sqrt(3.0) * std
                m.weight.uniform_(-bound, bound)
            if m.bias is not None:
                m.bias.zero_()
    return model
