"""Build data, model and Runner from a validated Config (the only place that knows the config's meaning)."""

from __future__ import annotations

import random
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from labcon.commands.apply import build_callback
from labcon.commands.base import suggest
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
from labcon.errors import CommandError, ConfigError, LabconError
from labcon.session.build_text import build_text, is_text
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


def _init_model(model: nn.Module, config: Config, dls: Any) -> str:
    """Apply [model] init; returns what was done (for the build notes)."""
    m = config.model
    if m.init == "default":
        # PyTorch's own init (kaiming_uniform with a=sqrt(5)): reproduces the course's sqrt(5) lesson.
        from labcon.nn.init import WEIGHTED

        for mod in model.modules():
            if isinstance(mod, WEIGHTED):
                mod.reset_parameters()
        return "init: PyTorch default (kaiming_uniform a=sqrt(5)) on conv/linear layers"
    from labcon.nn.init import kaiming_init

    kaiming_init(model, leak=m.leak or 0.0)
    if m.init == "kaiming":
        return f"init: kaiming (leak {m.leak or 0.0})"
    from labcon.core.init import lsuv_init, lsuv_units

    xb, _ = dls.one_batch()
    ref = next(model.parameters())
    xb = xb.to(ref.device)
    if not xb.is_floating_point():
        raise LabconError("LSUV needs float input batches; add a normalize step to [data]'s batch transforms")
    try:
        lsuv_init(model, xb)
    except LabconError as e:
        raise ConfigError(f"model.init = 'lsuv' in {config.source}: {e}") from None
    n = sum(1 for u in lsuv_units(model) if u.act is not None)
    return f"init: kaiming, then LSUV on a training batch of {len(xb)} ({n} conv units to mean 0 / std 1)"


def load_body_state(config: Config, home: Path | None) -> tuple[dict[str, torch.Tensor], str]:
    """The model tensors [model] body points at: a checkpoint file, or a saved session's newest checkpoint."""
    from labcon.session.checkpoint import load_checkpoint, load_latest

    src = config.model.body or ""
    path = Path(src) if Path(src).is_absolute() else config.base_dir / src
    if src.endswith(".pt") or path.is_file():
        state = load_checkpoint(path)
        where = str(path)
    else:
        from labcon.session.paths import sessions_home

        d = sessions_home(home) / src / "checkpoints"
        if not d.is_dir():
            raise ConfigError(
                f"model.body = {src!r} in {config.source}: no session '{src}' with checkpoints under "
                f"{d.parent.parent} and no such file; train and save that session first, or give a .pt path"
            )
        state, p, _ = load_latest(d)
        where = f"session '{src}' ({p.name})"
    tensors = state.get("model", state)
    if not isinstance(tensors, dict) or not all(isinstance(v, torch.Tensor) for v in tensors.values()):
        raise ConfigError(f"model.body = {src!r}: {where} holds no model tensors (a state_dict)")
    return tensors, where


def build_model(
    config: Config, c_in: int, n_out: int, dls: Any = None, home: Path | None = None
) -> tuple[nn.Module, list[str]]:
    """The model named by [model] (arch, norm, groups, activation, init, body) and notes on what was built."""
    from labcon.nn.models import simple_cnn
    from labcon.nn.norms import describe_norms, swap_norm
    from labcon.nn.xresnet import xresnet18, xresnet34, xresnet50

    m = config.model
    act = {"leak": m.leak, "sub": m.sub, "maxv": m.maxv}
    if m.arch == "simple_cnn":
        model = simple_cnn(c_in, n_out, channels=m.channels, norm="batch", **act)
    else:
        arch = {"xresnet18": xresnet18, "xresnet34": xresnet34, "xresnet50": xresnet50}[m.arch]
        model = arch(c_in=c_in, n_out=n_out, **act)
    notes = [f"model: {m.arch}, activation GeneralRelu(leak={m.leak}, sub={m.sub}, maxv={m.maxv})"]
    if m.norm != "batch":
        swap_norm(model, m.norm, **({"groups": m.groups} if m.groups is not None else {}))
    notes.append(f"norm: {describe_norms(model)}")
    notes.append(_init_model(model, config, dls))
    if m.body is not None:
        from labcon.nn.transfer import load_body, with_new_head

        p = 0.5 if m.head_dropout is None else m.head_dropout
        model = with_new_head(model, n_out, p=p, c_in=c_in)
        tensors, where = load_body_state(config, home)
        try:
            n = load_body(model, tensors)
        except LabconError as e:
            raise ConfigError(f"model.body = {m.body!r} ({where}): {e}") from None
        notes.append(f"body: {n} tensors from {where}; new head (concat pool, flatten, dropout {p}, linear)")
    return model, notes


def splitter_for(config: Config) -> Any:
    """The param-group splitter the config names ([model] splitter), or the arch's when a body is loaded."""
    from labcon.nn.transfer import SPLITTERS

    m = config.model
    name = m.splitter or (("xresnet" if m.arch.startswith("xresnet") else "simple_cnn") if m.body else None)
    return (name, SPLITTERS[name]) if name else (None, None)


