"""Telemetry: per-layer activation statistics, histograms, gradient norms and update ratios, cheap enough
to leave on. Statistics accumulate in device tensors; the host gets one transfer every `every` batches."""

from __future__ import annotations

import threading
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from labcon.core.callbacks.speed import is_compiled
from labcon.core.distributed import unwrap_model
from labcon.core.events import Callback
from labcon.core.hooks import Hook, HookRegistry
from labcon.core.telemetry_fold import IndexCache, fold, per_layer_norm
from labcon.core.telemetry_history import (
    FIELDS,
    N_FIELDS,
    History,
    LayerStats,
    TelemetrySnapshot,
    make_snapshot,
)
from labcon.core.telemetry_layers import (
    DEFAULT_HI,
    DEFAULT_TYPES,
    first_tensor,
    flat_view,
    kind_range,
    select_layers,
)
from labcon.errors import LabconError

__all__ = ["DEFAULT_TYPES", "FIELDS", "LayerStats", "Telemetry", "TelemetrySnapshot"]

OWNER = "telemetry"


class Telemetry(Callback):
    """Records, for training batches only, per-layer activation mean/std/near-zero fraction and a histogram
    (averaged over the sampled batches of each report interval), and the gradient norm and update/parameter
    ratio of each layer's own parameters (on the report batch); read it with `snapshot()` (host-side).

    layers: module paths and/or module types (default: conv, linear, norm and activation modules, at most
    `max_layers`, evenly spaced). every: report (one device->host copy) every N training batches.
    sample_every: measure activations and gradients on every k-th batch (report batches always).
    spatial_stride: measure every s-th position along each spatial axis. horizon: history rows kept on the
    host (older rows are merged pairwise when full). near_zero: |x| below this counts as near zero.
    n_bins: histogram bins. hist_range: None (default) chooses each layer's range: by its kind where that fixes
    it (ReLU: (0, 10), GeneralRelu: (-sub, maxv or 10), Tanh: (-1, 1) ...), else from its first sampled values
    ((0, R) or (-R, R), R a power of two with headroom), so pre-activation outputs are counted on both sides of
    zero. A (low, high) pair: that range for every layer. A layer's range then stays fixed for the history's
    life (values outside it are not counted; the snapshot's `hist_ranges` says each layer's).
    max_samples: activation statistics use at most this many elements per layer and batch, an evenly
    strided subset (None: every element); it keeps the cost per layer small and fixed on CPU and GPU.
    """

    order = 60
    run_in_probe = False

    def __init__(
        self,
        layers: Sequence[str | type[nn.Module]] | None = None,
        every: int = 20,
        sample_every: int = 4,
        spatial_stride: int = 1,
        horizon: int = 512,
        near_zero: float = 1e-2,
        n_bins: int = 40,
        hist_range: tuple[float, float] | None = None,
        max_samples: int | None = 512,
        max_layers: int = 32,
        dead_frac: float = 0.9,
        explode_std: float = 1e3,
    ):
        for name, v in (("every", every), ("sample_every", sample_every), ("spatial_stride", spatial_stride)):
            if not isinstance(v, int) or v < 1:
                raise LabconError(f"Telemetry {name} must be a positive integer, got {v!r}")
        if hist_range is not None and not hist_range[0] < hist_range[1]:
            raise LabconError(f"Telemetry hist_range must be (low, high) with low < high, got {hist_range}")
        if n_bins < 1 or max_layers < 1:
            raise LabconError("Telemetry n_bins and max_layers must be at least 1")
        self.layer_spec = list(layers) if layers is not None else None
        self.every, self.sample_every, self.spatial_stride = every, sample_every, spatial_stride
        self.horizon, self.near_zero, self.n_bins = horizon, near_zero, n_bins
        self.hist_range = None if hist_range is None else (float(hist_range[0]), float(hist_range[1]))
        self.max_samples = max_samples
        self.max_layers, self.dead_frac, self.explode_std = max_layers, dead_frac, explode_std
        self.layers: list[str] = []
        self._history: History | None = None
        self._hooks: list[Hook] = []
        self._lock = threading.Lock()
        self._snapshot: TelemetrySnapshot | None = None
        self._last_iter = 0
        self._nonfinite: frozenset[str] = frozenset()
        self._active = self._reporting = self._pinned = False
        self._modules: list[nn.Module] = []
        self._device: torch.device | None = None

    # ----- layer selection -------------------------------------------------------------------------
    def select_layers(self, model: nn.Module) -> list[str]:
        """The module paths this telemetry would record on `model`."""
        return select_layers(model, self.layer_spec, self.max_layers)

    # ----- device-side recording -------------------------------------------------------------------
    def _make_hook(self, i: int) -> Any:
        def record(_m: nn.Module, _inp: Any, out: Any) -> None:
            if not self._active:
                return
            x = first_tensor(out)
            if x is None or not x.is_floating_point() or x.numel() == 0:
                return
            x = x.detach()
            s = self.spatial_stride
            if s > 1 and x.dim() > 2:
                x = x[(slice(None), slice(None), *([slice(None, None, s)] * (x.dim() - 2)))]
            # The hook only keeps a small strided subset (a copy, so the activation's memory is not held);
            # all statistics are computed for every layer at once when the pending subsets are folded in.
            flat = flat_view(x)
            step = -(-flat.numel() // self.max_samples) if self.max_samples else 1
            # An odd step, so the subset does not keep hitting the same position of each feature map.
            # A strided view, copied with all the other layers' in one kernel right after the forward pass (so
            # no activation is held beyond it). Only a per-layer list, emptied after each forward, is touched
            # here: under torch.compile the hook traces into the graph with stable guards (nothing to recompile on).
            slot.append(flat[:: step | 1])

        slot = self._slots[i]
        return record

    def _collect(self) -> None:
        """Copy the subsets the hooks took in this forward pass into one float32 tensor (one kernel) and note
        which layer each part belongs to."""
        views: list[Tensor] = []
        for i, got in enumerate(self._slots):
            if got:
                for sub in got:
                    views.append(sub if sub.dtype == torch.float32 else sub.float())
                    self._pending_idx.append(i)
                    self._sizes.append(sub.numel())
                    self._n_act[i] += 1
                    self._n_sub[i] += sub.numel()
                got.clear()
        if views:
            self._subs.append(torch.cat(views))

    def _alloc(self) -> None:
        n, dev = len(self.layers), self._device
        self._acc = torch.zeros(n, 2, device=dev)  # sums over sampled batches of mean and std
        self._nz = torch.zeros(n, device=dev)  # near-zero counts in the subsets
        self._hist = torch.zeros(n, self.n_bins, device=dev)
        self._alloc_ranges()
        self._gn = torch.zeros(n, device=dev)
        self._upd = torch.full((n,), float("nan"), device=dev)
        self._n_act, self._n_sub, self._n_grad = [0] * n, [0] * n, 0
        self._subs: list[Tensor] = []  # one float32 tensor per sampled forward pass
        self._sizes: list[int] = []  # elements of each layer's part, in order
        self._pending_idx: list[int] = []
        self._prev: list[Tensor] | None = None

    def _alloc_ranges(self) -> None:
        """Each layer's histogram range on the device: the history's where chosen before, else the fixed
        `hist_range`, else the layer kind's; the rest (`_unranged`) are read from their first sampled values."""
        known = self._history.ranges.copy()
        for i, m in enumerate(self._modules):
            if np.isnan(known[i]).any():
                known[i] = self.hist_range or kind_range(m, DEFAULT_HI) or (np.nan, np.nan)
        self._ranges = torch.tensor(known, dtype=torch.float32, device=self._device)
        self._unranged = {i for i in range(len(self.layers)) if np.isnan(known[i]).any()}

    def _bind(self, model: nn.Module) -> None:
        """Hook the selected modules and index their own parameters (for grad norms and update ratios)."""
        r = self.runner
        reg = getattr(r, "hooks", None)
        if not isinstance(reg, HookRegistry):  # a bare runner-like object: keep our own registry
            reg = HookRegistry(model)
        self._registry = reg
        self._remove_hooks()
        modules = dict(model.named_modules())
        self._modules = [modules.get(p) for p in self.layers]
        self._slots: list[list[Tensor]] = [[] for _ in self.layers]
        # Registered but detached: attached for sampled batches only, so the others run torch's fast call path.
        self._hooks = [
            reg.add(p, "forward", self._make_hook(i), owner=OWNER, scope="fit", attached=self._pinned)
            for i, p in enumerate(self.layers)
            if p in modules
        ]
        self._params: list[Tensor] = []
        owners: list[int] = []
        for i, m in enumerate(self._modules):
            for p in m.parameters(recurse=False) if m is not None else ():
                if p.requires_grad:
                    self._params.append(p)
                    owners.append(i)
        self._owners = tuple(owners)
        self._one_dtype = all(p.dtype == torch.float32 for p in self._params)
        if getattr(self, "_cache", None) is None or self._cache.device != self._device:
            self._cache = IndexCache(self._device)

    def _remove_hooks(self) -> None:
        for h in self._hooks:
            h.remove()
            reg = getattr(self, "_registry", None)
            if reg is not None and any(row["id"] == h.id for row in reg.table()):
                reg.remove(h.id)
        self._hooks = []

    def _per_layer_norm(self, tensors: list[Tensor], owners: tuple[int, ...]) -> Tensor:
        return per_layer_norm(tensors, owners, len(self.layers), self._cache, self._one_dtype)

    # ----- events ----------------------------------------------------------------------------------
    def before_fit(self) -> None:
        r = self.runner
        model = unwrap_model(r.model)  # under DDP, module paths are those of the wrapped model
        layers = self.select_layers(model)
        if not layers:
            warnings.warn(
                "Telemetry found no layers to record; pass layers=[...] (module paths)", stacklevel=2
            )
        p = next(iter(model.parameters()), None)
        self._device = p.device if p is not None else torch.device(getattr(r, "device", "cpu"))
        with self._lock:
            if self._history is None or self._history.layers != layers or self._history.n_bins != self.n_bins:
                if self._history is not None and self._history.n:
                    warnings.warn("Telemetry layers changed; starting a fresh history", stacklevel=2)
                self._history = History(layers, self.n_bins, self.horizon)
                self._snapshot = None
        self.layers = layers
        # A compiled model does not notice hooks put on or taken off after it compiled (Dynamo skips hook
        # guards): keep them on for the whole fit, gated by `_active`, which its graphs guard on.
        self._pinned = is_compiled(model)
        self._bind(model)
        self._alloc()

    def before_epoch(self) -> None:
        # The console may swap normalisation layers between epochs: follow the modules now at each path.
        model = unwrap_model(self.runner.model)
        modules = dict(model.named_modules())
        if any(modules.get(p) is not m for p, m in zip(self.layers, self._modules, strict=True)):
            self._bind(model)

    def before_batch(self) -> None:
        r = self.runner
        if not r.training:
            self._active = self._reporting = False
            return
        it = r.train_iter
        self._reporting = (it + 1) % self.every == 0
        self._active = self._reporting or it % self.sample_every == 0
        if self._active:
            for h in self._hooks:
                h.attach()

    def after_pred(self) -> None:
        # The forward pass is over: off the modules again until the next sampled batch.
        if self._active:
            self._detach_hooks()
            self._collect()

    def _detach_hooks(self) -> None:
        if self._pinned:
            return
        for h in self._hooks:
            h.detach()

    def before_step(self) -> None:
        # Parameter-side measures on report batches only (a norm per parameter tensor is not free on a
        # CPU). This runs after mixed precision unscaling and clipping: the gradients the optimizer uses.
        if not self._reporting or not self._params:
            return
        with torch.no_grad():
            have = [
                (p.grad, o) for p, o in zip(self._params, self._owners, strict=True) if p.grad is not None
            ]
            if have:
                grads, owners = zip(*have, strict=True)
                self._gn.copy_(self._per_layer_norm(list(grads), owners))
                self._n_grad = 1
            self._prev = torch._foreach_mul([p.detach() for p in self._params], 1.0)

    def after_step(self) -> None:
        if self._prev is None:
            return
        with torch.no_grad():
            now = [p.detach() for p in self._params]
            delta = self._per_layer_norm(torch._foreach_sub(now, self._prev), self._owners)
            size = self._per_layer_norm(self._prev, self._owners)
            self._upd.copy_(delta / size)
        self._prev = None

    def _flush_pending(self) -> None:
        """Fold the pending activation subsets into the accumulators: a fixed handful of kernels however
        many layers and batches are pending, and no host sync."""
        if not self._pending_idx:
            return
        idx, sizes = tuple(self._pending_idx), tuple(self._sizes)
        new = tuple(sorted(self._unranged.intersection(idx)))
        out = (self._acc, self._nz, self._hist, self._ranges)
        fold(self._subs, idx, sizes, self._cache, out, self.near_zero, new)
        self._unranged.difference_update(new)
        self._subs, self._pending_idx, self._sizes = [], [], []

    def after_batch(self) -> None:
        if not self._active:
            return
        self._detach_hooks()  # a batch cancelled before after_pred
        self._collect()
        if self._reporting:
            self._flush_pending()
            self._report(self.runner.train_iter)
        elif len(self._pending_idx) >= 32 * max(1, len(self.layers)):
            self._flush_pending()  # a long report interval: keep the pending lists short
        self._active = self._reporting = False
        self._prev = None

    def after_fit(self) -> None:
        self._active = False
        if getattr(self, "_pending_idx", None) is not None:
            self._flush_pending()
            if any(self._n_act) or self._n_grad:
                self._report(self.runner.train_iter)
        self._remove_hooks()

    # ----- host side -------------------------------------------------------------------------------
    def _report(self, train_iter: int) -> None:
        """One device->host transfer of everything accumulated since the last report, then reset."""
        n = len(self.layers)
        device_rows = [
            self._acc.flatten(),
            self._nz,
            self._gn,
            self._upd,
            self._ranges.flatten(),
            self._hist.flatten(),
        ]
        payload = torch.cat(device_rows).cpu().numpy()
        acc = payload[: 2 * n].reshape(n, 2).astype(np.float64)
        nz, gn, upd = payload[2 * n : 3 * n], payload[3 * n : 4 * n], payload[4 * n : 5 * n]
        ranges = payload[5 * n : 7 * n].reshape(n, 2).astype(np.float64)
        hist = payload[7 * n :].reshape(n, self.n_bins)
        n_act = np.array(self._n_act, dtype=np.float64)
        numel = np.array(self._n_sub, dtype=np.float64)
        row = np.full((n, N_FIELDS + self.n_bins), np.nan, dtype=np.float32)
        seen = n_act > 0
        row[seen, 0] = acc[seen, 0] / n_act[seen]
        row[seen, 1] = acc[seen, 1] / n_act[seen]
        row[seen, 2] = nz[seen] / numel[seen]
        row[seen, N_FIELDS:] = hist[seen] / n_act[seen, None]
        if self._n_grad:
            has_params = np.zeros(n, dtype=bool)
            has_params[list(set(self._owners))] = True
            row[has_params, 3] = gn[has_params]
        row[:, 4] = upd
        bad = seen & ~(np.isfinite(row[:, 0]) & np.isfinite(row[:, 1]))
        with self._lock:
            self._history.append(int(train_iter), row)
            self._history.ranges[:] = ranges  # the ranges chosen so far ride along with the report
            self._last_iter = int(train_iter)
            self._nonfinite = frozenset(self.layers[i] for i in np.flatnonzero(bad))
            self._snapshot = None
        self._acc.zero_()
        self._nz.zero_()
        self._hist.zero_()
        self._gn.zero_()
        self._upd.fill_(float("nan"))
        self._n_act, self._n_sub, self._n_grad = [0] * n, [0] * n, 0

    def snapshot(self) -> TelemetrySnapshot | None:
        """Immutable host-side copy of the history (None before the first fit); safe from any thread."""
        with self._lock:
            if self._history is None:
                return None
            if self._snapshot is None:
                h, it = self._history, self._last_iter
                self._snapshot = make_snapshot(h, it, self.dead_frac, self.explode_std, self._nonfinite)
            return self._snapshot

    def state_dict(self) -> dict[str, Any]:
        """The host history (tensors and plain values)."""
        with self._lock:
            if self._history is None:
                return {}
            state = self._history.state_dict()
        state.update(last_iter=self._last_iter)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a history saved by `state_dict()`."""
        if not state:
            return
        with self._lock:
            self._history = History.from_state(state, self.horizon)
            self._last_iter = int(state.get("last_iter", 0))
            self.n_bins = self._history.n_bins
            self.layers = list(self._history.layers)
            self._snapshot = None
