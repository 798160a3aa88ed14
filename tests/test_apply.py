"""Commands applied to a real Runner: set, opt (state carried), cb add/rm (registry and user files),
norm, hooks, telemetry, show loop; and RunnerContext for validation/completion."""

from __future__ import annotations

import copy
import textwrap

import pytest
import torch
from torch import nn

from labcon.commands.apply import ActivationStats, RunnerContext, apply_runner_command, load_callback_class
from labcon.commands.grammar import complete, parse, validate
from labcon.core.events import Callback
from labcon.core.optim import SGD, Adam
from labcon.core.runner import Runner
from labcon.core.schedules import sched_cos
from labcon.data.loaders import DataLoaders
from labcon.errors import CommandError


def _blobs(n: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    centers = torch.tensor([[2.0, 0, 0, 0], [0, 2.0, 0, 0], [0, 0, 2.0, 0]])
    x = centers[y] + 0.5 * torch.randn(n, 4, generator=g)
    return [(x[i : i + 16].reshape(-1, 1, 2, 2), y[i : i + 16]) for i in range(0, n, 16)]


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(32, 16),
        nn.ReLU(),
        nn.Linear(16, 3),
    )


def _splitter(m: nn.Module) -> list[list[nn.Parameter]]:
    return [list(m[:3].parameters()), list(m[3:].parameters())]


@pytest.fixture
def runner() -> Runner:
    dls = DataLoaders(_blobs(128, 1), _blobs(64, 2))
    return Runner(_model(), dls, opt_func=Adam, lr=1e-2, device="cpu", splitter=_splitter)


def run(text: str, r: Runner) -> str:
    return apply_runner_command(parse(text), r)


def valid_loss(r: Runner) -> float:
    r.model.eval()
    with torch.no_grad():
        losses = [nn.functional.cross_entropy(r.model(x), y) for x, y in r.dls.valid]
    return float(torch.stack(losses).mean())


def test_set_all_groups_one_group_and_per_group(runner: Runner) -> None:
    assert run("set lr=0.05", runner) == "set lr=0.05; later fits start from this lr"
    assert runner.hyper("lr") == [0.05, 0.05]
    assert "(group 1)" in run("set wd=0.1 group=1", runner)
    assert runner.hyper("wd") == [0.0, 0.1]
    assert run("set lr=1e-3,2e-3", runner).startswith("set lr=[0.001, 0.002]")
    assert runner.hyper("lr") == [1e-3, 2e-3]
    with pytest.raises(CommandError, match="no hyper-parameter 'lrr'"):
        run("set lrr=1", runner)
    with pytest.raises(CommandError, match="3 values for 2"):
        run("set lr=1,2,3", runner)
    assert runner.hyper("lr") == [1e-3, 2e-3]  # nothing changed by a failed command


def test_opt_same_kind_swap_keeps_training_identical() -> None:
    """Swapping Adam for Adam mid-run carries every state tensor: training continues bit-for-bit."""
    dls = DataLoaders(_blobs(128, 1), _blobs(64, 2))
    a, b = (Runner(_model(), dls, opt_func=Adam, lr=1e-2, device="cpu", splitter=_splitter) for _ in range(2))
    a.fit(1)
    b.fit(1)
    reply = run("opt adam", a)
    assert "adam -> adam" in reply and "grad_avg" in reply and "sqr_avg" in reply and "step" in reply
    a.fit(1)
    b.fit(1)
    for pa, pb in zip(a.model.parameters(), b.model.parameters(), strict=True):
        torch.testing.assert_close(pa, pb, rtol=0, atol=0)


def test_opt_swap_hypers_and_state(runner: Runner) -> None:
    runner.fit(1)
    run("set lr=3e-3", runner)
    reply = run("opt lamb", runner)
    st = runner.opt.state[next(runner.model.parameters())]
    assert set(st) == {"grad_avg", "sqr_avg", "step"} and st["step"] == 8
    assert runner.hyper("lr") == [3e-3, 3e-3] and runner.hyper("mom") == [0.9, 0.9]
    assert "adam -> lamb" in reply
    reply = run("opt sgd mom=0.5", runner)
    assert runner.hyper("mom") == [0.5, 0.5] and "carried state: grad_avg" in reply
    assert "sqr_avg" not in runner.opt.state[next(runner.model.parameters())]
    # SGD without momentum -> Adam: Adam's own momentum default, not SGD's 0.
    run("opt sgd mom=0", runner)
    run("opt adam", runner)
    assert runner.hyper("mom") == [0.9, 0.9] and runner.hyper("lr") == [3e-3, 3e-3]
    with pytest.raises(CommandError, match="no option 'alpha'"):
        run("opt sgd alpha=1", runner)
    with pytest.raises(CommandError, match="did you mean 'adam'"):
        run("opt adma", runner)


