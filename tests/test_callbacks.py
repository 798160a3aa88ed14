"""Built-in callbacks: accumulation equals the large batch, mixed precision, guards, monitors, progress."""

from __future__ import annotations

import io
import math

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from labcon import (
    SGD,
    Callback,
    DataLoaders,
    EarlyStopping,
    GradientAccumulation,
    GradientClip,
    MixedPrecision,
    Mixup,
    NaNGuard,
    ReduceLROnPlateau,
    Runner,
    SaveBest,
)
from labcon.core.callbacks.guards import NonFiniteLossError
from labcon.core.schedules import one_cycle_scheds, sched_lin
from labcon.progress import ProgressReporter
from tests.helpers import mlp, synthetic_dls


def _dls_bs(bs: int) -> DataLoaders:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(128, 10, generator=g), torch.randint(0, 3, (128,), generator=g)
    return DataLoaders(DataLoader(TensorDataset(x, y), bs), DataLoader(TensorDataset(x[:32], y[:32]), 32))


def test_gradient_accumulation_equals_large_batch():
    big = Runner(mlp(), _dls_bs(32), opt_func=SGD, lr=0.1, device="cpu")
    big.fit(2)
    acc = Runner(mlp(), _dls_bs(8), opt_func=SGD, lr=0.1, cbs=[GradientAccumulation(n_acc=32)], device="cpu")
    acc.fit(2)
    for p1, p2 in zip(big.model.parameters(), acc.model.parameters(), strict=True):
        torch.testing.assert_close(p1, p2, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_mixed_precision_trains(dtype):
    r = Runner(mlp(), synthetic_dls(n=512), lr=1e-2, cbs=[MixedPrecision(dtype)], device="cpu")
    r.fit(3)
    assert r.recorder.rows[-1]["valid_loss"] < r.recorder.rows[0]["train_loss"]
    assert r.step_fn == r._opt_step  # restored after the fit
    mp = r.cb("mixed_precision")
    assert mp.skipped_steps >= 0
    assert not torch.is_autocast_enabled("cpu")


def test_fp16_counts_skipped_steps():
    class Poison(Callback):
        order = 15  # after loss scaling

        def after_backward(self) -> None:
            if self.runner.train_iter == 1:
                next(self.runner.model.parameters()).grad.fill_(float("inf"))

    r = Runner(mlp(), synthetic_dls(), cbs=[MixedPrecision("fp16"), Poison()], device="cpu")
    r.fit(1)
    assert r.cb("mixed_precision").skipped_steps == 1
    assert all(torch.isfinite(p).all() for p in r.model.parameters())


def test_nan_guard_stops_before_the_step_with_a_clear_message():
    class Explode(Callback):
        order = 1

        def after_loss(self) -> None:
            if self.runner.train_iter == 3:
                self.runner.loss = self.runner.loss * float("nan")

    r = Runner(mlp(), synthetic_dls(), cbs=[Explode(), NaNGuard()], device="cpu")
    stop_reason = []

    class Catch(Callback):
        def after_cancel_fit(self) -> None:
            stop_reason.append("cancelled")

    r.add_cbs([Catch()])
    r.fit(1)
    assert stop_reason == ["cancelled"]
    assert "loss became non-finite at epoch 0, iteration 3; lower the lr" in r.stop_reason
    assert issubclass(NonFiniteLossError, Exception)
    assert all(torch.isfinite(p).all() for p in r.model.parameters())


def test_nan_guard_can_pause_instead():
    calls = []

    class Explode(Callback):
        order = 1

        def after_loss(self) -> None:
            if self.runner.train_iter == 2:
                self.runner.loss = self.runner.loss * float("nan")

    r = Runner(mlp(), synthetic_dls(), cbs=[Explode(), NaNGuard(on_nan=calls.append)], device="cpu")
    r.fit(1)
    assert len(calls) == 1 and "non-finite" in calls[0]
    assert all(torch.isfinite(p).all() for p in r.model.parameters())


def test_gradient_clip_limits_norm():
    seen = []

    class Measure(Callback):
        order = 25

        def before_step(self) -> None:
            norms = [p.grad.norm() for p in self.runner.model.parameters()]
            seen.append(torch.stack(norms).norm().item())

    r = Runner(mlp(), synthetic_dls(), lr=1.0, cbs=[GradientClip(0.01), Measure()], device="cpu")
    r.fit(1)
    assert max(seen) <= 0.01 + 1e-6


def test_early_stopping_and_reduce_lr_and_save_best(tmp_path):
    r = Runner(
        mlp(),
        synthetic_dls(),
        lr=0.0,
        opt_func=SGD,
        device="cpu",
        cbs=[
            EarlyStopping(patience=2, min_delta=1.0),
            ReduceLROnPlateau(patience=1, min_delta=1.0),
            SaveBest(path=tmp_path / "best.pt"),
        ],
    )
    r.fit(10)
    assert r.epoch == 3  # epoch 0 sets best, 1 and 2 do not improve -> stop
    assert (tmp_path / "best.pt").exists() and r.cb("save_best").saved_epoch == 0
    state = torch.load(tmp_path / "best.pt", weights_only=True)
    assert set(state) == set(r.model.state_dict())
    with pytest.raises(ValueError, match="comp must be"):
        EarlyStopping(comp="bigger")


def test_reduce_lr_on_plateau_holds_under_a_scheduled_lr():
    """The cut lasts: the one-cycle schedule's rest is scaled down, not restored at the next batch."""
    lrs: list[tuple[int, float]] = []

    class LrLog(Callback):
        order = 5  # after the ParamScheduler (1) has set the batch's lr

        def before_batch(self) -> None:
            if self.runner.training:
                lrs.append((self.runner.epoch, self.runner.opt.param_groups[0]["lr"]))

    plateau = ReduceLROnPlateau(patience=0, min_delta=10.0, factor=10.0)
    r = Runner(mlp(), synthetic_dls(), lr=1e-2, opt_func=SGD, device="cpu", cbs=[LrLog(), plateau])
    r.fit_one_cycle(4)
    f = one_cycle_scheds(1e-2)["lr"]
    n = len(r.dls.train)
    assert len(lrs) == 4 * n
    for i, (epoch, lr) in enumerate(lrs):
        # Epoch 0 sets the best; epochs 1 and 2 end without a 10.0 improvement on it: /10 after each.
        cut = 10.0 ** -max(0, epoch - 1)
        assert lr == pytest.approx(f(i / (4 * n)) * cut, rel=1e-6), (i, epoch)


def test_dropout_schedule_sets_every_dropout_layer():
    from torch import nn

    seen: list[tuple[float, float]] = []

    class PLog(Callback):
        order = 5

        def before_batch(self) -> None:
            if self.runner.training:
                seen.append((self.runner.pct_train, self.runner.model[1].p))
                assert self.runner.model[4].p == self.runner.model[1].p

    model = nn.Sequential(nn.Linear(10, 20), nn.Dropout(0.9), nn.ReLU(), nn.Linear(20, 20), nn.Dropout(0.1))
    model.append(nn.Linear(20, 3))
    r = Runner(model, synthetic_dls(), lr=1e-2, opt_func=SGD, device="cpu", cbs=[PLog()])
    r.schedules["dropout"] = sched_lin(0.5, 0.0)
    r.fit(2)
    assert seen and all(p == pytest.approx(0.5 * (1 - pos)) for pos, p in seen)


def test_monitor_unknown_metric_is_named_when_the_callback_is_added():
    # Refused up front: found at the end of the first epoch, it would have cost that epoch and its checkpoint.
    with pytest.raises(
        ValueError, match="early_stopping cannot monitor 'valid_acc'; did you mean 'valid_loss'"
    ):
        Runner(mlp(), synthetic_dls(), cbs=[EarlyStopping(monitor="valid_acc")], device="cpu")


def test_mixup_trains_and_restores_loss():
    r = Runner(mlp(), synthetic_dls(n=512), lr=1e-2, cbs=[Mixup(0.4)], device="cpu")
    orig = r.loss_func
    r.fit(3)
    assert r.loss_func is orig
    assert math.isfinite(r.recorder.rows[-1]["valid_loss"])
    assert r.recorder.rows[-1]["valid_loss"] < r.recorder.rows[0]["valid_loss"]


def test_progress_plain_lines_when_not_a_terminal():
    out = io.StringIO()
    r = Runner(mlp(), synthetic_dls(n=800, bs=10), cbs=[ProgressReporter(out, every=20)], device="cpu")
    r.fit(1)
    text = out.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert lines[0].startswith("fit 1 epoch(s)")
    assert any(line.startswith("epoch 0 batch 20/60") for line in lines)
    assert any("valid_loss" in line for line in lines) and lines[-1].startswith("fit finished")


def test_a_misspelt_event_method_is_refused_with_the_near_event():
    from labcon.core.events import check_callback

    class Typo(Callback):
        def after_bach(self) -> None:  # never called by the Runner: a silent no-op without the check
            pass

    with pytest.raises(
        ValueError, match="'after_bach', which is not a training event; did you mean 'after_batch'"
    ):
        check_callback(Typo())
