"""Telemetry: numbers vs. hand computation, one transfer per report and no host sync in between,
sampling, bounded memory, hooks through the registry, snapshots and state_dict."""

from __future__ import annotations

import importlib
import io
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode
from torch.utils.data import DataLoader, TensorDataset

from labcon.core.events import Callback
from labcon.core.hooks import Hook
from labcon.core.runner import Runner
from labcon.core.telemetry import Telemetry
from labcon.data.loaders import DataLoaders
from labcon.errors import LabconError
from labcon.nn.models import simple_cnn


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models on a busy 2-core box: one thread avoids hand-off stalls."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def image_dls(n: int = 64, bs: int = 8, seed: int = 0) -> DataLoaders:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 16, 16, generator=g)
    y = (x.mean((1, 2, 3)) > 0).long()
    return DataLoaders(DataLoader(TensorDataset(x, y), bs), DataLoader(TensorDataset(x[:16], y[:16]), bs))


def make_runner(tel: Telemetry, model: nn.Module | None = None, **kw: Any) -> Runner:
    torch.manual_seed(0)
    model = model or simple_cnn(1, 2, channels=(8, 16))
    return Runner(model, image_dls(**kw), loss_func=F.cross_entropy, lr=1e-2, cbs=[tel], device="cpu")


class Reference(Callback):
    """Measures the same things the slow, obvious way (with host syncs) for comparison."""

    order = 55

    def __init__(self, paths: list[str]) -> None:
        self.paths, self.acts, self.grads, self.ratios = paths, [], [], []

    def before_fit(self) -> None:
        mods = dict(self.runner.model.named_modules())
        self.mods = [mods[p] for p in self.paths]
        self.hooks = [Hook(m, self._grab) for m in self.mods]

    def _grab(self, m: nn.Module, i: Any, o: torch.Tensor) -> None:
        if self.runner.training:
            self._batch[m] = o.detach().clone()

    def before_batch(self) -> None:
        self._batch: dict[nn.Module, torch.Tensor] = {}

    def before_step(self) -> None:
        self.acts.append([self._batch[m] for m in self.mods])
        self.grads.append(
            [
                torch.cat([p.grad.flatten() for p in m.parameters(recurse=False)]).norm().item()
                if list(m.parameters(recurse=False))
                else float("nan")
                for m in self.mods
            ]
        )
        self._before = [[p.detach().clone() for p in m.parameters(recurse=False)] for m in self.mods]

    def after_step(self) -> None:
        row = []
        for m, old in zip(self.mods, self._before, strict=True):
            new = list(m.parameters(recurse=False))
            if not new:
                row.append(float("nan"))
                continue
            d = torch.cat([(a - b).flatten() for a, b in zip(new, old, strict=True)]).norm()
            row.append((d / torch.cat([b.flatten() for b in old]).norm()).item())
        self.ratios.append(row)

    def after_fit(self) -> None:
        for h in self.hooks:
            h.remove()