def test_opt_swap_matches_fresh_sgd_reference(runner: Runner) -> None:
    """After `opt sgd mom=0.9` the updates are exactly torch.optim.SGD's (state carried from Adam is unused)."""
    runner.fit(1)
    run("opt sgd mom=0.9 lr=0.05", runner)
    ref_model = copy.deepcopy(runner.model)
    ref = torch.optim.SGD(ref_model.parameters(), lr=0.05, momentum=0.9)
    runner.opt.state.clear()  # the carried Adam average would (rightly) act as momentum; compare from zero
    x, y = runner.dls.train[0]
    for model, step in ((runner.model, runner.opt), (ref_model, ref)):
        model.train()
        for _ in range(3):
            nn.functional.cross_entropy(model(x), y).backward()
            step.step()
            step.zero_grad()
    for a, b in zip(runner.model.parameters(), ref_model.parameters(), strict=True):
        torch.testing.assert_close(a, b)


def test_swapped_optimizer_still_learns(runner: Runner) -> None:
    runner.opt_func, runner.lr = SGD, 0.1
    runner.fit(1)
    before = valid_loss(runner)
    run("opt adam lr=0.01", runner)
    runner.fit(2)
    assert valid_loss(runner) < before * 0.7


def test_cb_add_rm_list_registry(runner: Runner) -> None:
    assert run("cb add mixup alpha=0.2", runner) == "added callback mixup (order 30)"
    assert runner.cb("mixup").alpha == 0.2
    assert "mixup(" in run("cb list", runner)
    with pytest.raises(CommandError, match="already installed"):
        run("cb add mixup", runner)
    with pytest.raises(
        CommandError,
        match=r"callback 'gradient_clip' has no option 'maxnorm'; did you mean 'max_norm'\? options: max_norm",
    ):
        run("cb add gradient_clip maxnorm=1", runner)
    with pytest.raises(CommandError, match="did you mean 'mixup'"):
        run("cb add mixpu", runner)
    runner.fit(1)
    assert run("cb rm mixup", runner) == "removed callback mixup"
    assert runner.cb("mixup") is None
    with pytest.raises(CommandError, match="unknown installed callback"):
        run("cb rm mixup", runner)


def test_cb_add_user_file(runner: Runner, tmp_path) -> None:
    f = tmp_path / "my_cbs.py"
    f.write_text(
        textwrap.dedent(
            """
            from labcon.core.events import Callback

            class CountBatches(Callback):
                def __init__(self, start=0):
                    self.n = start
                def after_batch(self):
                    self.n += 1

            class NotACallback:
                pass
            """
        )
    )
    reply = run(f"cb add {f}:CountBatches start=5", runner)
    assert "count_batches" in reply
    runner.fit(1)
    assert runner.cb("count_batches").n == 5 + 8 + 4
    with pytest.raises(CommandError, match="no class 'Nope'.*CountBatches"):
        load_callback_class(f"{f}:Nope")
    with pytest.raises(CommandError, match="is not a Callback"):
        load_callback_class(f"{f}:NotACallback")
    with pytest.raises(CommandError, match="no file"):
        load_callback_class(f"{tmp_path}/missing.py:X")
    bad = tmp_path / "bad.py"
    bad.write_text("def broken(:\n")
    with pytest.raises(CommandError, match="error loading .*SyntaxError"):
        load_callback_class(f"{bad}:X")


def test_norm_swap_then_keep_training(runner: Runner) -> None:
    runner.fit(1)
    hook_reply = run("hook add 1", runner)
    assert hook_reply.startswith("hook 1:")
    reply = run("norm group groups=2", runner)
    assert reply.startswith("swapped 1 normalisation layer(s) to group") and "re-attached 1 hook" in reply
    assert "(were BatchNorm2d)" in reply and "the new layers start untrained" in reply
    assert not isinstance(runner.model[1], nn.BatchNorm2d)
    before = valid_loss(runner)
    runner.fit(2)
    assert valid_loss(runner) < before
    assert "calls" in run("hooks", runner)


def test_hooks_add_rm_and_stats(runner: Runner) -> None:
    assert run("hooks", runner).startswith("no hooks installed")
    assert run("hook add 4", runner).startswith("hook 1: forward stats on 4")
    run("hook add 6 kind=backward", runner)
    runner.fit(1)  # session-scoped hooks survive the end of the fit
    table = run("hooks", runner)
    assert "console" in table and "session" in table and "12 calls" in table  # forward: 8 train + 4 valid
    fn = next(h.fn for h in runner.hooks if h.id == 1)
    assert isinstance(fn, ActivationStats)
    x = torch.cat([b[0] for b in runner.dls.valid[-1:]])
    with torch.no_grad():
        out = runner.model[:5](x)
    mean, std = fn._stats.tolist()
    assert mean == pytest.approx(out.mean().item(), rel=1e-5) and std == pytest.approx(
        out.std(unbiased=False).item(), rel=1e-5
    )
    assert run("hook rm 1", runner) == "removed hook 1"
    with pytest.raises(CommandError, match="no hook with id 1"):
        run("hook rm 1", runner)


