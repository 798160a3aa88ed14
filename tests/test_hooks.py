"""Hooks: context managers remove themselves; the registry lists, adds, removes; fits leave no hook."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from labcon.core.events import Callback, CancelFitException
from labcon.core.hooks import Hook, HookRegistry, Hooks
from labcon.core.runner import Runner
from labcon.errors import LabconError
from tests.helpers import mlp, synthetic_dls


def n_hooks(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._backward_hooks) for m in model.modules())


def test_hook_records_and_removes_itself() -> None:
    model = mlp()
    seen: list[tuple[int, ...]] = []
    with Hook(model[0], lambda m, i, o: seen.append(tuple(o.shape))) as h:
        model(torch.randn(4, 10))
        assert n_hooks(model) == 1
    assert h.removed and n_hooks(model) == 0
    model(torch.randn(4, 10))
    assert seen == [(4, 32)]


def test_backward_hook_sees_gradients() -> None:
    model = mlp()
    grads: list[torch.Tensor] = []
    with Hook(model[2], lambda m, gi, go: grads.append(go[0].detach()), kind="backward"):
        model(torch.randn(4, 10)).sum().backward()
    assert len(grads) == 1 and torch.allclose(grads[0], torch.ones(4, 3))
    assert n_hooks(model) == 0


def test_hooks_list_removes_all_even_on_error() -> None:
    model = mlp()
    means: list[float] = []
    with pytest.raises(RuntimeError), Hooks(model, lambda m, i, o: means.append(0.0)) as hs:
        assert len(hs) == 3 and n_hooks(model) == 3
        raise RuntimeError("boom")
    assert n_hooks(model) == 0


def test_registry_add_table_remove() -> None:
    model = mlp()
    reg = HookRegistry(model)
    h1 = reg.add("0", "forward", lambda m, i, o: None, owner="user", scope="session")
    h2 = reg.add("2", "backward", lambda m, gi, go: None, owner="telemetry")
    assert reg.table() == [
        {"id": h1.id, "module": "0", "kind": "forward", "owner": "user", "scope": "session"},
        {"id": h2.id, "module": "2", "kind": "backward", "owner": "telemetry", "scope": "fit"},
    ]
    assert reg.remove_scope("fit") == 1 and n_hooks(model) == 1
    reg.remove(h1.id)
    assert reg.table() == [] and n_hooks(model) == 0
    with pytest.raises(LabconError, match="no hook with id"):
        reg.remove(h1.id)
    reg.add("1", "forward", lambda m, i, o: None, owner="a")
    reg.add("0", "forward", lambda m, i, o: None, owner="a")
    assert reg.remove_owner("a") == 2 and n_hooks(model) == 0


def test_registry_unknown_path_suggests_close_matches() -> None:
    model = nn.Sequential()
    model.add_module("body", nn.Sequential(nn.Linear(2, 2), nn.ReLU()))
    reg = HookRegistry(model)
    with pytest.raises(LabconError, match=r"did you mean 'body\.1"):
        reg.add("body.l", "forward", lambda m, i, o: None, owner="user")
    with pytest.raises(LabconError, match="kind"):
        reg.add("body.0", "sideways", lambda m, i, o: None, owner="user")


def test_registry_refresh_follows_replaced_modules() -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    reg = HookRegistry(model)
    calls: list[int] = []
    reg.add("1", "forward", lambda m, i, o: calls.append(1), owner="user")
    model[1] = nn.LayerNorm(2)
    assert reg.refresh() == 1
    model(torch.randn(3, 2))
    assert calls == [1] and n_hooks(model) == 1


class _AddHooks(Callback):
    """Installs a fit-scoped and a session-scoped hook, then optionally cancels or crashes."""

    def __init__(self, mode: str) -> None:
        self.mode = mode

    def before_fit(self) -> None:
        reg = self.runner.hooks
        reg.add("0", "forward", lambda m, i, o: None, owner="probe", scope="fit")
        reg.add("2", "backward", lambda m, gi, go: None, owner="probe", scope="fit")
        reg.add("1", "forward", lambda m, i, o: None, owner="user", scope="session")

    def after_batch(self) -> None:
        if self.mode == "cancel":
            raise CancelFitException()
        if self.mode == "crash":
            raise ValueError("crash in the middle of a fit")


@pytest.mark.parametrize("mode", ["done", "cancel", "crash"])
def test_fit_leaves_no_fit_scoped_hook(mode: str) -> None:
    model = mlp()
    runner = Runner(model, synthetic_dls(), lr=1e-2, cbs=[_AddHooks(mode)], device="cpu")
    if mode == "crash":
        with pytest.raises(Exception, match="crash in the middle"):
            runner.fit(1)
    else:
        runner.fit(1)
    assert [row["scope"] for row in runner.hooks.table()] == ["session"]
    assert n_hooks(model) == 1


def test_detached_hook_stays_registered_but_off_the_module() -> None:
    model = mlp()
    reg = HookRegistry(model)
    seen: list[int] = []
    h = reg.add("0", "forward", lambda m, i, o: seen.append(1), owner="t", attached=False)
    assert reg.table() == [{"id": h.id, "module": "0", "kind": "forward", "owner": "t", "scope": "fit"}]
    assert n_hooks(model) == 0 and not h.attached
    model(torch.randn(2, 10))
    h.attach()
    h.attach()  # idempotent: still one hook on the module
    assert n_hooks(model) == 1
    model(torch.randn(2, 10))
    h.detach()
    model(torch.randn(2, 10))
    assert seen == [1] and n_hooks(model) == 0
    h.attach()
    model[0] = nn.Linear(10, 32)  # the module at the path changes: refresh keeps the attached state
    assert reg.refresh() == 1 and n_hooks(model) == 1
    reg.remove_scope("fit")
    h.attach()  # a removed hook never comes back
    assert n_hooks(model) == 0 and reg.table() == []
