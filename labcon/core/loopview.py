"""`show loop`: the training loop's nested structure, as the course writes it, with the callbacks at each event."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Table = dict[str, list[Callable[[], Any]]]

# (indent, event or None, code). Events are annotated with their callbacks; code lines are the loop itself.
_FIT: list[tuple[int, str | None, str]] = [
    (0, "before_fit", ""),
    (0, None, "for epoch in range(n_epochs):"),
    (1, "before_epoch", ""),
    (1, "before_train", "model.train()"),
    (1, None, "for xb, yb in dls.train:"),
    (2, "@train", ""),
    (1, "after_train", ""),
    (1, "before_validate", "model.eval()"),
    (1, None, "with torch.no_grad(): for xb, yb in dls.valid:"),
    (2, "@valid", ""),
    (1, "after_validate", ""),
    (1, "after_epoch", ""),
    (0, "after_fit", ""),
]
_BATCH: list[tuple[int, str | None, str]] = [
    (0, "before_batch", ""),
    (0, "after_pred", "pred = model(xb)"),
    (0, "after_loss", "loss = loss_func(pred, yb)"),
    (0, "before_backward", "(training only)"),
    (0, "after_backward", "loss.backward()"),
    (0, "before_step", ""),
    (0, "after_step", "opt.step(); then opt.zero_grad()"),
    (0, "after_batch", ""),
]
_CANCELS = {
    "after_fit": "after_cancel_fit",
    "after_epoch": "after_cancel_epoch",
    "after_train": "after_cancel_train",
    "after_validate": "after_cancel_validate",
    "after_batch": "after_cancel_batch",
    "after_backward": "after_cancel_backward",
    "after_step": "after_cancel_step",
}


def _names(table: Table, event: str) -> str:
    return ", ".join(f"{m.__self__.name}({m.__self__.order})" for m in table.get(event, []))


def _line(indent: int, text: str, cbs: str) -> str:
    left = "    " * indent + text
    return f"{left:<56} {cbs}".rstrip() if cbs else left


def _batch_lines(indent: int, table: Table, training: bool) -> list[str]:
    out = []
    for _, event, code in _BATCH:
        if not training and event in ("before_backward", "after_backward", "before_step", "after_step"):
            continue
        label = f"{code}  -> {event}" if code and code != "(training only)" else event
        out.append(_line(indent, label, _names(table, event)))
        cancel = _CANCELS.get(event)
        if cancel and table.get(cancel):
            out.append(_line(indent, f"  (on cancel) {cancel}", _names(table, cancel)))
    return out


def loop_text(train: Table, valid: Table) -> str:
    """The nested fit / epoch / batch loop with callbacks (name(order)) at each event."""
    lines: list[str] = []
    for indent, event, code in _FIT:
        if event == "@train":
            lines += _batch_lines(indent, train, True)
        elif event == "@valid":
            lines += _batch_lines(indent, valid, False)
        elif event is None:
            lines.append(_line(indent, code, ""))
        else:
            table = valid if event in ("before_validate", "after_validate") else train
            label = f"{event}  ({code})" if code else event
            lines.append(_line(indent, label, _names(table, event)))
            cancel = _CANCELS.get(event)
            if cancel and table.get(cancel):
                lines.append(_line(indent, f"  (on cancel) {cancel}", _names(table, cancel)))
    return "\n".join(lines)
