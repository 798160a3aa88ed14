"""The one contract between a session and its front ends: what the console, the REPL, the socket server and the
headless printer may call, and what they get back.

Three classes implement `SessionAPI`: `Session` (in this process), `RemoteSession` (labcon/remote/client.py, over
the control socket) and the test fake (tests/fakes.py); tests/test_contract.py runs one body of assertions
against all three. Front ends call nothing else on a session and never probe it with getattr/hasattr.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from labcon.core.telemetry_history import LayerStats
from labcon.data.text_show import TextBatchView
from labcon.session.messages import Message

if TYPE_CHECKING:
    from PIL.Image import Image

    from labcon.commands.base import CommandContext

# How long one `Subscription.get(timeout)` waits at most when a front end polls (stop flags are checked between).
POLL_S = 0.2


@dataclass(frozen=True)
class Reply:
    """The immediate answer to `submit(text)`: accepted or refused, a line for the user, and optional data."""

    ok: bool
    text: str
    data: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (what `labcon send --json` prints and the socket carries)."""
        return {"ok": self.ok, "text": self.text, "data": self.data}


class Subscription(Protocol):
    """Messages a session published after `subscribe()`, in order.

    `get(timeout)` returns the next message, or None when none came within `timeout` seconds; it never raises
    for a timeout. Once the session has gone (a remote process ended) `closed` is True and `get` returns None
    at once after the messages already received.
    """

    @property
    def closed(self) -> bool:
        """Whether no more messages will come."""
        ...

    def get(self, timeout: float | None = None) -> Message | None:
        """The next message, or None after `timeout` seconds."""
        ...

    def close(self) -> None:
        """Stop receiving (idempotent)."""
        ...


class TelemetryView(Protocol):
    """A host-side, immutable telemetry snapshot (core's TelemetrySnapshot; RemoteTelemetrySnapshot over a socket)."""

    train_iter: int
    layers: Sequence[str]
    latest: Mapping[str, LayerStats]
    hist_ranges: Mapping[str, tuple[float, float]]  # layer -> (low, high) of its histogram bins, once chosen
    flags: Mapping[str, str]

    def history(self, layer: str) -> dict[str, list[float]]:
        """Per-report series of one layer: iters, mean, std, near_zero, grad_norm, update_ratio."""
        ...

    def history_tail(self, layer: str, n: int) -> dict[str, list[float]]:
        """The last `n` reports of `history(layer)`."""
        ...

    def heatmap(self, layer: str) -> list[list[float]]:
        """Rows = reports, columns = histogram bins (raw counts)."""
        ...


class JournalView(Protocol):
    """The journal's reader side (labcon/session/journal.py's Journal) as front ends use it."""

    def search(self, query: str = "", limit: int = 50) -> list[dict[str, Any]]:
        """Runs matching a query, newest first: id, session, status, started, ended, final_metrics, tags..."""
        ...

    def get_run(self, run_id: int) -> dict[str, Any]:
        """One run's full record (config, params, env, final metrics)."""
        ...

    def diff(self, a: int, b: int) -> dict[str, Any]:
        """Two runs compared."""
        ...

    def events(self, run_id: int, kinds: Any = None) -> list[dict[str, Any]]:
        """A run's events (commands applied, notes, errors) in order."""
        ...

    def epochs(self, run_id: int) -> list[dict[str, Any]]:
        """A run's epoch rows."""
        ...