def test_telemetry_on_configure_off(runner: Runner) -> None:
    assert run("telemetry", runner).startswith("telemetry is off")
    reply = run("telemetry every=2 layers=0,4 on", runner)
    assert reply == "telemetry on: every=2 layers=0, 4"
    runner.fit(1)
    tel = runner.cb("telemetry")
    snap = tel.snapshot()
    assert snap is not None and list(snap.layers) == ["0", "4"]
    assert run("telemetry every=4", runner).startswith("telemetry on: every=4")
    with pytest.raises(CommandError, match="no module '9'"):
        run("telemetry layers=9", runner)
    assert tel.layer_spec == ["0", "4"]
    assert run("telemetry off", runner) == "telemetry off"
    assert runner.cb("telemetry") is None and not [
        r for r in runner.hooks.table() if r["owner"] == "telemetry"
    ]


def test_show_loop_and_session_commands(runner: Runner) -> None:
    assert "before_batch" in run("show loop", runner)
    with pytest.raises(CommandError, match="handled by the session"):
        run("fit 1", runner)


def test_runner_context_validates_and_completes(runner: Runner) -> None:
    ctx = RunnerContext(runner, state="idle")
    assert ctx.n_groups == 2 and "lr" in ctx.hyper_names and "mixup" in ctx.callbacks_available
    validate(parse("set lr=1e-3,1e-2"), ctx)
    validate(parse("hook add 1"), ctx)
    with pytest.raises(CommandError, match="did you mean 'mixup'"):
        validate(parse("cb add mixpu"), ctx)
    assert "recorder" in complete("cb rm ", ctx)
    assert complete("hook add 4", ctx) == ["4"]


def test_norm_swap_before_training_says_nothing_of_training(runner: Runner) -> None:
    reply = run("norm group groups=2", runner)
    assert reply.startswith("swapped 1 normalisation layer(s) to group") and "untrained" not in reply


def test_discriminative_lrs_list_and_spread(runner: Runner) -> None:
    ctx = RunnerContext(runner)
    assert ctx.n_groups == 2
    assert run("set lr=1e-5..1e-3", runner).startswith("set lr=[1e-05, 0.001]")
    assert runner.hyper("lr") == pytest.approx([1e-5, 1e-3])
    validate(parse("set lr=1e-4,1e-3"), ctx)
    assert run("set lr=1e-4,1e-3", runner).startswith("set lr=[0.0001, 0.001]")
    validate(parse("fit_one_cycle 1 lr=1e-4..1e-2"), ctx)
    with pytest.raises(CommandError, match="3 values for 2 param group"):
        validate(parse("set lr=1,2,3"), ctx)
    with pytest.raises(CommandError, match="lo < hi"):
        parse("set lr=1e-3..1e-5")
    # One peak per group from a spread: the one-cycle schedule of each group peaks at its own value.
    runner.fit_one_cycle(1, lr_max=[1e-4, 1e-2], pct_start=0.5)
    assert runner.hyper("lr")[1] / runner.hyper("lr")[0] == pytest.approx(100)


def test_sched_while_idle_runs_in_every_fit_and_show_sched(runner: Runner) -> None:
    reply = run("sched wd=lin:0:0.1 lr=cos:1e-2:1e-4", runner)
    assert "wd: lin 0 -> 0.1 in every later fit" in reply
    shown = run("show sched", runner)
    assert "lr: cos 0.01 -> 0.0001" in shown and "wd: lin 0 -> 0.1" in shown and shown.endswith("eps=1e-05")
    seen: list[tuple[float, float, float]] = []

    class Watch(Callback):
        order = 5

        def before_batch(self) -> None:
            if self.runner.training:
                g = self.runner.opt.param_groups[0]
                seen.append((self.runner.pct_train, g["lr"], g["wd"]))

    runner.fit(1, cbs=[Watch()])
    for pct, lr, wd in seen:
        assert wd == pytest.approx(0.1 * pct) and lr == pytest.approx(sched_cos(1e-2, 1e-4)(pct))
    # Rescaled while idle: the next fit's lr schedule starts at the new value, shape kept.
    assert "every later fit's lr schedule rescaled" in run("set lr=5e-3", runner)
    assert runner.schedules["lr"](0.5) == pytest.approx(sched_cos(1e-2, 1e-4)(0.5) / 2)
    assert "lr: not scheduled" in run("sched lr=off", runner) and "lr" not in runner.schedules


def test_set_fixed_in_one_group_keeps_the_others_scheduled(runner: Runner) -> None:
    run("sched lr=cos:1e-2:1e-4", runner)
    assert "fixed in group 0" in run("set lr=1e-3 group=0 fixed", runner)
    per = runner.schedules["lr"]
    assert per[0](0.7) == 1e-3 and per[1](0.7) == pytest.approx(sched_cos(1e-2, 1e-4)(0.7))
