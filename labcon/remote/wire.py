"""What crosses the control socket: JSON-ready conversions of telemetry snapshots and sample images."""

from __future__ import annotations

import base64
import dataclasses
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from labcon.core.telemetry_history import FIELDS, LayerStats
from labcon.errors import LabconError


def jsonable(obj: Any) -> Any:
    """json.dumps default=: dataclasses, tuples/sets, paths and numpy scalars become plain values."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj) if not f.name.startswith("_")}
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=str)
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):  # numpy arrays and scalars, tensors
        return obj.tolist()
    return repr(obj)


def snapshot_to_dict(
    snap: Any, layers: Sequence[str] | None = None, heatmap: bool = False, tail: int | None = None
) -> dict[str, Any]:
    """A TelemetrySnapshot as plain data: latest stats, flags, per-layer history (and heat maps if asked).

    With `tail`, the history of every chosen layer is only its last `tail` reports ("tail" says so).
    """
    all_layers = list(snap.layers)
    chosen = all_layers if layers is None else [x for x in layers if x in all_layers]
    out: dict[str, Any] = {
        "train_iter": int(snap.train_iter),
        "layers": all_layers,
        "latest": {k: jsonable(v) for k, v in snap.latest.items()},
        "hist_ranges": {k: list(v) for k, v in snap.hist_ranges.items()},
        "flags": dict(snap.flags),
    }
    if tail is None:
        out["history"] = {x: snap.history(x) for x in chosen}
    else:
        out["tail"] = {x: snap.history_tail(x, tail) for x in chosen}
        out["tail_len"] = tail
    if heatmap:
        out["heatmap"] = {x: snap.heatmap(x) for x in chosen}
    return out


class RemoteTelemetrySnapshot:
    """A TelemetryView (labcon/session/api.py) over data fetched from a control socket.

    The first reply may carry only the last reports of each layer (`tail`, enough for sparklines); a full history
    and heat maps are fetched per layer when asked for (`fetch(layer)` -> {"history": ..., "heatmap": ...}).
    """

    def __init__(self, d: dict[str, Any], fetch: Any = None):
        self.train_iter: int = int(d.get("train_iter", 0))
        self.layers: tuple[str, ...] = tuple(d.get("layers", ()))
        self.latest = {k: LayerStats(**_floats(v)) for k, v in d.get("latest", {}).items()}
        ranges = d.get("hist_ranges", {})
        self.hist_ranges = {k: (float(v[0]), float(v[1])) for k, v in ranges.items() if k in self.layers}
        self.flags: dict[str, str] = dict(d.get("flags", {}))
        self._history: dict[str, dict[str, list[float]]] = d.get("history", {})
        self._tail: dict[str, dict[str, list[float]]] = d.get("tail", {})
        self._tail_len = int(d.get("tail_len", 0))
        self._heatmap: dict[str, list[list[float]]] = d.get("heatmap", {})
        self._fetch = fetch

    def _check(self, layer: str) -> None:
        if layer not in self.layers:
            raise LabconError(f"telemetry has no layer {layer!r}; recorded layers: {', '.join(self.layers)}")

    def _load(self, layer: str) -> None:
        if self._fetch is not None:
            full = self._fetch(layer)
            self._history[layer] = full.get("history", {}).get(layer, {})
            self._heatmap[layer] = full.get("heatmap", {}).get(layer, [])

    def history(self, layer: str) -> dict[str, list[float]]:
        """Per-report series for one layer: iters, mean, std, near_zero, grad_norm, update_ratio."""
        self._check(layer)
        if layer not in self._history:
            self._load(layer)
        return self._history.get(layer, {})

    def history_tail(self, layer: str, n: int) -> dict[str, list[float]]:
        """The last `n` reports of `history(layer)` (from the first reply when it carried that many)."""
        self._check(layer)
        src = self._tail[layer] if layer in self._tail and n <= self._tail_len else self.history(layer)
        return {k: list(v[-n:]) for k, v in src.items()}

    def heatmap(self, layer: str) -> list[list[float]]:
        """Rows = reports, columns = histogram bins (fetched from the server on first use)."""
        self._check(layer)
        if layer not in self._heatmap:
            self._load(layer)
        return self._heatmap.get(layer, [])


def _floats(v: Any) -> dict[str, float]:
    v = v if isinstance(v, dict) else {}
    return {f: (math.nan if v.get(f) is None else float(v[f])) for f in FIELDS}


def image_to_b64(img: Any) -> str:
    """A PIL image as base64 PNG text (sample batches travel over the JSON-lines socket this way)."""
    from PIL.PngImagePlugin import PngInfo

    # Text entries of img.info (a sample grid's labels and layout) travel as PNG text chunks; PIL reads them back
    # into the decoded image's info.
    meta = PngInfo()
    for k, v in img.info.items():
        if isinstance(k, str) and isinstance(v, str):
            meta.add_itxt(k, v)
    buf = io.BytesIO()
    img.save(buf, format="PNG", pnginfo=meta)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def image_from_b64(text: str) -> Any:
    """The PIL image `image_to_b64` encoded; a clear error for anything else."""
    from PIL import Image, UnidentifiedImageError

    try:
        img = Image.open(io.BytesIO(base64.b64decode(text, validate=True)))
        img.load()
    except (ValueError, UnidentifiedImageError, OSError) as e:
        raise LabconError(f"the session sent an unreadable sample image ({e})") from e
    return img


def _whole(req: dict[str, Any], key: str, default: int | None, low: int, what: str) -> int | None:
    v = req.get(key, default)
    if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < low):
        raise LabconError(f'"{key}" must be {what}, got {v!r}')
    return v


def answer_data(h: Any, op: str, req: dict[str, Any]) -> tuple[str, Any]:
    """(text, data) of a data request (sample_batch, text_batch, telemetry) to a session; bad fields raise."""
    if op == "sample_batch":
        return "", {"png": image_to_b64(h.sample_batch_image(augment=bool(req.get("augment", True))))}
    if op == "text_batch":
        view = h.text_batch(_whole(req, "draw", 0, 0, "a whole number >= 0 (which batch to draw)"))
        return "", None if view is None else view.to_dict()
    snap = h.telemetry_snapshot()
    if snap is None:
        return "no telemetry", None
    tail = _whole(req, "tail", None, 1, "a positive number of reports")
    heatmap = bool(req.get("heatmap", False))
    return "", snapshot_to_dict(snap, layers=req.get("layers"), heatmap=heatmap, tail=tail)
