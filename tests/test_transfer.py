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


def test_a_spread_is_geometric_from_lo_to_hi() -> None:
    from labcon.commands.spread import Spread

    assert Spread(1e-4, 1e-2).values(3) == pytest.approx([1e-4, 1e-3, 1e-2])
    assert Spread(1e-4, 1e-2).values(1) == (1e-2,)


# ----- through a real Session: commands, fine_tune, body from another session ---------------------


def _cfg(data, name: str, model: str = "") -> str:
    return (
        f'name = "{name}"\nseed = 3\n'
        f'[data]\npath = "{data}"\nsize = 16\nbs = 8\nnum_workers = 0\nsplitter = "grandparent"\n'
        f'labeller = "parent"\n[model]\nchannels = [8, 16]\n{model}\n[train]\nepochs = 1\nlr = 1e-2\n'
        "[telemetry]\nenabled = false\n"
    )


def test_freeze_commands_on_a_session(data, tmp_path) -> None:
    from labcon.session.config import parse_config
    from labcon.session.session import Session

    s = Session(parse_config(_cfg(data, "fz")), tmp_path)
    try:
        m = s.runner.model
        reply = s.submit("freeze")
        assert reply.ok and "groups 0..0 of 2 frozen" in reply.text, reply.text
        assert not m[0][0].weight.requires_grad and m[0][1].weight.requires_grad  # conv frozen, BN trains
        assert m[-1].weight.requires_grad
        assert len(s.runner.opt.param_groups) == 2 and len(s.status()["hypers"]["lr"]) == 2
        assert not s.submit("unfreeze_to 2").ok  # only groups 0 and 1
        assert s.submit("unfreeze").ok and all(p.requires_grad for p in m.parameters())
        summary = s.submit("summary")
        assert summary.ok and "(frozen)" not in summary.text
        assert (
            "0.0" in summary.text and "8x8x8" in summary.text
        )  # first conv: 8 channels at 8x8 (16 px, stride 2)
        # conv 3->8, 3x3, 8x8 output: 8*8*8 outputs x 27 multiply-adds each.
        assert f"{8 * 8 * 8 * 27 / 1000:.3g}k" in summary.text  # 13.8k
    finally:
        s.close()


def test_freeze_during_a_one_cycle_fit_keeps_it_training_on_schedule(data, tmp_path) -> None:
    """freeze mid-fit rebuilds a one-group optimizer with two groups; the scheduler follows, the fit goes on."""
    from labcon.core.schedules import one_cycle_scheds
    from labcon.session.config import parse_config
    from labcon.session.session import Session

    s = Session(parse_config(_cfg(data, "fzlive")), tmp_path)
    try:
        assert s.submit("fit_one_cycle 3").ok
        reply = s.submit("freeze")  # queued for the end of the first epoch
        assert reply.ok, reply.text
        assert s.wait(120)
        assert s.last_error is None and s.status()["state"] == "idle", s.last_error
        groups = s.runner.opt.param_groups
        assert len(groups) == 2 and s.runner.epoch == 3
        # Both groups ended where the one-cycle schedule ends (the last batch set pct_train just under 1).
        end = one_cycle_scheds(1e-2)["lr"](1 - 1 / (3 * len(s.runner.dls.train)))
        assert all(g["lr"] == pytest.approx(end, rel=0.05) for g in groups)
    finally:
        s.close()


def test_fine_tune_runs_frozen_then_unfrozen_with_discriminative_lrs(data, tmp_path) -> None:
    from labcon.session.config import parse_config
    from labcon.session.journal import Journal
    from labcon.session.session import Session

    s = Session(parse_config(_cfg(data, "ft")), tmp_path)
    seen: list[tuple[bool, list[float]]] = []
    try:
        frozen_conv = s.runner.model[0][0].weight
        before = frozen_conv.detach().clone()
        assert s.submit("fine_tune 1 lr=1e-2").ok
        assert s.wait(180)
        assert len(s.history()) == 2  # one frozen epoch, one unfrozen
        lrs = s.runner.hyper("lr")
        # The unfrozen one-cycle peaks at lr/2 for the head and lr/200 for the body.
        assert s.runner.opt.param_groups[0]["lr"] < lrs[-1]
        assert all(p.requires_grad for p in s.runner.model.parameters())
        assert not torch.equal(before, frozen_conv)  # trained in the second phase
        # Each fit is its own run (the commands that set it up are journaled with it): frozen, then unfrozen.
        run = s.persist.run_id
        with Journal(tmp_path / "journal.db") as j:
            seen = [e["text"] for rid in (run - 1, run) for e in j.events(rid, kinds=["command"])]
    finally:
        s.close()
    assert seen == [
        "freeze",
        "fit_one_cycle 1 lr=0.01 pct_start=0.99",
        "unfreeze",
        "fit_one_cycle 1 lr=5e-05..0.005 pct_start=0.3",
    ]


def test_body_from_another_sessions_weights_round_trip(data, tmp_path) -> None:
    from labcon.session.config import parse_config
    from labcon.session.session import Session

    src = Session(parse_config(_cfg(data, "src")), tmp_path)
    try:
        assert src.start_fit(epochs=1).ok and src.wait(120)
        assert src.submit("save").ok
        body = {k: v.detach().clone() for k, v in src.runner.model.state_dict().items() if int(k[0]) < 2}
    finally:
        src.close()
    dst = Session(parse_config(_cfg(data, "dst", 'body = "src"\nhead_dropout = 0.1')), tmp_path)
    try:
        sd = dst.runner.model.state_dict()
        assert body and all(torch.equal(sd[k].cpu(), v.cpu()) for k, v in body.items())
        assert isinstance(dst.runner.model[2], AdaptiveConcatPool2d)
        assert dst.runner.model[-1].in_features == 2 * 16
        assert (
            len(dst.runner.opt.param_groups if dst.runner.opt else dst.runner.splitter(dst.runner.model)) == 2
        )
        assert any("body:" in n and "session 'src'" in n for n in dst.status()["built"])
    finally:
        dst.close()
    from labcon.errors import ConfigError

    with pytest.raises(ConfigError, match="no session 'nope'"):
        Session(parse_config(_cfg(data, "dst2", 'body = "nope"')), tmp_path)


def test_freeze_survives_checkpoint_and_resume(data, tmp_path) -> None:
    from labcon.session.config import parse_config
    from labcon.session.session import Session

    s = Session(parse_config(_cfg(data, "fr")), tmp_path)
    try:
        assert s.submit("freeze").ok
        assert s.start_fit(epochs=1).ok and s.wait(120) and s.last_error is None
        frozen = {n for n, p in s.runner.model.named_parameters() if not p.requires_grad}
        assert frozen
    finally:
        s.close()
    r = Session.resume("fr", tmp_path)
    try:
        assert {n for n, p in r.runner.model.named_parameters() if not p.requires_grad} == frozen
        assert len(r.runner.opt.param_groups) == 2
    finally:
        r.close()


def test_config_splitter_accepts_registered_splitters(data) -> None:
    from labcon.errors import ConfigError
    from labcon.session.build import build
    from labcon.session.config import parse_config

    SPLITTERS["two_halves_test"] = SPLITTERS["body_head"]
    try:
        b = build(parse_config(_cfg(data, "sp", 'splitter = "two_halves_test"')))
        assert len(b.runner.create_opt().param_groups) == 2
    finally:
        del SPLITTERS["two_halves_test"]
    with pytest.raises(ConfigError, match="model.splitter"):
        parse_config(_cfg(data, "sp", 'splitter = "nope"'))
