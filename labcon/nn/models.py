"""Small ready-made models."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from labcon.nn.init import kaiming_init
from labcon.nn.layers import Flatten, conv_layer


def simple_cnn(
    c_in: int,
    n_out: int,
    channels: Sequence[int] = (16, 32, 64, 64),
    norm: str | None = "batch",
    leak: float | None = None,
    sub: float | None = None,
    maxv: float | None = None,
) -> nn.Sequential:
    """A small fast CNN for 28-64 px images: stride-2 3x3 conv blocks, adaptive avg pool, linear head.

    leak/sub/maxv configure every block's GeneralRelu; Kaiming's gain follows the leak.
    """
    if not channels:
        raise ValueError("simple_cnn needs at least one entry in channels")
    nfs = [c_in, *channels]
    act = {"leak": leak, "sub": sub, "maxv": maxv}
    body = [conv_layer(nfs[i], nfs[i + 1], ks=3, stride=2, norm=norm, **act) for i in range(len(channels))]
    model = nn.Sequential(*body, nn.AdaptiveAvgPool2d(1), Flatten(), nn.Linear(nfs[-1], n_out))
    return kaiming_init(model, leak=leak or 0.0)
