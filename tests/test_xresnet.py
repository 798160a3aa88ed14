"""XResNet and simple_cnn: structure per the reference, shapes, zero-init residuals, gradients flow."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from labcon.nn.layers import conv_layer
from labcon.nn.models import simple_cnn
from labcon.nn.norms import RunningBatchNorm
from labcon.nn.xresnet import ResBlock, xresnet18, xresnet34, xresnet50


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize(
    ("fn", "blocks", "millions"), [(xresnet18, 8, 11.2), (xresnet34, 16, 21.3), (xresnet50, 16, 23.5)]
)
def test_structure_and_size(fn, blocks: int, millions: float) -> None:
    model = fn(c_in=3, n_out=10)
    assert n_params(model) / 1e6 == pytest.approx(millions, abs=0.1)
    res = [m for m in model.modules() if isinstance(m, ResBlock)]
    assert len(res) == blocks
    # Stem: three 3x3 convs c_in -> 32 -> 32 -> 64, the first with stride 2.
    stem = [model[i][0] for i in range(3)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride) for c in stem] == [
        (3, 32, (3, 3), (2, 2)),
        (32, 32, (3, 3), (1, 1)),
        (32, 64, (3, 3), (1, 1)),
    ]
    for b in res:
        last_bn = b.convs[-1][1]
        assert torch.count_nonzero(last_bn.weight) == 0  # zero-init: each block starts as the identity path
    downs = [b for b in res if isinstance(b.pool, nn.AvgPool2d)]
    assert len(downs) == 3 and all(isinstance(b.idconv[0], nn.Conv2d) for b in downs)
    assert all(b.idconv[0].kernel_size == (1, 1) for b in downs)


def test_forward_backward_and_identity_at_init() -> None:
    torch.manual_seed(0)
    model = xresnet18(c_in=1, n_out=5)
    x = torch.randn(2, 1, 32, 32)
    out = model(x)
    assert out.shape == (2, 5)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    block = model[4][1]  # second block of stage 1: same shape in and out
    model.eval()
    h = torch.randn(2, 64, 8, 8)
    torch.testing.assert_close(block(h), torch.relu(h))


def test_simple_cnn_and_conv_layer() -> None:
    model = simple_cnn(3, 10)
    assert model[0][0].out_channels == 16 and model[0][0].kernel_size == (3, 3)
    assert model(torch.randn(4, 3, 64, 64)).shape == (4, 10)
    assert simple_cnn(1, 2)(torch.randn(2, 1, 28, 28)).shape == (2, 2)
    block = conv_layer(4, 8, norm="running", leak=0.1, sub=0.4)
    assert isinstance(block[1], RunningBatchNorm) and block[0].bias is None
    assert conv_layer(4, 8, norm=None)[0].bias is not None
