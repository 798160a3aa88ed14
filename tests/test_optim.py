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


def _lamb_by_hand(p0: torch.Tensor, grad: torch.Tensor, lr: float, wd: float) -> torch.Tensor:
    """One LAMB step from the course's formula: r = min(||p|| / ||step||, 10), 1 when either norm is 0."""
    mom, sqr_mom, eps = 0.9, 0.99, 1e-6
    m = (1 - mom) * grad / (1 - mom)  # debiased first moment after one step = grad
    v = (1 - sqr_mom) * grad * grad / (1 - sqr_mom)
    step = m / (v.sqrt() + eps) + wd * p0
    pn, sn = p0.norm().item(), step.norm().item()
    ratio = 1.0 if pn == 0 or sn == 0 else min(pn / sn, 10.0)
    return p0 - lr * ratio * step


@pytest.mark.parametrize(
    ("p0", "grad"),
    [
        (
            torch.full((4,), 20.0),
            torch.tensor([1.0, -2.0, 0.5, 3.0]),
        ),  # ||p|| = 40 > 10: ratio ~20 clamps to 10
        (torch.tensor([3.0, 4.0, 0.0, 0.0]), torch.tensor([1.0, -2.0, 0.5, 3.0])),  # ||p|| = 5 < 10
        (torch.full((4,), 7.0), torch.full((4,), 1e-3)),  # ||p|| = 14 > 10 but the ratio 7 < 10 is kept
        (torch.zeros(4), torch.tensor([1.0, -2.0, 0.5, 3.0])),  # ||p|| = 0: ratio 1
        (torch.full((4,), 20.0), torch.zeros(4)),  # zero step (no wd): ratio 1, nothing moves
    ],
)
def test_lamb_clamps_the_trust_ratio_not_the_weight_norm(p0, grad):
    p = torch.nn.Parameter(p0.clone())
    p.grad = grad.clone()
    LAMB([p], lr=0.1, mom=0.9, sqr_mom=0.99, eps=1e-6, wd=0.0).step()
    torch.testing.assert_close(p.detach(), _lamb_by_hand(p0, grad, 0.1, 0.0))
    q = torch.nn.Parameter(p0.clone())
    q.grad = grad.clone()
    LAMB([q], lr=0.05, wd=1e-2).step()
    torch.testing.assert_close(q.detach(), _lamb_by_hand(p0, grad, 0.05, 1e-2))


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda ps: SGD(ps, lr=-1), "lr must be a number >= 0"),
        (lambda ps: Adam(ps, lr=float("nan")), "lr must be"),
        (lambda ps: Adam(ps, lr=1e-3, mom=1.0), "mom must be a number >= 0 and < 1"),
        (lambda ps: Adam(ps, lr=1e-3, sqr_mom=-0.1), "sqr_mom must be"),
        (lambda ps: LAMB(ps, lr=1e-3, eps=-1e-8), "eps must be"),
        (lambda ps: SGD(ps, lr=0.1, wd=-1), "wd must be"),
        (lambda ps: Adam([{"params": ps, "lr": -1e-3}], lr=1e-3), "lr must be"),
    ],
)
def test_optimizers_validate_hyper_parameters_like_torch(make, fragment):
    ps = list(_cnn().parameters())
    with pytest.raises(ValueError, match=fragment):
        make(ps)
    # The torch.optim reference refuses the same kind of value.
    with pytest.raises(ValueError):
        torch.optim.Adam(ps, lr=-1)
    with pytest.raises(ValueError):
        torch.optim.Adam(ps, lr=1e-3, betas=(1.0, 0.99))


def test_optimizer_accepts_lr_zero_as_torch_does():
    ps = list(_cnn().parameters())
    SGD(ps, lr=0.0)
    torch.optim.SGD(ps, lr=0.0)


def test_schedules_rescale_keep_shape_describe_and_parse():
    from labcon.core.schedules import describe, one_cycle_scheds, parse_sched, scaled

    f = one_cycle_scheds(1e-2)["lr"]
    g = scaled(f, 0.5)
    for p in (0.0, 0.1, 0.25, 0.6, 1.0):
        assert g(p) == pytest.approx(0.5 * f(p))
    assert describe(f) == "cos 0.0004 -> 0.01 (0-25%), cos 0.01 -> 1e-07 (25-100%)"
    s = parse_sched("lin:1e-5:1e-3@0.3,cos:1e-3:0")
    assert s(0) == pytest.approx(1e-5) and s(0.3) == pytest.approx(1e-3) and s(1.0) == pytest.approx(0)
    assert parse_sched("0.9")(0.5) == 0.9 and parse_sched("exp:1e-4:1e-2")(0.5) == pytest.approx(1e-3)
    assert parse_sched(s.text)(0.65) == pytest.approx(s(0.65))
    for bad, msg in [
        ("sin:1:2", "unknown annealer"),
        ("cos:1", "cos:START:END"),
        ("a@0.5,b", "not a number"),
    ]:
        with pytest.raises(ValueError, match=msg):
            parse_sched(bad)
