"""Build data, model and Runner from a validated Config (the only place that knows the config's meaning)."""

from __future__ import annotations

import random
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from labcon.core.callbacks.guards import GradientAccumulation, GradientClip, NaNGuard
from labcon.core.callbacks.precision import MixedPrecision
from labcon.core.callbacks.registry import CALLBACKS
from labcon.core.callbacks.speed import ChannelsLast, Compile
from labcon.core.events import Callback
from labcon.core.losses import LOSSES
from labcon.core.metrics import METRICS
from labcon.core.optim import OPTIMIZERS
from labcon.core.runner import Runner, default_device
from labcon.core.schedules import parse_sched
from labcon.data.block import DataBlock
from labcon.errors import ConfigError, LabconError
from labcon.session.config import Config, add_location


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices) so a run can be rebuilt exactly."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda when available; otherwise the named device, with a clear error if it is missing."""
    if name == "auto":
        return default_device()
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device = '{name}' but no CUDA GPU is visible; use device = 'auto' or 'cpu'")
    return dev


def build_block(config: Config) -> DataBlock:
    """The DataBlock for config.data (an empty [data] table means the built-in dataset)."""
    raw = dict(config.data.raw) or {"preset": "shapes"}
    try:
        return DataBlock.from_config(raw, config.base_dir)
    except ConfigError as e:
        raise add_location(e, config) from None


def build_model(config: Config, c_in: int, n_out: int) -> nn.Module:
    """The model named by [model] (arch, norm, init)."""
    from labcon.nn.models import simple_cnn
    from labcon.nn.norms import swap_norm
    from labcon.nn.xresnet import xresnet18, xresnet34, xresnet50

    m = config.model
    if m.arch == "simple_cnn":
        model = simple_cnn(c_in, n_out, channels=m.channels, norm="batch")
    else:
        arch = {"xresnet18": xresnet18, "xresnet34": xresnet34, "xresnet50": xresnet50}[m.arch]
        model = arch(c_in=c_in, n_out=n_out)
    if m.norm != "batch":
        swap_norm(model, m.norm)
    if m.init == "kaiming":
        from labcon.nn.init import kaiming_init

        kaiming_init(model)
    return model


def build_callbacks(config: Config, device: torch.device) -> list[Callback]:
    """Callbacks implied by [train] and listed in [[callbacks]]."""
    t = config.train
    cbs: list[Callback] = [NaNGuard()]
    if t.precision != "fp32":
        cbs.append(MixedPrecision(t.precision))
    if t.channels_last:
        cbs.append(ChannelsLast())
    if t.compile:
        cbs.append(Compile())
    if t.grad_clip:
        cbs.append(GradientClip(t.grad_clip))
    if t.grad_accum:
        cbs.append(GradientAccumulation(t.grad_accum))
    if config.telemetry.enabled:
        from labcon.core.telemetry import Telemetry

        kw: dict[str, Any] = {"every": config.telemetry.every, "sample_every": config.telemetry.sample_every}
        if config.telemetry.layers:
            kw["layers"] = list(config.telemetry.layers)
        cbs.append(Telemetry(**kw))
    for i, c in enumerate(config.callbacks):
        cls = CALLBACKS.get(c.name)
        if cls is None:
            raise add_location(
                ConfigError(
                    f"callbacks.{i}.name: unknown callback '{c.name}'; available: {', '.join(CALLBACKS)}"
                ),
                config,
            )
        try:
            cbs.append(cls(**c.params))
        except (TypeError, ValueError) as e:
            raise add_location(ConfigError(f"callbacks.{i}: {c.name}: {e}"), config) from None
    return cbs


@dataclass
class Built:
    """What a config turns into."""

    block: DataBlock
    dls: Any
    model: nn.Module
    runner: Runner


def build(config: Config, rank: int = 0, world_size: int = 1, device: torch.device | None = None) -> Built:
    """Seed, then build data, model, optimizer settings and the Runner described by config."""
    seed_everything(config.seed)
    device = device or resolve_device(config.train.device)
    block = build_block(config)
    skipped = block.drop_bad_files()  # every bad file listed now, not one per run mid-epoch
    if skipped:
        warnings.warn(
            f"skip_bad: leaving out {len(skipped)} unreadable image(s), e.g. {skipped[0]}", stacklevel=2
        )
    dls = block.dataloaders(seed=config.seed, rank=rank, world_size=world_size)
    n_out = getattr(dls, "c", None)
    if not n_out:
        raise LabconError("the data has no classes; check the labeller in [data]")
    model = build_model(config, 3, n_out)
    t = config.train
    opt_kw: dict[str, Any] = {"wd": t.wd}
    if t.mom is not None:
        opt_kw["mom"] = t.mom
    factory = OPTIMIZERS[t.opt]

    def opt_func(params: Any, lr: float) -> torch.optim.Optimizer:
        return factory(params, lr=lr, **opt_kw)

    opt_func.__name__ = t.opt  # shown by `status`
    loss = LOSSES[t.loss]
    loss_func = loss() if isinstance(loss, type) else loss
    metrics = [METRICS[m] for m in t.metrics]
    runner = Runner(
        model, dls, loss_func=loss_func, opt_func=opt_func, lr=t.lr, metrics=metrics, device=device
    )
    if isinstance(t.schedule, tuple):  # [train.schedule]: run in every fit (fit_one_cycle keeps its lr, mom)
        runner.schedules = {k: parse_sched(v) for k, v in t.schedule if k != "policy"}
    runner.add_cbs(build_callbacks(config, device))
    return Built(block, dls, model, runner)
