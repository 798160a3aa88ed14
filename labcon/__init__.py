"""labcon: a deep-learning lab console for the terminal, around a callback-driven training Runner."""

from labcon.core.callbacks.guards import GradientAccumulation, GradientClip, NaNGuard
from labcon.core.callbacks.lr_finder import LRFindResult
from labcon.core.callbacks.mixup import Mixup
from labcon.core.callbacks.monitor import EarlyStopping, ReduceLROnPlateau, SaveBest
from labcon.core.callbacks.precision import MixedPrecision
from labcon.core.callbacks.recorder import Recorder
from labcon.core.callbacks.schedule import ParamScheduler
from labcon.core.events import (
    Callback,
    CallbackError,
    CancelBatchException,
    CancelEpochException,
    CancelFitException,
    CancelTrainException,
    CancelValidateException,
)
from labcon.core.losses import LabelSmoothingCrossEntropy, cross_entropy
from labcon.core.metrics import accuracy, error_rate
from labcon.core.optim import LAMB, SGD, Adam, Optimizer
from labcon.core.runner import Runner
from labcon.core.schedules import combine_scheds, sched_cos, sched_exp, sched_lin, sched_no
from labcon.data.loaders import DataLoaders

__version__ = "0.1.0"

__all__ = [
    "LAMB",
    "SGD",
    "Adam",
    "Callback",
    "CallbackError",
    "CancelBatchException",
    "CancelEpochException",
    "CancelFitException",
    "CancelTrainException",
    "CancelValidateException",
    "DataLoaders",
    "EarlyStopping",
    "GradientAccumulation",
    "GradientClip",
    "LRFindResult",
    "LabelSmoothingCrossEntropy",
    "MixedPrecision",
    "Mixup",
    "NaNGuard",
    "Optimizer",
    "ParamScheduler",
    "Recorder",
    "ReduceLROnPlateau",
    "Runner",
    "SaveBest",
    "accuracy",
    "combine_scheds",
    "cross_entropy",
    "error_rate",
    "sched_cos",
    "sched_exp",
    "sched_lin",
    "sched_no",
]
