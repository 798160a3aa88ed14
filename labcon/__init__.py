"""labcon: a deep-learning lab console for the terminal, around a callback-driven training Runner.

Public names are imported on first use (PEP 562), so `labcon --help` or `labcon send` do not pay for
importing torch and the whole engine.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> (module, attribute)
_EXPORTS: dict[str, tuple[str, str]] = {
    "Adam": ("labcon.core.optim", "Adam"),
    "BatchNorm": ("labcon.nn.norms", "BatchNorm"),
    "Callback": ("labcon.core.events", "Callback"),
    "CallbackError": ("labcon.core.events", "CallbackError"),
    "CancelBatchException": ("labcon.core.events", "CancelBatchException"),
    "CancelEpochException": ("labcon.core.events", "CancelEpochException"),
    "CancelFitException": ("labcon.core.events", "CancelFitException"),
    "CancelTrainException": ("labcon.core.events", "CancelTrainException"),
    "CancelValidateException": ("labcon.core.events", "CancelValidateException"),
    "Config": ("labcon.session.config", "Config"),
    "DataBlock": ("labcon.data.block", "DataBlock"),
    "DataLoaders": ("labcon.data.loaders", "DataLoaders"),
    "DistributedCallback": ("labcon.core.distributed", "DistributedCallback"),
    "EarlyStopping": ("labcon.core.callbacks.monitor", "EarlyStopping"),
    "GeneralRelu": ("labcon.nn.layers", "GeneralRelu"),
    "GradientAccumulation": ("labcon.core.callbacks.guards", "GradientAccumulation"),
    "GradientClip": ("labcon.core.callbacks.guards", "GradientClip"),
    "GroupNorm": ("labcon.nn.norms", "GroupNorm"),
    "Hook": ("labcon.core.hooks", "Hook"),
    "HookRegistry": ("labcon.core.hooks", "HookRegistry"),
    "Hooks": ("labcon.core.hooks", "Hooks"),
    "InstanceNorm": ("labcon.nn.norms", "InstanceNorm"),
    "Journal": ("labcon.session.journal", "Journal"),
    "LAMB": ("labcon.core.optim", "LAMB"),
    "LRFindResult": ("labcon.core.callbacks.lr_finder", "LRFindResult"),
    "LabelSmoothingCrossEntropy": ("labcon.core.losses", "LabelSmoothingCrossEntropy"),
    "LayerNorm": ("labcon.nn.norms", "LayerNorm"),
    "MixedPrecision": ("labcon.core.callbacks.precision", "MixedPrecision"),
    "Mixup": ("labcon.core.callbacks.mixup", "Mixup"),
    "NaNGuard": ("labcon.core.callbacks.guards", "NaNGuard"),
    "Optimizer": ("labcon.core.optim", "Optimizer"),
    "ParamScheduler": ("labcon.core.callbacks.schedule", "ParamScheduler"),
    "Recorder": ("labcon.core.callbacks.recorder", "Recorder"),
    "ReduceLROnPlateau": ("labcon.core.callbacks.monitor", "ReduceLROnPlateau"),
    "Runner": ("labcon.core.runner", "Runner"),
    "RunningBatchNorm": ("labcon.nn.norms", "RunningBatchNorm"),
    "SGD": ("labcon.core.optim", "SGD"),
    "SaveBest": ("labcon.core.callbacks.monitor", "SaveBest"),
    "Session": ("labcon.session.session", "Session"),
    "Telemetry": ("labcon.core.telemetry", "Telemetry"),
    "accuracy": ("labcon.core.metrics", "accuracy"),
    "combine_scheds": ("labcon.core.schedules", "combine_scheds"),
    "cross_entropy": ("labcon.core.losses", "cross_entropy"),
    "error_rate": ("labcon.core.metrics", "error_rate"),
    "kaiming_init": ("labcon.nn.init", "kaiming_init"),
    "load_config": ("labcon.session.config", "load_config"),
    "lsuv_init": ("labcon.core.init", "lsuv_init"),
    "model_summary": ("labcon.core.summary", "model_summary"),
    "freeze_to": ("labcon.nn.transfer", "freeze_to"),
    "SPLITTERS": ("labcon.nn.transfer", "SPLITTERS"),
    "with_new_head": ("labcon.nn.transfer", "with_new_head"),
    "bce_with_logits": ("labcon.core.losses", "bce_with_logits"),
    "accuracy_multi": ("labcon.core.metrics", "accuracy_multi"),
    "parse_command": ("labcon.commands.grammar", "parse"),
    "parse_config": ("labcon.session.config", "parse_config"),
    "sched_cos": ("labcon.core.schedules", "sched_cos"),
    "sched_exp": ("labcon.core.schedules", "sched_exp"),
    "sched_lin": ("labcon.core.schedules", "sched_lin"),
    "sched_no": ("labcon.core.schedules", "sched_no"),
    "simple_cnn": ("labcon.nn.models", "simple_cnn"),
    "swap_norm": ("labcon.nn.norms", "swap_norm"),
    "xresnet18": ("labcon.nn.xresnet", "xresnet18"),
    "xresnet34": ("labcon.nn.xresnet", "xresnet34"),
    "xresnet50": ("labcon.nn.xresnet", "xresnet50"),
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Import a public name from its module the first time it is asked for."""
    try:
        module, attr = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'labcon' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
