"""Optimizers vs torch.optim on a real model, losses vs F.cross_entropy, schedules."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from labcon import LAMB, SGD, Adam, combine_scheds, sched_cos, sched_exp, sched_lin, sched_no
from labcon.core.losses import LabelSmoothingCrossEntropy, cross_entropy, log_softmax


def _cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 5),
    )


def _train_pair(make_ours, make_ref, steps: int = 100) -> None:
    m1, m2 = _cnn(), _cnn()
    o1, o2 = make_ours(m1.parameters()), make_ref(m2.parameters())
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x = torch.randn(16, 3, 12, 12, generator=g)
        y = torch.randint(0, 5, (16,), generator=g)
        for m, o in ((m1, o1), (m2, o2)):
            F.cross_entropy(m(x), y).backward()
            o.step()
            o.zero_grad()
    for p1, p2 in zip(m1.parameters(), m2.parameters(), strict=True):
        torch.testing.assert_close(p1, p2, atol=1e-5, rtol=1e-4)


def test_sgd_matches_torch():
    _train_pair(lambda p: SGD(p, lr=0.05), lambda p: torch.optim.SGD(p, lr=0.05))


def test_sgd_momentum_l2_matches_torch():
    _train_pair(
        lambda p: SGD(p, lr=0.02, mom=0.9, wd=1e-2, decouple_wd=False),
        lambda p: torch.optim.SGD(p, lr=0.02, momentum=0.9, weight_decay=1e-2),
    )


def test_adam_matches_torch():
    _train_pair(
        lambda p: Adam(p, lr=1e-3, mom=0.9, sqr_mom=0.99, eps=1e-5, decouple_wd=False, wd=1e-3),
        lambda p: torch.optim.Adam(p, lr=1e-3, betas=(0.9, 0.99), eps=1e-5, weight_decay=1e-3),
    )


def test_adamw_matches_torch():
    _train_pair(
        lambda p: Adam(p, lr=1e-3, wd=1e-2),
        lambda p: torch.optim.AdamW(p, lr=1e-3, betas=(0.9, 0.99), eps=1e-5, weight_decay=1e-2),
    )


def test_lamb_trust_ratio_and_learning():
    m = _cnn()
    opt = LAMB(m.parameters(), lr=5e-2, wd=1e-2)
    x, y = torch.randn(32, 3, 12, 12), torch.randint(0, 5, (32,))
    first = F.cross_entropy(m(x), y).item()
    for _ in range(100):
        F.cross_entropy(m(x), y).backward()
        opt.step()
        opt.zero_grad()
    assert F.cross_entropy(m(x), y).item() < first * 0.5  # memorises a fixed batch
    # One step on a single tensor against a hand computation.
    p = torch.nn.Parameter(torch.tensor([3.0, 4.0]))
    p.grad = torch.tensor([1.0, -2.0])
    o = LAMB([p], lr=0.1, mom=0.9, sqr_mom=0.99, eps=1e-6, wd=0.0)
    o.step()
    step = torch.tensor([1.0, -2.0]) / (torch.tensor([1.0, 2.0]) + 1e-6)  # debiased m / sqrt(debiased v)
    ratio = 5.0 / step.norm()
    torch.testing.assert_close(p.detach(), torch.tensor([3.0, 4.0]) - 0.1 * ratio * step)


def test_param_groups_state_dict_and_freeze():
    m = _cnn()
    groups = [list(m[:3].parameters()), list(m[3:].parameters())]
    opt = Adam(groups, lr=1e-3)
    assert len(opt.param_groups) == 2
    opt.param_groups[0]["lr"] = 1e-4
    F.cross_entropy(m(torch.randn(4, 3, 12, 12)), torch.tensor([0, 1, 2, 3])).backward()
    opt.step()
    sd = opt.state_dict()
    opt2 = Adam([list(m[:3].parameters()), list(m[3:].parameters())], lr=1e-3)
    opt2.load_state_dict(sd)
    assert opt2.param_groups[0]["lr"] == 1e-4 and opt2.state[groups[1][0]]["step"] == 1
    opt.keep_trainable = {id(p) for p in m[1].parameters()}
    opt.freeze()
    assert not m[0].weight.requires_grad and m[1].weight.requires_grad and m[3].weight.requires_grad
    opt.unfreeze()
    assert all(p.requires_grad for p in m.parameters())


@pytest.mark.parametrize("scale", [1.0, 1e4, 1e8])
def test_cross_entropy_matches_torch_even_for_extreme_logits(scale):
    torch.manual_seed(0)
    logits = torch.randn(64, 10) * scale
    y = torch.randint(0, 10, (64,))
    ours = cross_entropy(logits, y)
    assert torch.isfinite(ours)
    torch.testing.assert_close(ours, F.cross_entropy(logits, y), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(log_softmax(logits), F.log_softmax(logits, -1), rtol=1e-5, atol=1e-4)


def test_cross_entropy_gradient_matches_torch():
    logits = torch.randn(8, 4, requires_grad=True)
    y = torch.randint(0, 4, (8,))
    (g1,) = torch.autograd.grad(cross_entropy(logits, y), logits)
    (g2,) = torch.autograd.grad(F.cross_entropy(logits, y), logits)
    torch.testing.assert_close(g1, g2)


def test_label_smoothing_matches_torch():
    logits, y = torch.randn(32, 7), torch.randint(0, 7, (32,))
    torch.testing.assert_close(
        LabelSmoothingCrossEntropy(0.1)(logits, y), F.cross_entropy(logits, y, label_smoothing=0.1)
    )


def test_schedules():
    assert sched_lin(1, 3)(0.5) == 2
    assert sched_cos(1, 3)(0) == pytest.approx(1) and sched_cos(1, 3)(1) == pytest.approx(3)
    assert sched_exp(1e-3, 1e-1)(0.5) == pytest.approx(1e-2)
    assert sched_no(4)(0.7) == 4
    f = combine_scheds([0.3, 0.7], [sched_lin(0, 1), sched_lin(1, 0)])
    assert f(0) == 0 and f(0.3) == pytest.approx(1) and f(1.0) == pytest.approx(0)  # p = 1 works
    assert f(0.15) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="sum to 1"):
        combine_scheds([0.3, 0.3], [sched_no(1), sched_no(2)])
    assert math.isclose(combine_scheds([1.0], [sched_lin(2, 4)])(1.0), 4)
