"""Transfer learning pieces: splitters, freeze_to keeping norm layers trainable, cut + course head, body loading."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from labcon.errors import LabconError
from labcon.nn.models import simple_cnn
from labcon.nn.norms import NORM_TYPES
from labcon.nn.transfer import (
    SPLITTERS,
    AdaptiveConcatPool2d,
    check_groups,
    freeze,
    freeze_to,
    load_body,
    lr_range,
    unfreeze,
    with_new_head,
)
from labcon.nn.xresnet import xresnet18


@pytest.mark.parametrize("arch", ["simple_cnn", "xresnet18"])
def test_splitter_covers_every_parameter_once_head_last(arch: str) -> None:
    model = simple_cnn(3, 5) if arch == "simple_cnn" else xresnet18(3, 5)
    groups = SPLITTERS[arch](model)
    check_groups(model, groups)
    assert len(groups) == (2 if arch == "simple_cnn" else 3)
    head = model[-1]
    assert {id(p) for p in head.parameters()} <= {id(p) for p in groups[-1]}


def test_freeze_keeps_norm_layers_trainable_and_unfreeze_restores() -> None:
    model = xresnet18(3, 5)
    groups = SPLITTERS["xresnet18"](model)
    freeze(model, groups)
    norm_ids = {id(p) for m in model.modules() if isinstance(m, NORM_TYPES) for p in m.parameters()}
    for i, g in enumerate(groups):
        for p in g:
            assert p.requires_grad == (i == len(groups) - 1 or id(p) in norm_ids)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert not any(c.weight.requires_grad for c in convs)
    assert freeze_to(model, groups, 1) == 1
    assert all(p.requires_grad for p in groups[1])
    assert not groups[0][0].requires_grad  # the stem's first conv
    unfreeze(model, groups)
    assert all(p.requires_grad for p in model.parameters())


def test_check_groups_names_missing_and_duplicate_parameters() -> None:
    model = simple_cnn(3, 5)
    groups = SPLITTERS["simple_cnn"](model)
    with pytest.raises(LabconError, match="in no group"):
        check_groups(model, groups[:1])
    with pytest.raises(LabconError, match="groups 0 and 1"):
        check_groups(model, [groups[0], groups[0] + groups[1]])


def test_new_head_is_the_course_head_and_body_is_shared() -> None:
    model = xresnet18(3, 10)
    new = with_new_head(model, 4, p=0.25)
    kinds = [type(m) for m in list(new)[-4:]]
    assert kinds[0] is AdaptiveConcatPool2d and kinds[2] is nn.Dropout and kinds[3] is nn.Linear
    assert new[-1].in_features == 2 * 512 and new[-1].out_features == 4
    assert new[0][0].weight is model[0][0].weight
    assert new(torch.randn(2, 3, 32, 32)).shape == (2, 4)


def test_load_body_round_trip_and_mismatch() -> None:
    src = simple_cnn(3, 10)
    dst = with_new_head(simple_cnn(3, 10), 2)
    n = load_body(dst, src.state_dict())
    assert n > 0
    for k, v in dst.state_dict().items():
        if int(k.split(".")[0]) < 4:
            assert torch.equal(v, src.state_dict()[k])
    with pytest.raises(LabconError, match="shape"):
        load_body(with_new_head(simple_cnn(3, 10, channels=(8, 32, 64, 64)), 2), src.state_dict())


def test_lr_range_is_geometric_from_max_over_mult() -> None:
    lrs = lr_range(1e-2, 3)
    assert lrs == pytest.approx([1e-4, 1e-3, 1e-2])
    assert lr_range(1e-2, 1) == [1e-2]
