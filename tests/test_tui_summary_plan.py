"""The console's model summary (Hooks pane) and the planned schedules (Training pane's lr/mom plots) on a real
Session in this process and over the control socket."""

from __future__ import annotations

from pathlib import Path

import pytest

from labcon.remote.client import RemoteSession
from labcon.remote.server import ControlServer, control_socket_path
from labcon.session.config import parse_config
from labcon.session.session import Session
from labcon.tui.app import build_app
from labcon.tui.hooks import HooksPane
from labcon.tui.training import TrainingPane
from tests.helpers import make_image_folder, tiny_config
from tests.pilot import screen_text, type_line, until

pytestmark = pytest.mark.anyio


def _plot_lines(pane: TrainingPane, wid: str) -> dict[str, tuple[list[float], list[float]]]:
    """What the plot last drew: legend label -> (xs, ys) (plotext keeps them on its figure's monitor)."""
    mon = pane.query_one(wid).plt._active.monitor  # type: ignore[attr-defined]
    return {label: (x, y) for label, x, y in zip(mon.label, mon.x, mon.y, strict=True)}


def _session(tmp: Path, name: str) -> Session:
    data = make_image_folder(tmp / "img", n_train=48)
    return Session(parse_config(tiny_config(data, name=name, epochs=1000)), tmp / "s")


async def test_lr_plot_draws_the_planned_one_cycle_and_redraws_it_after_set(tmp_path):
    s = _session(tmp_path, "plan")
    app = build_app(s, images="halfcell")
    try:
        async with app.run_test(size=(120, 34)) as pilot:
            pane = app.query_one(TrainingPane)
            await type_line(pilot, "fit_one_cycle 1000 lr=0.01")
            await until(pilot, lambda: "lr" in pane.plan.lines and "plan" in _plot_lines(pane, "#plot-lr"))
            xs, ys = _plot_lines(pane, "#plot-lr")["plan"]
            fit = s.status()["fit"]
            assert xs[0] == fit["start_iter"] and xs[-1] == pytest.approx(fit["start_iter"] + fit["total"])
            peak = max(range(len(ys)), key=ys.__getitem__)
            assert ys[0] == pytest.approx(0.01 / 25) and ys[peak] == pytest.approx(0.01)
            assert xs[peak] == pytest.approx(fit["start_iter"] + 0.25 * fit["total"], rel=0.02)  # warm-up end
            assert "plan" in _plot_lines(pane, "#plot-mom")  # wide: the momentum plot carries its plan too
            version = pane.plan.version
            await type_line(pilot, "set lr=0.001")
            await until(pilot, lambda: pane.plan.version > version)
            await until(pilot, lambda: _plot_lines(pane, "#plot-lr")["plan"][1] != ys)
            after = _plot_lines(pane, "#plot-lr")["plan"][1]
            ratios = {round(b / a, 6) for a, b in zip(ys, after, strict=True) if a > 1e-9}
            assert len(ratios) == 1 and ratios != {1.0}  # rescaled, shape kept
            await type_line(pilot, "stop")
            await until(pilot, lambda: s.state == "idle" and s.jobs.wait_idle(0))
    finally:
        s.close()


async def test_hooks_pane_summary_refreshes_after_norm_and_works_attached(tmp_path):
    s = _session(tmp_path, "summ")
    server = ControlServer(s, control_socket_path(tmp_path / "s", s.name)).start()
    remote = RemoteSession(server.path)
    app = build_app(remote, images="halfcell")
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("3")
            pane = app.query_one(HooksPane)
            await until(pilot, lambda: "" in pane.summary)
            total = sum(p.numel() for p in s.runner.model.parameters())
            assert pane.summary[""]["params"] == total
            await until(pilot, lambda: f"model: {total:,} params ({total:,} trainable)" in screen_text(app))
            text = screen_text(app)
            assert "MACs/item" in text
            conv = next(path for path, row in pane.summary.items() if row["kind"] == "Conv2d")
            assert f"{pane.summary[conv]['params']}p" in text  # each node: output shape and params
            await type_line(pilot, "fit 1000")
            await until(pilot, lambda: s.runner.train_iter >= 2)
            await type_line(pilot, "norm running")  # applied at the end of the epoch, while training
            await until(pilot, lambda: any(r["kind"] == "RunningBatchNorm" for r in pane.summary.values()))
            assert s.state == "running" and pane.summary[""]["params"] > 0
            await pilot.press("escape", "3")
            await until(pilot, lambda: "RunningBatchNorm" in screen_text(app) or "model:" in screen_text(app))
            await type_line(pilot, "stop")
            await until(pilot, lambda: s.state == "idle" and s.jobs.wait_idle(0))
    finally:
        remote.close()
        server.close()
        s.close()


async def test_hooks_pane_shows_a_layer_s_gradient_norm_after_a_fit(tmp_path):
    """The module statistics line after a fit has ended shows the layer's last measured gradient norm (a fit's
    closing report measures none; the line must not read `grad norm nan` then)."""
    data = make_image_folder(tmp_path / "img")
    s = Session(parse_config(tiny_config(data, name="gn", epochs=2)), tmp_path / "s")
    app = build_app(s, images="halfcell")
    try:
        async with app.run_test(size=(200, 34)) as pilot:  # wide: the statistics line in full
            await type_line(pilot, "fit 2")
            await until(pilot, lambda: s.state == "idle" and s.jobs.wait_idle(0) and s.runner.epoch == 2)
            await pilot.press("3")
            pane = app.query_one(HooksPane)
            tree = pane.query_one("Tree")
            tree.focus()
            await until(pilot, lambda: tree.has_focus)

            for _ in range(12):  # down the module tree, a node at a time, to the first layer with telemetry
                if "latest stats of" in screen_text(app):
                    break
                before = pane.selected
                await pilot.press("down")
                await until(pilot, lambda before=before: pane.selected != before)
            line = next(x for x in screen_text(app).splitlines() if "latest stats of" in x)
            grad = line.split("grad norm ")[1].split()[0]
            assert grad != "nan" and float(grad) > 0, line
    finally:
        s.close()
