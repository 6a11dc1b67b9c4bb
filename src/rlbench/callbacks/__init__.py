"""Callbacks: evaluation, metric flushing, checkpoints, progress."""

from rlbench.callbacks.checkpoint import CheckpointCallback
from rlbench.callbacks.evaluation import EvalCallback, evaluate
from rlbench.callbacks.logging import MetricsFlush
from rlbench.callbacks.progress import EnvStepProgressBar

__all__ = ["CheckpointCallback", "EnvStepProgressBar", "EvalCallback", "MetricsFlush", "evaluate"]