@runtime_checkable
class SessionAPI(Protocol):
    """What every front end may ask of a session (see the module docstring and docs/ARCHITECTURE.md)."""

    @property
    def name(self) -> str:
        """The session's name (its folder under the sessions directory)."""
        ...

    @property
    def folder(self) -> Path:
        """The session's folder under the sessions directory (checkpoints, logs, command history)."""
        ...

    @property
    def remote(self) -> bool:
        """True when the run lives in another process (quitting the front end leaves it running)."""
        ...

    @property
    def journal(self) -> JournalView | None:
        """The journal, or None when the session keeps none (the Journal pane says so)."""
        ...

    def submit(self, text: str) -> Reply:
        """Parse, check and apply or queue one command line; never raises for bad input."""
        ...

    def subscribe(self) -> Subscription:
        """A new subscription to the session's messages from now on."""
        ...

    def status(self) -> dict[str, Any]:
        """name, state, epoch, n_epochs, iter, n_iter, train_iter, run_id, device, model, opt, hypers, cbs,
        last_error."""
        ...

    def history(self) -> list[dict[str, Any]]:
        """Epoch rows: epoch, train_loss, valid_loss, metrics..., time."""
        ...

    def batch_history(self) -> dict[str, list[float]]:
        """Recent per-batch losses, smooth_losses, lrs, moms."""
        ...

    def telemetry_snapshot(self) -> TelemetryView | None:
        """The latest telemetry, or None when telemetry is off or has not reported yet."""
        ...

    def hooks_table(self) -> list[dict[str, Any]]:
        """Installed hooks: id, module, kind, owner, scope."""
        ...

    def module_paths(self) -> list[str]:
        """Every module path of the model ('' is the model itself)."""
        ...

    def model_summary(self) -> dict[str, Any]:
        """Every module (containers too, named_modules order, '' the model) from one forward of two items:
        {"batch": 2, "rows": [{path, kind, shape (per item; [] if it did not run), params, trainable, macs}]}, the
        counts over the module's subtree, macs per item. Raises LabconError when it cannot be computed."""
        ...

    def schedule_plan(self) -> dict[str, Any] | None:
        """The running fit's schedules over the whole fit, as `show sched` describes them (last param group):
        {"start_iter", "total", "pos" (0..1 now), "series": {name: values at x = start_iter + total * i / (n - 1)}};
        None when no fit is running."""
        ...

    def data_summary(self) -> str:
        """The DataBlock's stage-by-stage report."""
        ...

    def profile_report(self) -> dict[str, Any] | None:
        """The session's latest `profile N` (ProfileReport.as_dict(); also read back from its journal), or None."""
        ...

    def sample_batch_image(self, augment: bool = True) -> Image:
        """A grid image of training samples with their labels."""
        ...

    def text_batch(self, draw: int = 0) -> TextBatchView | None:
        """A decoded training batch of a text session (each draw another batch); None when the data is images."""
        ...

    def context(self) -> CommandContext:
        """What command validation and completion see of the session."""
        ...

    def wait(self, timeout: float | None = None) -> bool:
        """Block until no fit is live; False on timeout."""
        ...

    def detach(self) -> None:
        """The front end leaves; a live fit carries on."""
        ...

    def close(self) -> None:
        """Release what this object holds (a local session also ends its work)."""
        ...


class SnapshotContext:
    """A CommandContext read from a session's snapshots (status, hooks, module paths): for sessions that are not
    in this process, whose Runner cannot be read directly."""

    def __init__(self, session: SessionAPI, max_age: float = 1.0):
        self.session, self.max_age = session, max_age
        self._status: dict[str, Any] = {}
        self._at = -1e9

    def _st(self) -> dict[str, Any]:
        import time

        # One status() per keystroke burst: completion asks several properties in a row.
        if time.monotonic() - self._at > self.max_age:
            self._status = dict(self.session.status())
            self._at = time.monotonic()
        return self._status

    @property
    def callbacks_available(self) -> list[str]:
        """Registry names."""
        from labcon.core.callbacks.registry import CALLBACKS

        return sorted(CALLBACKS)

    @property
    def callbacks_installed(self) -> list[str]:
        """Installed callback names."""
        return list(self._st().get("cbs", []))

    @property
    def callbacks_fixed(self) -> list[str]:
        """Not in the snapshots: the session itself refuses removing its loop's callbacks."""
        return []

    @property
    def scheduled(self) -> list[str]:
        """Not in the snapshots: the session's own reply says when a schedule overrides a change."""
        return []

    @property
    def optimizer_names(self) -> list[str]:
        """Optimizer names."""
        from labcon.core.optim import OPTIMIZERS

        return sorted(OPTIMIZERS)

    @property
    def hyper_names(self) -> list[str]:
        """Hyper-parameter names from status()['hypers']."""
        return sorted(self._st().get("hypers", {})) or ["eps", "lr", "mom", "sqr_mom", "wd"]

    @property
    def n_groups(self) -> int:
        """Param groups, from the length of the lr list."""
        return len(self._st().get("hypers", {}).get("lr", [0])) or 1

    @property
    def module_paths(self) -> list[str]:
        """Module paths of the model."""
        return self.session.module_paths()

    @property
    def hook_ids(self) -> list[int]:
        """Installed hook ids."""
        return [int(r["id"]) for r in self.session.hooks_table()]

    @property
    def state(self) -> str:
        """Session state."""
        return str(self._st().get("state", "idle"))