def _check_targets(config: Config, dls: Any) -> None:
    """Multi-label data needs the sigmoid/BCE loss and a thresholded metric; single-label data the others."""
    t = config.train
    multi = bool(getattr(dls, "multi_label", False))
    if multi and (t.loss != "bce" or any(m in ("accuracy", "error_rate") for m in t.metrics)):
        raise ConfigError(
            f"{config.source}: the data is multi-label (labeller with delim), so set [train] loss = 'bce' and "
            "metrics = ['accuracy_multi'] (softmax losses and argmax accuracy assume one label per item)"
        )
    if not multi and (t.loss == "bce" or "accuracy_multi" in t.metrics):
        raise ConfigError(
            f"{config.source}: loss = 'bce' and accuracy_multi need multi-label data: a csv labeller with "
            "delim = ' ' (several labels per row); for one label per item use cross_entropy and accuracy"
        )


def build_loss(config: Config) -> Any:
    """The loss [train] names (label smoothing takes its eps from `smoothing`)."""
    t = config.train
    if t.loss == "label_smoothing":
        return LOSSES["label_smoothing"](eps=0.1 if t.smoothing is None else t.smoothing)
    loss = LOSSES[t.loss]
    return loss() if isinstance(loss, type) else loss


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
        # Registry names only: a config (re-read on every resume) never names code to import.
        if c.name not in CALLBACKS:
            raise add_location(
                ConfigError(f"callbacks.{i}.name: {suggest(c.name, sorted(CALLBACKS), 'callback')}"), config
            )
        try:
            cbs.append(build_callback(c.name, dict(c.params)))
        except CommandError as e:
            raise add_location(ConfigError(f"callbacks.{i}: {e}"), config) from None
    return cbs


@dataclass
class Built:
    """What a config turns into."""

    block: DataBlock
    dls: Any
    model: nn.Module
    runner: Runner
    notes: list[str] = field(default_factory=list)  # what was built, in words (init, norms, body, splitter)


def build(
    config: Config,
    rank: int = 0,
    world_size: int = 1,
    device: torch.device | None = None,
    home: Path | None = None,
    session_dir: Path | None = None,
) -> Built:
    """Seed, then build data, model, optimizer settings and the Runner described by config.

    `session_dir` is where text sessions cache tokens, keep their vocab and write their LM encoder."""
    seed_everything(config.seed)
    device = device or resolve_device(config.train.device)
    text_kw: dict[str, Any] = {"metrics": None, "splitter": None, "cbs": []}
    if is_text(config):
        if world_size > 1:
            raise ConfigError("text sessions run on one process; drop the distributed launch")
        block, dls, model, text_kw = build_text(config, device, session_dir, rank)
        notes: list[str] = []
    else:
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
        _check_targets(config, dls)
        # LSUV's shifts live in GeneralRelu attributes that DDP does not broadcast: every rank must measure
        # the same batch, so with several ranks it comes from the unsharded loader.
        lsuv_dls = dls
        if world_size > 1 and config.model.init == "lsuv":
            lsuv_dls = block.dataloaders(seed=config.seed, num_workers=0)
        model, notes = build_model(config, 3, n_out, dls=lsuv_dls, home=home)
    t = config.train
    opt_kw: dict[str, Any] = {"wd": t.wd}
    if t.mom is not None:
        opt_kw["mom"] = t.mom
    factory = OPTIMIZERS[t.opt]

    def opt_func(params: Any, lr: float) -> torch.optim.Optimizer:
        return factory(params, lr=lr, **opt_kw)

    opt_func.__name__ = t.opt  # shown by `status`
    loss_func = build_loss(config)
    metrics = text_kw["metrics"] or [METRICS[m] for m in t.metrics]
    split_name, splitter = splitter_for(config)
    if splitter is None and text_kw["splitter"] is not None:
        split_name, splitter = text_kw["splitter"]
    if splitter is not None:
        from labcon.nn.transfer import check_groups

        check_groups(model, splitter(model), f"splitter {split_name!r}")
        notes.append(f"param groups: {len(splitter(model))} ({split_name} splitter)")
    runner = Runner(
        model,
        dls,
        loss_func=loss_func,
        opt_func=opt_func,
        lr=t.lr,
        metrics=metrics,
        device=device,
        splitter=splitter,
    )
    if isinstance(t.schedule, tuple):  # [train.schedule]: run in every fit (fit_one_cycle keeps its lr, mom)
        runner.schedules = {k: parse_sched(v) for k, v in t.schedule if k != "policy"}
    try:
        runner.add_cbs([*build_callbacks(config, device), *text_kw["cbs"]])
    except ValueError as e:  # a callback that cannot work on this runner (e.g. monitors a metric it lacks)
        raise add_location(ConfigError(f"callbacks: {e}"), config) from None
    return Built(block, dls, model, runner, notes)
