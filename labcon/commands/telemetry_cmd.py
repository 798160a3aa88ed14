"""How the `telemetry` command acts on a Runner (start, stop, reconfigure the Telemetry callback)."""

from __future__ import annotations

from typing import Any

from labcon.errors import LabconError


def apply_telemetry(cmd: Any, runner: Any) -> str:
    """Start, stop or reconfigure the Telemetry callback; returns the reply."""
    from labcon.core.telemetry import OWNER
    from labcon.core.telemetry import Telemetry as TelemetryCb

    tel = next((c for c in runner.cbs if isinstance(c, TelemetryCb)), None)
    in_fit = runner.in_fit
    if cmd.on is False:
        if tel is None:
            return "telemetry is already off"
        runner.remove_cbs([tel])
        runner.hooks.remove_owner(OWNER)
        return "telemetry off"
    if tel is None:
        if cmd.on is None and cmd.every is None and cmd.layers is None:
            return "telemetry is off (telemetry on to start it)"
        kwargs: dict[str, Any] = {}
        if cmd.every is not None:
            kwargs["every"] = cmd.every
        if cmd.layers is not None:
            kwargs["layers"] = list(cmd.layers)
        tel = TelemetryCb(**kwargs)
        if in_fit:
            tel.select_layers(runner.model)  # bad module paths fail before anything is installed
        runner.add_cbs([tel])
        if in_fit:
            tel.before_fit()
        return "telemetry on: " + _tel_settings(tel, runner)
    if cmd.every is not None:
        tel.every = cmd.every
    if cmd.layers is not None:
        old = tel.layer_spec
        tel.layer_spec = list(cmd.layers)
        try:
            tel.select_layers(runner.model)
        except LabconError:
            tel.layer_spec = old
            raise
        if in_fit:
            tel.before_fit()  # re-select and re-hook now rather than at the next fit
    return "telemetry on: " + _tel_settings(tel, runner)


def _tel_settings(tel: Any, runner: Any) -> str:
    layers = tel.layers or tel.select_layers(runner.model)
    shown = ", ".join(layers[:6]) + (f" ... ({len(layers)} layers)" if len(layers) > 6 else "")
    return f"every={tel.every} layers={shown or '(none)'}"
