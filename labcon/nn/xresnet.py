"""XResNet (bag-of-tricks ResNet): 3-conv stem, zero-initialised last BatchNorm per block, avg-pool shortcut."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from labcon.nn.init import kaiming_init
from labcon.nn.layers import Flatten, GeneralRelu

Act = dict[str, float | None]


def _conv_bn(
    ni: int,
    nf: int,
    ks: int = 3,
    stride: int = 1,
    zero_bn: bool = False,
    act: bool = True,
    act_kw: Act | None = None,
) -> nn.Sequential:
    """Conv (no bias) + BatchNorm (weight 0 when zero_bn) + GeneralRelu (out of place, so backward hooks work)."""
    bn = nn.BatchNorm2d(nf)
    nn.init.constant_(bn.weight, 0.0 if zero_bn else 1.0)
    layers: list[nn.Module] = [nn.Conv2d(ni, nf, ks, stride=stride, padding=ks // 2, bias=False), bn]
    if act:
        layers.append(GeneralRelu(**(act_kw or {})))
    return nn.Sequential(*layers)


class ResBlock(nn.Module):
    """Basic (expansion 1) or bottleneck (expansion 4) residual block."""

    def __init__(self, expansion: int, ni: int, nh: int, stride: int = 1, act_kw: Act | None = None):
        super().__init__()
        nf, ni = nh * expansion, ni * expansion
        if expansion == 1:
            layers = [
                _conv_bn(ni, nh, 3, stride=stride, act_kw=act_kw),
                _conv_bn(nh, nf, 3, zero_bn=True, act=False),
            ]
        else:
            layers = [
                _conv_bn(ni, nh, 1, act_kw=act_kw),
                _conv_bn(nh, nh, 3, stride=stride, act_kw=act_kw),
                _conv_bn(nh, nf, 1, zero_bn=True, act=False),
            ]
        self.convs = nn.Sequential(*layers)
        # Shortcut: average-pool (no information thrown away, unlike a strided 1x1 conv), then 1x1 conv.
        self.idconv = nn.Identity() if ni == nf else _conv_bn(ni, nf, 1, act=False)
        self.pool = nn.Identity() if stride == 1 else nn.AvgPool2d(2, ceil_mode=True)
        self.act = GeneralRelu(**(act_kw or {}))

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.convs(x) + self.idconv(self.pool(x)))


def _xresnet(
    expansion: int,
    blocks: Sequence[int],
    c_in: int = 3,
    n_out: int = 1000,
    leak: float | None = None,
    sub: float | None = None,
    maxv: float | None = None,
) -> nn.Sequential:
    act_kw: Act = {"leak": leak, "sub": sub, "maxv": maxv}
    stem_nfs = [c_in, 32, 32, 64]
    stem = [
        _conv_bn(stem_nfs[i], stem_nfs[i + 1], stride=2 if i == 0 else 1, act_kw=act_kw) for i in range(3)
    ]
    nfs = [64 // expansion, 64, 128, 256, 512]
    stages = [
        nn.Sequential(
            *[
                ResBlock(
                    expansion,
                    nfs[i] if j == 0 else nfs[i + 1],
                    nfs[i + 1],
                    (1 if i == 0 else 2) if j == 0 else 1,
                    act_kw,
                )
                for j in range(n)
            ]
        )
        for i, n in enumerate(blocks)
    ]
    model = nn.Sequential(
        *stem,
        nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
        *stages,
        nn.AdaptiveAvgPool2d(1),
        Flatten(),
        nn.Linear(nfs[-1] * expansion, n_out),
    )
    # Kaiming for convs and the head; BatchNorm weights keep their (zero-)init from _conv_bn.
    return kaiming_init(model, leak=leak or 0.0)


def xresnet18(c_in: int = 3, n_out: int = 1000, **act: float | None) -> nn.Sequential:
    """XResNet-18: basic blocks [2, 2, 2, 2]."""
    return _xresnet(1, [2, 2, 2, 2], c_in, n_out, **act)


def xresnet34(c_in: int = 3, n_out: int = 1000, **act: float | None) -> nn.Sequential:
    """XResNet-34: basic blocks [3, 4, 6, 3]."""
    return _xresnet(1, [3, 4, 6, 3], c_in, n_out, **act)


def xresnet50(c_in: int = 3, n_out: int = 1000, **act: float | None) -> nn.Sequential:
    """XResNet-50: bottleneck blocks [3, 4, 6, 3] (expansion 4)."""
    return _xresnet(4, [3, 4, 6, 3], c_in, n_out, **act)
