"""Training an RNN cell briefly: settings, data, loop, checkpoints and the trained proxy."""

from nas_engine.errors import TrainingConfigError
from nas_engine.training import resolve_training_device

from ..recipe import RecipeError
from .checkpoints import TrainedModel, load_checkpoint, save_checkpoint
from .data import TrainingData, prepare_data
from .loop import (
    build_model,
    evaluate,
    forward,
    locked_dropout_mask,
    train_architecture,
    weight_drop,
    windows_per_epoch,
)
from .outcome import TrainingOutcome
from .proxy import ProxyTraining
from .recipe import TrainingRecipe

__all__ = [
    "ProxyTraining",
    "RecipeError",
    "TrainedModel",
    "TrainingConfigError",
    "TrainingData",
    "TrainingOutcome",
    "TrainingRecipe",
    "build_model",
    "evaluate",
    "forward",
    "locked_dropout_mask",
    "weight_drop",
    "windows_per_epoch",
    "load_checkpoint",
    "prepare_data",
    "resolve_training_device",
    "save_checkpoint",
    "train_architecture",
]
