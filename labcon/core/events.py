"""The training loop's event vocabulary, control-flow exceptions and the Callback base class."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, ClassVar

from labcon.fmt import did_you_mean

if TYPE_CHECKING:
    from labcon.core.runner import Runner

# Levels of the loop that can be cancelled; each has before_X / after_X / after_cancel_X.
LEVELS: tuple[str, ...] = ("fit", "epoch", "train", "validate", "batch", "backward", "step")

# The whole vocabulary, declared once. Anything else named before_*/after_* on a callback is a typo.
EVENTS: tuple[str, ...] = (
    "before_fit",
    "before_epoch",
    "before_train",
    "before_batch",
    "after_pred",
    "after_loss",
    "before_backward",
    "after_backward",
    "before_step",
    "after_step",
    "after_batch",
    "after_train",
    "before_validate",
    "after_validate",
    "after_epoch",
    "after_fit",
    *(f"after_cancel_{lvl}" for lvl in LEVELS),
)
_EVENT_SET = frozenset(EVENTS)
# Events of the training phase / the validation phase (a callback's run_train / run_valid gate them);
# the batch-level events belong to whichever phase is running.
# The events of one training step, in order (the profiler times the work between them).
STEP_EVENTS: tuple[str, ...] = (
    "before_batch",
    "after_pred",
    "after_loss",
    "before_backward",
    "after_backward",
    "before_step",
    "after_step",
    "after_batch",
)
BATCH_EVENTS: frozenset[str] = frozenset(
    (*STEP_EVENTS, *(f"after_cancel_{lvl}" for lvl in ("batch", "backward", "step")))
)
TRAIN_EVENTS: frozenset[str] = frozenset(("before_train", "after_train", "after_cancel_train"))
VALID_EVENTS: frozenset[str] = frozenset(("before_validate", "after_validate", "after_cancel_validate"))
_EVENT_LIKE = re.compile(r"^(before|after)_[a-z0-9_]+$")


class CancelFitException(Exception):
    """Stop the whole fit (after_cancel_fit and after_fit still run)."""


class CancelEpochException(Exception):
    """Skip the rest of the current epoch."""


class CancelTrainException(Exception):
    """Skip the rest of the training phase of this epoch."""


class CancelValidateException(Exception):
    """Skip the rest of the validation phase of this epoch."""


class CancelBatchException(Exception):
    """Skip the rest of the current batch."""


class CancelBackwardException(Exception):
    """Skip the backward pass of this batch."""


class CancelStepException(Exception):
    """Skip the optimizer step and zero_grad of this batch (e.g. gradient accumulation)."""


CANCEL_EXCEPTIONS: dict[str, type[Exception]] = {
    "fit": CancelFitException,
    "epoch": CancelEpochException,
    "train": CancelTrainException,
    "validate": CancelValidateException,
    "batch": CancelBatchException,
    "backward": CancelBackwardException,
    "step": CancelStepException,
}


class CallbackError(RuntimeError):
    """A callback raised: carries the callback's and the event's names."""

    def __init__(self, cb_name: str, event: str, original: BaseException):
        self.cb_name, self.event, self.original = cb_name, event, original
        super().__init__(f"callback '{cb_name}' failed in {event}: {type(original).__name__}: {original}")


def _snake(name: str) -> str:
    name = re.sub(r"Callback$", "", name) or name
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


class Callback:
    """Base class: override any event method in EVENTS; `self.runner` is set on registration."""

    order: ClassVar[int] = 0
    # Overrides the name derived from the class name (e.g. NaNGuard -> 'nan_guard').
    cb_name: ClassVar[str | None] = None
    # False for the loop's own machinery (train/eval, device, recorder, session control): `cb rm` refuses it.
    removable: ClassVar[bool] = True
    # Whether the callback runs during LR finding and other short probes (e.g. progress bars do not).
    run_in_probe: ClassVar[bool] = True
    # Whether it sees the training / validation phase (its batch events and before/after_train or
    # _validate); fit- and epoch-level events always run. Replaces `if not training: return` lines.
    run_train: ClassVar[bool] = True
    run_valid: ClassVar[bool] = True
    runner: Runner

    @property
    def name(self) -> str:
        """Snake-case name derived from the class name, used by `runner.cb(name)` and commands."""
        return self.cb_name or _snake(type(self).__name__)

    def check_runner(self, runner: Runner) -> None:
        """Raise ValueError when this callback cannot work on `runner` (called as it is added, before any fit)."""

    def state_dict(self) -> dict[str, Any]:
        """State to checkpoint (tensors and plain data only); default: nothing."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(order={self.order})"


def check_callback(cb: Callback) -> None:
    """Raise ValueError when a callback defines an event-like method that is not a real event."""
    if not isinstance(cb, Callback):
        raise TypeError(f"{cb!r} is not a labcon Callback (subclass labcon.Callback)")
    for attr in dir(type(cb)):
        if _EVENT_LIKE.match(attr) and attr not in _EVENT_SET and callable(getattr(cb, attr, None)):
            hint = did_you_mean(attr, EVENTS)
            raise ValueError(
                f"callback '{cb.name}' defines {attr!r}, which is not a training event{hint} "
                f"Events: {', '.join(EVENTS)}"
            )
