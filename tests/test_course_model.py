"""Course pieces from config: LSUV after the activation, PyTorch's default init, GroupNorm groups,
GeneralRelu keys, loss choice (cross-entropy, label smoothing eps, BCE), all checked on real builds."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from labcon.core.init import _measure, lsuv_init, lsuv_units
from labcon.core.losses import LabelSmoothingCrossEntropy, bce_with_logits
from labcon.core.metrics import accuracy_multi
from labcon.errors import ConfigError
from labcon.nn.layers import GeneralRelu
from labcon.nn.models import simple_cnn
from labcon.nn.norms import GroupNorm
from labcon.nn.xresnet import xresnet18
from labcon.session.build import build
from labcon.session.config import parse_config
from labcon.session.session import Session


def _cfg(data, model: str = "", train: str = "", name: str = "c") -> str:
    return (
        f'name = "{name}"\nseed = 3\n'
        f'[data]\npath = "{data}"\nsize = 16\nbs = 16\nnum_workers = 0\nsplitter = "grandparent"\n'
        f'labeller = "parent"\n[model]\n{model}\n[train]\nepochs = 1\n{train}\n[telemetry]\nenabled = false\n'
    )


def _act_stats(model: nn.Module, x: torch.Tensor) -> list[tuple[str, float, float]]:
    return [(u.name, *_measure(model, u.out, x)) for u in lsuv_units(model) if u.act is not None]


@pytest.mark.parametrize("arch", ["simple_cnn", "xresnet18"])
def test_lsuv_makes_every_activation_output_mean_0_std_1(arch: str) -> None:
    torch.manual_seed(0)
    model = simple_cnn(3, 10) if arch == "simple_cnn" else xresnet18(3, 10)
    x = torch.randn(16, 3, 16, 16)
    lsuv_init(model, x)
    stats = _act_stats(model, x)
    # Every conv unit (conv + norm + GeneralRelu): all of simple_cnn's 4, xresnet18's 3 stem + 8 block convs.
    assert len(stats) == (4 if arch == "simple_cnn" else 11)
    for name, mean, std in stats:
        assert abs(mean) < 1e-3 and abs(std - 1) < 1e-3, (name, mean, std)
    # The mean is fixed by the activation's `sub` (bias-free convs), as in the course.
    assert all(u.act.sub is not None for u in lsuv_units(model) if u.act is not None)


def test_lsuv_with_leak_and_maxv_and_no_norm() -> None:
    torch.manual_seed(0)
    model = simple_cnn(3, 10, norm=None, leak=0.1, sub=0.4, maxv=6.0)
    x = torch.randn(32, 3, 16, 16)
    lsuv_init(model, x)
    for name, mean, std in _act_stats(model, x):
        assert abs(mean) < 1e-3 and abs(std - 1) < 1e-3, (name, mean, std)


def test_config_init_lsuv_runs_on_a_training_batch(data) -> None:
    b = build(parse_config(_cfg(data, 'init = "lsuv"\nchannels = [8, 16]')))
    xb, _ = b.dls.one_batch()
    for name, mean, std in _act_stats(b.model, xb.to(next(b.model.parameters()).device)):
        assert abs(mean) < 1e-3 and abs(std - 1) < 1e-3, (name, mean, std)
    assert any("LSUV" in n for n in b.notes)


def test_config_init_default_is_pytorch_default_not_kaiming(data) -> None:
    def first_conv_std(init: str) -> float:
        b = build(parse_config(_cfg(data, f'init = "{init}"\nchannels = [64, 64]')))
        return b.model[1][0].weight.std().item()

    fan_in = 64 * 9
    # kaiming_uniform(a=sqrt(5)): bound 1/sqrt(fan_in), std bound/sqrt(3); Kaiming normal: sqrt(2/fan_in).
    assert first_conv_std("default") == pytest.approx(1 / math.sqrt(3 * fan_in), rel=0.05)
    assert first_conv_std("kaiming") == pytest.approx(math.sqrt(2 / fan_in), rel=0.05)


def test_group_norm_default_groups_and_groups_key_say_what_was_built(data, tmp_path) -> None:
    b = build(parse_config(_cfg(data, 'norm = "group"\nchannels = [16, 32]')))
    gns = [m for m in b.model.modules() if isinstance(m, GroupNorm)]
    assert [(g.nf, g.groups) for g in gns] == [(16, 4), (32, 8)]  # never one channel per group
    assert "GroupNorm 16ch/4 groups" in " ".join(b.notes)
    b = build(parse_config(_cfg(data, 'norm = "group"\ngroups = 2\nchannels = [16, 32]')))
    assert [g.groups for g in b.model.modules() if isinstance(g, GroupNorm)] == [2, 2]
    with pytest.raises(ConfigError, match="model.groups.*only to norm = 'group'"):
        parse_config(_cfg(data, "groups = 2"))
    s = Session(parse_config(_cfg(data, 'norm = "group"\nchannels = [16, 32]', name="g")), tmp_path)
    try:
        reply = s.submit("status")
        assert "built: norm: GroupNorm 16ch/4 groups x1, GroupNorm 32ch/8 groups x1" in reply.text
    finally:
        s.close()


@pytest.mark.parametrize("arch", ["simple_cnn", "xresnet18"])
def test_general_relu_keys_reach_every_activation(data, arch: str) -> None:
    b = build(parse_config(_cfg(data, f'arch = "{arch}"\nleak = 0.1\nsub = 0.4\nmaxv = 6.0')))
    acts = [m for m in b.model.modules() if isinstance(m, GeneralRelu)]
    assert acts and all((a.leak, a.sub, a.maxv) == (0.1, 0.4, 6.0) for a in acts)
    assert not any(isinstance(m, nn.ReLU) for m in b.model.modules())
    # Kaiming's gain follows the leak: std = sqrt(2 / (1 + leak^2)) / sqrt(fan_in).
    conv = next(m for m in b.model.modules() if isinstance(m, nn.Conv2d) and m.weight[0].numel() >= 144)
    fan_in = conv.weight[0].numel()
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / 1.01) / math.sqrt(fan_in), rel=0.1)


def test_loss_choice_from_config(data) -> None:
    b = build(parse_config(_cfg(data, train='loss = "label_smoothing"\nsmoothing = 0.2')))
    assert isinstance(b.runner.loss_func, LabelSmoothingCrossEntropy) and b.runner.loss_func.eps == 0.2
    pred, y = torch.randn(8, 5), torch.randint(0, 5, (8,))
    ref = F.cross_entropy(pred, y, label_smoothing=0.2 * 5 / 5)
    # PyTorch spreads eps over all classes including the target: the same formula as the course's.
    assert b.runner.loss_func(pred, y).item() == pytest.approx(ref.item(), rel=1e-5)
    with pytest.raises(ConfigError, match="need multi-label data"):
        build(parse_config(_cfg(data, train='loss = "bce"')))
    with pytest.raises(ConfigError, match="train.smoothing.*label_smoothing"):
        parse_config(_cfg(data, train="smoothing = 0.1"))


def test_bce_and_thresholded_accuracy_match_references() -> None:
    torch.manual_seed(0)
    pred = torch.randn(6, 4) * 30  # large logits: the stable form must not overflow
    y = (torch.rand(6, 4) > 0.5).float()
    assert torch.allclose(bce_with_logits(pred, y), F.binary_cross_entropy_with_logits(pred, y), atol=1e-5)
    pred = torch.tensor([[2.0, -1.0], [-3.0, 0.5]])
    assert accuracy_multi(pred, torch.tensor([[1.0, 0.0], [1.0, 1.0]])).item() == pytest.approx(0.75)
    with pytest.raises(ValueError, match="one target per output"):
        bce_with_logits(torch.randn(4, 3), torch.tensor([0, 1, 2, 0]))


def test_lsuv_session_resumes_with_the_same_activation_shifts(data, tmp_path) -> None:
    cfg = parse_config(_cfg(data, 'init = "lsuv"\nchannels = [8, 16]', name="lr"))
    s = Session(cfg, tmp_path)
    try:
        subs = [m.sub for m in s.runner.model.modules() if isinstance(m, GeneralRelu)]
        assert all(v is not None for v in subs)
        assert s.start_fit(epochs=1).ok and s.wait(120) and s.last_error is None
        weights = {k: v.clone() for k, v in s.runner.model.state_dict().items()}
    finally:
        s.close()
    r = Session.resume("lr", tmp_path)
    try:
        # `sub` is not a tensor: the rebuilt model reruns LSUV on the same seeded batch and gets it back.
        assert [m.sub for m in r.runner.model.modules() if isinstance(m, GeneralRelu)] == subs
        assert all(torch.equal(v, weights[k]) for k, v in r.runner.model.state_dict().items())
    finally:
        r.close()


def test_lsuv_gives_every_rank_the_same_shifts(data) -> None:
    cfg = parse_config(_cfg(data, 'init = "lsuv"\nchannels = [8, 16]'))
    subs = [
        [m.sub for m in build(cfg, rank=r, world_size=2).model.modules() if isinstance(m, GeneralRelu)]
        for r in (0, 1)
    ]
    assert subs[0] == subs[1] and all(v is not None for v in subs[0])
