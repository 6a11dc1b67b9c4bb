"""What callbacks and the data side share: the DataModule protocol and priority handles.

The declarations an algorithm makes (actors, data specs) live in ``rlbench.specs`` and are
re-exported here.
"""

from __future__ import annotations

from typing import Any, Protocol, cast

import lightning as L
import numpy as np

from rlbench.specs import (
    ACTOR_MODES,
    Actor,
    MetricSink,
    ReplaySpec,
    RolloutActor,
    RolloutSpec,
    SequenceSpec,
    TransitionSpec,
    UpdateSchedule,
)

__all__ = [
    "ACTOR_MODES",
    "Actor",
    "EnvStream",
    "MetricSink",
    "PriorityHandle",
    "ReplaySpec",
    "RolloutActor",
    "RolloutSpec",
    "SequenceSpec",
    "TransitionSpec",
    "UpdateSchedule",
    "datamodule_of",
]


class EnvStream(Protocol):
    """A DataModule that steps training envs: the x-axis of every log is ``env_steps``."""

    env_steps: int
    observation_space: Any
    action_space: Any


def datamodule_of(trainer: L.Trainer) -> EnvStream:
    """The trainer's DataModule (Lightning attaches it dynamically, so mypy cannot see it)."""
    dm = getattr(trainer, "datamodule", None)
    if dm is None:
        raise RuntimeError("rlbench modules and callbacks need a DataModule passed to fit()")
    return cast(EnvStream, dm)


class PriorityHandle:
    """Rides in a prioritized replay batch (``batch["priorities"]``): the module hands the
    new per-sample priorities back through it, without knowing the buffer or DataModule."""

    __slots__ = ("_buffer", "indices")

    def __init__(self, buffer: Any, indices: np.ndarray) -> None:
        self._buffer = buffer
        self.indices = indices

    def update(self, priorities: Any) -> None:
        """``priorities (B,)`` (tensor or array) for the sampled transitions, in order."""
        values = priorities.detach().cpu().numpy() if hasattr(priorities, "detach") else priorities
        self._buffer.update(self.indices, np.asarray(values))
