"""Training harness: NNX train state, jitted steps on a mesh, loop, checkpoints, metrics."""

from augpar.train.checkpoint import Checkpointer
from augpar.train.loop import LoopConfig, NonFiniteLossError, TrainResult, evaluate, train
from augpar.train.metrics import (
    MetricsWriter,
    plot_curves,
    plot_runs,
    read_metrics,
    save_figure,
    write_config,
)
from augpar.train.optim import adamw_cosine
from augpar.train.state import TrainState, create_train_state, merge_model, weight_decay_mask
from augpar.train.step import (
    classification_eval,
    classification_loss,
    make_eval_step,
    make_train_step,
)

__all__ = [
    "adamw_cosine",
    "Checkpointer",
    "LoopConfig",
    "MetricsWriter",
    "NonFiniteLossError",
    "TrainResult",
    "TrainState",
    "classification_eval",
    "classification_loss",
    "create_train_state",
    "evaluate",
    "make_eval_step",
    "make_train_step",
    "merge_model",
    "plot_curves",
    "plot_runs",
    "read_metrics",
    "save_figure",
    "train",
    "weight_decay_mask",
    "write_config",
]
