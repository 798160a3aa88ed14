"""Small building blocks: GeneralRelu, conv blocks, Flatten."""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn import functional as F

from labcon.nn.norms import make_norm


class GeneralRelu(nn.Module):
    """Leaky ReLU, then subtract `sub`, then clamp at `maxv` (each step optional)."""

    def __init__(self, leak: float | None = None, sub: float | None = None, maxv: float | None = None):
        super().__init__()
        self.leak, self.sub, self.maxv = leak, sub, maxv

    def forward(self, x: Tensor) -> Tensor:
        x = F.leaky_relu(x, self.leak) if self.leak else F.relu(x)
        # Out of place: relu's backward needs its own output unchanged.
        if self.sub is not None:
            x = x - self.sub
        if self.maxv is not None:
            x = x.clamp_max(self.maxv)
        return x

    def extra_repr(self) -> str:
        return f"leak={self.leak}, sub={self.sub}, maxv={self.maxv}"


class Flatten(nn.Module):
    """Flatten all but the batch dimension."""

    def forward(self, x: Tensor) -> Tensor:
        return x.flatten(1)


def conv_layer(
    ni: int,
    nf: int,
    ks: int = 3,
    stride: int = 2,
    norm: str | None = "batch",
    act: bool = True,
    leak: float | None = None,
    sub: float | None = None,
    maxv: float | None = None,
) -> nn.Sequential:
    """Conv (no bias when normalised) + optional normalisation + optional GeneralRelu.

    norm: 'batch' (PyTorch's fused BatchNorm2d), 'running' | 'layer' | 'group' | 'instance' (labcon's
    own layers), or None.
    """
    layers: list[nn.Module] = [nn.Conv2d(ni, nf, ks, stride=stride, padding=ks // 2, bias=norm is None)]
    if norm == "batch":
        layers.append(nn.BatchNorm2d(nf))
    elif norm is not None:
        layers.append(make_norm(norm, nf))
    if act:
        layers.append(GeneralRelu(leak, sub, maxv))
    return nn.Sequential(*layers)
