"""Callback run_train / run_valid flags, and `show loop` printing the nested loop as the course does."""

from __future__ import annotations

from labcon import Callback
from labcon.core.callbacks.guards import NaNGuard
from labcon.core.runner import Runner
from tests.helpers import mlp, synthetic_dls


class Count(Callback):
    order = 70

    def __init__(self) -> None:
        self.events: dict[str, int] = {}

    def _hit(self, e: str) -> None:
        self.events[e] = self.events.get(e, 0) + 1

    def before_fit(self) -> None:
        self._hit("before_fit")

    def before_train(self) -> None:
        self._hit("before_train")

    def before_validate(self) -> None:
        self._hit("before_validate")

    def after_batch(self) -> None:
        self._hit("train_batch" if self.runner.training else "valid_batch")

    def after_epoch(self) -> None:
        self._hit("after_epoch")


class TrainOnly(Count):
    cb_name = "train_only"
    run_valid = False


class ValidOnly(Count):
    cb_name = "valid_only"
    run_train = False


def test_run_train_and_run_valid_gate_the_phases_not_the_fit() -> None:
    dls = synthetic_dls(n=128, bs=32)  # 3 train batches, 1 valid batch
    both, tr, va = Count(), TrainOnly(), ValidOnly()
    Runner(mlp(), dls, cbs=[both, tr, va], device="cpu").fit(2)
    assert both.events == {
        "before_fit": 1,
        "before_train": 2,
        "before_validate": 2,
        "train_batch": 6,
        "valid_batch": 2,
        "after_epoch": 2,
    }
    assert tr.events == {"before_fit": 1, "before_train": 2, "train_batch": 6, "after_epoch": 2}
    assert va.events == {"before_fit": 1, "before_validate": 2, "valid_batch": 2, "after_epoch": 2}


def test_show_loop_prints_the_nested_loop_with_callbacks_per_phase() -> None:
    r = Runner(mlp(), synthetic_dls(), cbs=[NaNGuard()], device="cpu")
    text = r.show_loop()
    lines = text.splitlines()
    assert lines[0].startswith("before_fit")
    assert lines[1] == "for epoch in range(n_epochs):"
    train_at = lines.index("    for xb, yb in dls.train:")
    valid_at = next(i for i, ln in enumerate(lines) if ln.startswith("    with torch.no_grad(): for xb, yb"))
    train_loss = next(ln for ln in lines[train_at:valid_at] if "after_loss" in ln)
    valid_loss = next(ln for ln in lines[valid_at:] if "after_loss" in ln)
    # nan_guard is train-only (run_valid = False): listed in the training loop, not the validation loop.
    assert "nan_guard(5)" in train_loss and "nan_guard" not in valid_loss
    assert "loss.backward()  -> after_backward" in text[text.index("dls.train") : text.index("dls.valid")]
    assert "after_backward" not in text[text.index("dls.valid") :]
    assert lines[-1].startswith("after_fit")
