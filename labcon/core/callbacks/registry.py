"""Callbacks a user can add by name (console `cb add NAME`, config [[callbacks]])."""

from __future__ import annotations

from labcon.core.callbacks.guards import GradientAccumulation, GradientClip, NaNGuard
from labcon.core.callbacks.mixup import Mixup
from labcon.core.callbacks.monitor import EarlyStopping, ReduceLROnPlateau, SaveBest
from labcon.core.callbacks.precision import MixedPrecision
from labcon.core.callbacks.rnn import RNNTrainer
from labcon.core.callbacks.speed import ChannelsLast, Compile
from labcon.core.events import Callback
from labcon.core.telemetry import Telemetry

CALLBACKS: dict[str, type[Callback]] = {
    "mixup": Mixup,
    "early_stopping": EarlyStopping,
    "save_best": SaveBest,
    "reduce_lr_on_plateau": ReduceLROnPlateau,
    "gradient_clip": GradientClip,
    "gradient_accumulation": GradientAccumulation,
    "mixed_precision": MixedPrecision,
    "nan_guard": NaNGuard,
    "telemetry": Telemetry,
    "rnn_trainer": RNNTrainer,
    "channels_last": ChannelsLast,
    "compile": Compile,
}
