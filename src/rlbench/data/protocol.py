"""What callbacks and modules may ask of any rlbench DataModule."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, cast

import lightning as L


@dataclass(frozen=True, kw_only=True)
class ReplaySpec:
    """What an off-policy module asks of the replay DataModule.

    ``train_every`` env steps are collected, then ``gradient_steps`` batches of
    ``batch_size`` n-step transitions are yielded; nothing is yielded before
    ``learning_starts`` env steps (collected with uniformly random actions).
    """

    batch_size: int
    learning_starts: int
    train_every: int
    gradient_steps: int
    gamma: float


class EnvStream(Protocol):
    """A DataModule that steps training envs: the x-axis of every log is ``env_steps``."""

    env_steps: int
    observation_space: Any
    action_space: Any

    def update_priorities(self, indices: Any, loss: Any) -> None: ...


def datamodule_of(trainer: L.Trainer) -> EnvStream:
    """The trainer's DataModule (Lightning attaches it dynamically, so mypy cannot see it)."""
    dm = getattr(trainer, "datamodule", None)
    if dm is None:
        raise RuntimeError("rlbench modules and callbacks need a DataModule passed to fit()")
    return cast(EnvStream, dm)
