"""labcon: a deep-learning lab console for the terminal, around a callback-driven training Runner."""

from labcon.control.commands import parse as parse_command
from labcon.core.callbacks.guards import GradientAccumulation, GradientClip, NaNGuard
from labcon.core.callbacks.lr_finder import LRFindResult
from labcon.core.callbacks.mixup import Mixup
from labcon.core.callbacks.monitor import EarlyStopping, ReduceLROnPlateau, SaveBest
from labcon.core.callbacks.precision import MixedPrecision
from labcon.core.callbacks.recorder import Recorder
from labcon.core.callbacks.schedule import ParamScheduler
from labcon.core.distributed import DistributedCallback
from labcon.core.events import (
    Callback,
    CallbackError,
    CancelBatchException,
    CancelEpochException,
    CancelFitException,
    CancelTrainException,
    CancelValidateException,
)
from labcon.core.hooks import Hook, HookRegistry, Hooks
from labcon.core.init import kaiming_init, lsuv_init
from labcon.core.losses import LabelSmoothingCrossEntropy, cross_entropy
from labcon.core.metrics import accuracy, error_rate
from labcon.core.optim import LAMB, SGD, Adam, Optimizer
from labcon.core.runner import Runner
from labcon.core.schedules import combine_scheds, sched_cos, sched_exp, sched_lin, sched_no
from labcon.core.telemetry import Telemetry
from labcon.data.block import DataBlock
from labcon.data.loaders import DataLoaders
from labcon.nn.layers import GeneralRelu
from labcon.nn.models import simple_cnn
from labcon.nn.norms import BatchNorm, GroupNorm, InstanceNorm, LayerNorm, RunningBatchNorm, swap_norm
from labcon.nn.xresnet import xresnet18, xresnet34, xresnet50
from labcon.session.config import Config, load_config, parse_config
from labcon.session.journal import Journal
from labcon.session.session import Session

__version__ = "0.1.0"

__all__ = [
    "BatchNorm",
    "Config",
    "DataBlock",
    "DistributedCallback",
    "GeneralRelu",
    "GroupNorm",
    "Hook",
    "HookRegistry",
    "Hooks",
    "InstanceNorm",
    "Journal",
    "LayerNorm",
    "RunningBatchNorm",
    "Session",
    "Telemetry",
    "kaiming_init",
    "load_config",
    "lsuv_init",
    "parse_command",
    "parse_config",
    "simple_cnn",
    "swap_norm",
    "xresnet18",
    "xresnet34",
    "xresnet50",
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
