"""Runner: event order, cancellation, callback errors, added/removed callbacks, real learning."""

from __future__ import annotations

import pytest
import torch

from labcon import Callback, CancelBatchException, CancelEpochException, CancelFitException, Runner
from labcon.core.callbacks.basics import TrainEvalCallback
from labcon.core.events import EVENTS, CallbackError
from labcon.core.metrics import accuracy
from labcon.core.optim import SGD
from tests.helpers import load_mnist_tiny, mlp, small_cnn, synthetic_dls


class Trace(Callback):
    order = 100

    def __init__(self) -> None:
        self.events: list[str] = []


def _recorder_method(event: str):
    def method(self: Trace) -> None:
        self.events.append(event)

    return method


for _e in EVENTS:  # a callback that records every event it sees
    setattr(Trace, _e, _recorder_method(_e))


def test_event_order_one_epoch():
    dls = synthetic_dls(n=64, bs=32)
    t = Trace()
    Runner(mlp(), dls, cbs=[t], device="cpu").fit(1)
    ev = t.events
    assert ev[0] == "before_fit" and ev[-1] == "after_fit"
    assert ev.count("before_epoch") == 1  # the original fired begin_epoch twice
    assert ev.count("before_batch") == 2 + 1  # 48 train samples / 32 -> 2 batches, 16 valid -> 1
    assert ev.count("before_backward") == 2 and ev.count("after_step") == 2
    i = ev.index("after_pred")
    assert ev[i : i + 8] == [
        "after_pred",
        "after_loss",
        "before_backward",
        "after_backward",
        "before_step",
        "after_step",
        "after_batch",
        "before_batch",
    ]


def test_unknown_event_name_rejected_at_registration():
    class Typo(Callback):
        def after_bacth(self) -> None: ...

    with pytest.raises(ValueError, match="after_bacth.*did you mean 'after_batch'"):
        Runner(mlp(), synthetic_dls(), cbs=[Typo()], device="cpu")


def test_callback_error_names_callback_and_event():
    class Boom(Callback):
        def after_loss(self) -> None:
            raise ZeroDivisionError("bad")

    r = Runner(mlp(), synthetic_dls(), cbs=[Boom()], device="cpu")
    with pytest.raises(CallbackError, match="callback 'boom' failed in after_loss: ZeroDivisionError: bad"):
        r.fit(1)
    assert not r.in_fit


@pytest.mark.parametrize(
    "exc,level",
    [(CancelBatchException, "batch"), (CancelEpochException, "epoch"), (CancelFitException, "fit")],
)
def test_cancel_runs_after_cancel_and_after(exc, level):
    seen: list[str] = []

    class Cancel(Callback):
        def before_batch(self) -> None:
            if self.runner.training and self.runner.iter == 1:
                raise exc()

    class Watch(Callback):
        order = 99

        def after_cancel_batch(self):
            seen.append("after_cancel_batch")

        def after_cancel_epoch(self):
            seen.append("after_cancel_epoch")

        def after_cancel_fit(self):
            seen.append("after_cancel_fit")

        def after_epoch(self):
            seen.append("after_epoch")

        def after_fit(self):
            seen.append("after_fit")

    Runner(mlp(), synthetic_dls(), cbs=[Cancel(), Watch()], device="cpu").fit(1)
    assert f"after_cancel_{level}" in seen
    assert seen[-1] == "after_fit"


def test_after_fit_runs_on_crash():
    ran = []

    class Crash(Callback):
        def after_step(self):
            raise RuntimeError("x")

    class Cleanup(Callback):
        def after_fit(self):
            ran.append(True)

    r = Runner(mlp(), synthetic_dls(), cbs=[Crash(), Cleanup()], device="cpu")
    with pytest.raises(CallbackError):
        r.fit(1)
    assert ran == [True]


def test_added_and_removed_cbs():
    r = Runner(mlp(), synthetic_dls(), device="cpu")
    t = Trace()
    with r.added_cbs([t]):
        assert r.cb("trace") is t
    assert r.cb("trace") is None
    with r.removed_cbs(["train_eval"]):
        assert r.cb("train_eval") is None
    assert isinstance(r.cb("train_eval"), TrainEvalCallback)
    with pytest.raises(ValueError, match="already installed"):
        r.add_cbs([TrainEvalCallback()])
    assert "before_batch" in r.show_loop() and "device" in r.show_loop()