def test_statistics_match_hand_computation() -> None:
    tel = Telemetry(every=1, near_zero=0.05, hist_range=(-3.0, 3.0), max_samples=None)
    runner = make_runner(tel)
    ref = Reference(tel.select_layers(runner.model))
    runner.add_cbs([ref])
    runner.fit(1)
    snap = tel.snapshot()
    assert list(snap.layers) == ref.paths
    assert snap.n_reports == 8  # 8 training batches, validation not recorded
    assert snap.train_iter == 8 and set(snap.hist_ranges.values()) == {(-3.0, 3.0)}
    for li, path in enumerate(snap.layers):
        h = snap.history(path)
        assert h["iters"] == list(range(1, 9))
        acts = [b[li] for b in ref.acts]
        np.testing.assert_allclose(h["mean"], [a.mean().item() for a in acts], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(h["std"], [a.std().item() for a in acts], rtol=1e-4, atol=1e-5)
        nz = [(a.abs() < 0.05).float().mean().item() for a in acts]
        np.testing.assert_allclose(h["near_zero"], nz, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(h["grad_norm"], [g[li] for g in ref.grads], rtol=1e-4, atol=1e-7)
        np.testing.assert_allclose(h["update_ratio"], [r[li] for r in ref.ratios], rtol=1e-3, atol=1e-7)
        heat = np.array(snap.heatmap(path))
        assert heat.shape == (8, 40)
        np.testing.assert_allclose(heat[-1], torch.histc(acts[-1], 40, -3, 3).numpy(), atol=1e-3)
    # Activations have no parameters: gradient norm and update ratio are unknown (nan).
    relu = snap.layers[2]
    assert np.isnan(snap.latest[relu].grad_norm) and np.isnan(snap.latest[relu].update_ratio)
    assert snap.latest[snap.layers[0]].grad_norm > 0


SYNCS = {"item", "cpu", "tolist", "numpy", "__float__", "__int__", "__bool__", "__index__", "nonzero"}
# The exact files of the package (not any path containing "labcon": a clone is usually *named* labcon, and this
# test file itself is called test_telemetry.py).
TELEMETRY_FILES = {
    m.__file__
    for m in (
        importlib.import_module("labcon.core.telemetry"),
        importlib.import_module("labcon.core.telemetry_history"),
        importlib.import_module("labcon.core.telemetry_fold"),
    )
}


class CountSyncs(TorchFunctionMode):
    """Counts host-synchronising tensor calls made from labcon's telemetry modules, per training batch."""

    def __init__(self, probe: Callback) -> None:
        super().__init__()
        self.probe, self.calls = probe, []

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        name = getattr(func, "__name__", "")
        to_host = name == "to" and any(str(a) == "cpu" for a in args[1:])
        if name in SYNCS or to_host:
            f = sys._getframe(1)
            while f is not None:
                if f.f_code.co_filename in TELEMETRY_FILES:
                    self.calls.append((self.probe.batch, name))
                    break
                f = f.f_back
        return func(*args, **(kwargs or {}))


class BatchProbe(Callback):
    order = -100

    def __init__(self) -> None:
        self.batch = -1

    def before_batch(self) -> None:
        self.batch = self.runner.train_iter if self.runner.training else -1

    def after_train(self) -> None:
        self.batch = -1


def test_one_transfer_per_report_and_no_sync_in_between() -> None:
    tel, probe = Telemetry(every=4, sample_every=1), BatchProbe()
    runner = make_runner(tel, n=96)
    runner.add_cbs([probe])
    runner.fit(1, cbs=[])  # warm-up fit: allocation and caches
    with CountSyncs(probe) as mode:
        runner.fit(1)
    reported = {b for b in range(12, 24) if (b + 1) % 4 == 0}
    per_batch: dict[int, list[str]] = {}
    for b, name in mode.calls:
        per_batch.setdefault(b, []).append(name)
    assert set(per_batch) == reported, per_batch
    for b in reported:
        # Exactly one device->host copy per report (then .numpy() on that host copy, no sync).
        assert per_batch[b] == ["cpu", "numpy"], per_batch[b]
    assert tel.snapshot().n_reports == 6


def test_sampling_and_spatial_stride() -> None:
    tel = Telemetry(
        layers=["0.2"], every=6, sample_every=3, spatial_stride=2, hist_range=(0.0, 100.0), max_samples=None
    )
    runner = make_runner(tel)
    ref = Reference(["0.2"])
    runner.add_cbs([ref])
    runner.fit(1)
    snap = tel.snapshot()
    # Reports at 6 batches and at the end of the fit (8): rows are per-sampled-batch means.
    assert snap.history("0.2")["iters"] == [6, 8]
    full = snap.history("0.2")
    np.testing.assert_equal(snap.history_tail("0.2", 1), {k: v[-1:] for k, v in full.items()})  # nan == nan
    np.testing.assert_equal(snap.history_tail("0.2", 5), full)
    heat = np.array(snap.heatmap("0.2"))
    # GeneralRelu output of the first block: (8, 8, 8, 8), sub-sampled by 2 in H and W.
    np.testing.assert_allclose(heat.sum(1), [8 * 8 * 4 * 4] * 2)
    sampled = [ref.acts[i][0][:, :, ::2, ::2] for i in (0, 3, 5)]  # batches 0, 3 (k=3) and 5 (report)
    want = np.mean([a.mean().item() for a in sampled])
    assert snap.history("0.2")["mean"][0] == pytest.approx(want, rel=1e-4)


def test_history_is_bounded_and_downsampled() -> None:
    tel = Telemetry(every=1, horizon=8, layers=[nn.Linear])
    runner = make_runner(tel, n=200)
    runner.fit(1)
    snap = tel.snapshot()
    iters = snap.history("4")["iters"]
    assert snap.n_reports <= 8 and iters[-1] == 25 and iters == sorted(iters)
    assert iters[0] > 1  # the oldest rows were merged, not dropped from the end
    assert tel._history.weights[: tel._history.n].sum() == 25  # every report still counted once


def test_hooks_go_through_registry_and_leave_with_the_fit() -> None:
    seen: list[list[dict]] = []

    class Look(Callback):
        order = 70

        def after_batch(self) -> None:
            seen.append(self.runner.hooks.table())

    class Crash(Callback):
        order = 80

        def after_batch(self) -> None:
            raise ValueError("boom")

    tel = Telemetry(layers=["0.0", "1.0"])
    runner = make_runner(tel)
    runner.add_cbs([Look()])
    runner.fit(1)
    assert [(r["module"], r["owner"], r["scope"]) for r in seen[0]] == [
        ("0.0", "telemetry", "fit"),
        ("1.0", "telemetry", "fit"),
    ]
    assert runner.hooks.table() == []
    with pytest.raises(Exception, match="boom"):
        runner.fit(1, cbs=[Crash()])
    assert runner.hooks.table() == []
    assert sum(len(m._forward_hooks) for m in runner.model.modules()) == 0


def test_hooks_are_on_the_modules_only_for_sampled_batches() -> None:
    """Unsampled batches run with no hook on any module (torch's fast call path), sampled ones with all."""
    on_modules: list[tuple[int, int]] = []

    class Count(Callback):
        order = 65  # after Telemetry's before_batch

        def before_batch(self) -> None:
            if self.runner.training:
                n = sum(len(m._forward_hooks) for m in self.runner.model.modules())
                on_modules.append((self.runner.train_iter, n))

        def after_batch(self) -> None:
            assert sum(len(m._forward_hooks) for m in self.runner.model.modules()) == 0

    tel = Telemetry(layers=["0.0", "1.0"], every=6, sample_every=4)
    runner = make_runner(tel)
    runner.add_cbs([Count()])
    runner.fit(2)
    assert len(on_modules) == 16
    for it, n in on_modules:
        sampled = it % 4 == 0 or (it + 1) % 6 == 0
        assert n == (2 if sampled else 0), (it, n)
    # Still registered (listed) throughout, and the statistics still arrive.
    assert tel.snapshot().n_reports == 3  # iterations 5 and 11, and the end of the fit
    assert not np.isnan(tel.snapshot().latest["0.0"].mean)


def test_layer_selection() -> None:
    model = simple_cnn(1, 2)
    assert Telemetry().select_layers(model)[:3] == ["0.0", "0.1", "0.2"]
    assert Telemetry(layers=[nn.Conv2d, "6"]).select_layers(model) == ["0.0", "1.0", "2.0", "3.0", "6"]
    capped = Telemetry(max_layers=4).select_layers(model)
    assert len(capped) == 4 and capped[0] == "0.0" and capped[-1] == "6"
    with pytest.raises(LabconError, match="did you mean"):
        Telemetry(layers=["0.00"]).select_layers(model)
    with pytest.raises(LabconError, match="every"):
        Telemetry(every=0)


def test_flags_dead_and_exploding() -> None:
    class Scale(nn.Module):
        def __init__(self, s: float) -> None:
            super().__init__()
            self.s = s

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * self.s

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Flatten(), nn.Linear(256, 16), Scale(0.0), nn.Linear(16, 16), Scale(1e6), nn.Linear(16, 2)
    )
    tel = Telemetry(layers=["1", "2", "4"], every=4)
    runner = Runner(
        model, image_dls(), loss_func=F.cross_entropy, lr=0.0, opt_func=torch.optim.SGD, cbs=[tel]
    )
    runner.fit(1)
    assert tel.snapshot().flags == {"2": "dead", "4": "exploding"}


def test_snapshot_is_immutable_and_state_dict_round_trips(tmp_path: Path) -> None:
    tel = Telemetry(every=2)
    make_runner(tel).fit(1)
    snap = tel.snapshot()
    assert tel.snapshot() is snap  # cached until the next report
    with pytest.raises(AttributeError):
        snap.train_iter = 3  # type: ignore[misc]
    with pytest.raises(ValueError):
        snap._rows[0, 0, 0] = 1.0
    buf = io.BytesIO()
    torch.save(tel.state_dict(), buf)
    buf.seek(0)
    other = Telemetry(every=2)
    other.load_state_dict(torch.load(buf, weights_only=True))
    s2 = other.snapshot()
    assert s2.layers == snap.layers and s2.train_iter == snap.train_iter
    for layer in snap.layers:
        for key, vals in snap.history(layer).items():
            np.testing.assert_array_equal(s2.history(layer)[key], vals)
        assert s2.heatmap(layer) == snap.heatmap(layer)
    with pytest.raises(LabconError, match="no layer"):
        s2.history("nope")
    assert s2.hist_ranges == snap.hist_ranges and set(s2.hist_ranges) == set(snap.layers)
    # A state saved when one range served every layer: its rows were binned on that range.
    legacy = {k: v for k, v in tel.state_dict().items() if k != "ranges"} | {"hist_range": [0.0, 10.0]}
    old = Telemetry(every=2)
    old.load_state_dict(legacy)
    assert set(old.snapshot().hist_ranges.values()) == {(0.0, 10.0)}


def test_each_layer_gets_a_histogram_range_that_covers_its_values() -> None:
    """Conv and batch-norm outputs (before their ReLU) go negative: their bins span both sides of zero, chosen
    from the first sampled batch, so the counts cover them (a fixed 0..10 dropped about half); ReLU-like outputs
    keep the course's 0..10; ranges stay fixed across fits, so a layer's rows stay comparable."""
    tel = Telemetry(every=1, max_samples=None)
    runner = make_runner(tel)
    ref = Reference(tel.select_layers(runner.model))
    runner.add_cbs([ref])
    runner.fit(1)
    snap = tel.snapshot()
    kinds = dict(runner.model.named_modules())
    assert set(snap.hist_ranges) == set(snap.layers)
    for li, path in enumerate(snap.layers):
        lo, hi = snap.hist_ranges[path]
        acts = [b[li] for b in ref.acts]
        heat = np.array(snap.heatmap(path))
        if isinstance(kinds[path], (nn.Conv2d, nn.BatchNorm2d, nn.Linear)):
            first = acts[0]
            assert lo == -hi and hi >= 2 * first.abs().max().item() and np.log2(hi) == round(np.log2(hi)), (
                path
            )
            counted = heat[-1].sum()
            assert counted == pytest.approx(acts[-1].numel()), path  # every value of the batch is in a bin
            assert heat[-1][:20].sum() > 0.2 * counted, path  # the negative half is drawn
            old = torch.histc(acts[-1], 40, 0.0, 10.0).sum().item()
            assert old < 0.8 * acts[-1].numel(), path  # what the fixed 0..10 counted
        else:
            assert (lo, hi) == (0.0, 10.0), path  # GeneralRelu without leak or sub: non-negative
        np.testing.assert_allclose(heat[-1], torch.histc(acts[-1], 40, lo, hi).numpy(), atol=1e-3)
    runner.fit(1)  # a second fit: the same ranges
    assert tel.snapshot().hist_ranges == snap.hist_ranges


def test_histogram_range_by_layer_kind() -> None:
    from labcon.core.telemetry_layers import kind_range
    from labcon.nn.layers import GeneralRelu

    assert kind_range(nn.ReLU()) == (0.0, 10.0) and kind_range(nn.ReLU6()) == (0.0, 6.0)
    assert kind_range(nn.Tanh()) == (-1.0, 1.0) and kind_range(nn.Sigmoid()) == (0.0, 1.0)
    assert kind_range(GeneralRelu(sub=0.4)) == (-0.4, 10.0)  # the shift moves its floor below zero
    assert kind_range(GeneralRelu(sub=0.4, maxv=6.0)) == (-0.4, 6.0)
    for m in (
        GeneralRelu(leak=0.1, sub=0.4),
        nn.Conv2d(1, 1, 1),
        nn.Linear(1, 1),
        nn.BatchNorm1d(1),
        nn.GELU(),
    ):
        assert kind_range(m) is None, m  # may go negative by an amount only its values tell


def test_not_run_during_lr_find() -> None:
    tel = Telemetry(every=1)
    runner = make_runner(tel)
    with runner.probe():
        runner.fit(1)
    assert tel.snapshot() is None and runner.hooks.table() == []


def test_latest_gradient_norm_survives_a_fit_s_closing_report() -> None:
    # 8 batches, a report every 3: the fit closes with a partial report (iter 8) that measured activations but
    # no gradients. The latest gradient norm is the one measured at iter 6, not nan.
    tel = Telemetry(every=3, sample_every=1, near_zero=0.05, hist_range=(-3.0, 3.0), max_samples=None)
    runner = make_runner(tel)
    runner.fit(1)
    snap = tel.snapshot()
    first = snap.layers[0]
    h = snap.history(first)
    assert h["iters"] == [3, 6, 8] and np.isnan(h["grad_norm"][-1]) and np.isnan(h["update_ratio"][-1])
    assert snap.latest[first].grad_norm == h["grad_norm"][1] > 0
    assert snap.latest[first].update_ratio == h["update_ratio"][1] > 0
    assert snap.latest[first].mean == h["mean"][-1]  # activation statistics come from the closing report
    assert np.isnan(snap.latest[snap.layers[2]].grad_norm)  # no parameters: never measured