def test_recorder_history_and_weighted_metrics():
    dls = synthetic_dls(n=100, bs=32)  # 75 train (32,32,11), 25 valid
    r = Runner(mlp(), dls, opt_func=SGD, lr=0.1, metrics=[accuracy], device="cpu")
    r.fit(2)
    rec = r.recorder
    assert len(rec.losses) == 6 and len(rec.lrs) == 6 and len(rec.rows) == 2
    assert [row["epoch"] for row in rec.rows] == [0.0, 1.0]
    # Weighted by batch size: recompute the validation numbers by hand.
    r.model.eval()
    with torch.no_grad():
        xs = torch.cat([x for x, _ in dls.valid])
        ys = torch.cat([y for _, y in dls.valid])
        pred = r.model(xs)
    assert rec.rows[-1]["accuracy"] == pytest.approx(accuracy(pred, ys).item(), abs=1e-6)
    assert rec.rows[-1]["valid_loss"] == pytest.approx(
        torch.nn.functional.cross_entropy(pred, ys).item(), abs=1e-5
    )
    # smoothed loss is debiased: first value equals first loss
    assert rec.smooth_losses[0] == pytest.approx(rec.losses[0])


def test_epoch_counter_continues_across_fits():
    r = Runner(mlp(), synthetic_dls(), device="cpu")
    r.fit(1)
    r.fit(2)
    assert r.epoch == 3 and [row["epoch"] for row in r.recorder.rows] == [0, 1, 2]


def test_fit_one_cycle_schedules_lr_and_mom():
    r = Runner(mlp(), synthetic_dls(n=400, bs=10), device="cpu")
    r.fit_one_cycle(1, lr_max=1e-2)
    lrs = [x[0] for x in r.recorder.lrs]
    moms = [x[0] for x in r.recorder.moms]
    peak = max(range(len(lrs)), key=lrs.__getitem__)
    assert lrs[0] == pytest.approx(1e-2 / 25, rel=1e-6)
    assert max(lrs) == pytest.approx(1e-2, rel=1e-2)
    assert 0.2 < peak / len(lrs) < 0.3
    assert lrs[-1] < 1e-4 and moms[0] == pytest.approx(0.95) and min(moms) == pytest.approx(0.85, abs=1e-3)


def test_lr_find_restores_model_and_optimizer():
    r = Runner(mlp(), synthetic_dls(n=800, bs=8), device="cpu")
    r.fit(1)
    before = {k: v.clone() for k, v in r.model.state_dict().items()}
    opt_before = r.opt.state_dict()
    n_rows = len(r.recorder.rows)
    res = r.lr_find(num_it=60)
    assert len(res.lrs) >= 10 and res.lrs[0] == pytest.approx(1e-7)
    assert 1e-6 < res.suggestion < 10
    for k, v in r.model.state_dict().items():
        assert torch.equal(v, before[k])
    assert r.opt.state_dict()["param_groups"] == opt_before["param_groups"]
    assert len(r.recorder.rows) == n_rows and r.epoch == 1


def test_set_hyper_per_group():
    model = mlp()
    r = Runner(
        model,
        synthetic_dls(),
        splitter=lambda m: [list(m[0].parameters()), list(m[2].parameters())],
        lr=[1e-3, 1e-2],
        device="cpu",
    )
    assert r.hyper("lr") == [1e-3, 1e-2]
    r.set_hyper("lr", 5e-3, group=1)
    assert r.hyper("lr") == [1e-3, 5e-3]
    with pytest.raises(KeyError, match="no hyper-parameter 'lrr'"):
        r.set_hyper("lrr", 1.0)


def test_mnist_tiny_small_cnn_reaches_95(mnist_tiny):
    dls = load_mnist_tiny(mnist_tiny, bs=16)
    torch.manual_seed(0)
    r = Runner(small_cnn(), dls, metrics=[accuracy], device="cpu")
    r.fit_one_cycle(1, lr_max=1e-2)
    assert r.recorder.rows[-1]["accuracy"] >= 0.95
