"""DataModules: they own the training envs and stream batches to the module.

``datamodule_for`` picks one from the algorithm's data spec: replay (n-step transitions or
sequences from a trajectory buffer) or on-policy rollouts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rlbench.data.base import EnvStreamDataModule, global_rng_state, set_global_rng_state
from rlbench.data.protocol import (
    Actor,
    PriorityHandle,
    SequenceSpec,
    TransitionSpec,
    UpdateSchedule,
)
from rlbench.data.replay import ReplayDataModule
from rlbench.data.rollout import RolloutDataModule, RolloutSpec
from rlbench.envs import EnvFactory

__all__ = [
    "Actor",
    "EnvStreamDataModule",
    "PriorityHandle",
    "ReplayDataModule",
    "RolloutDataModule",
    "RolloutSpec",
    "SequenceSpec",
    "TransitionSpec",
    "UpdateSchedule",
    "datamodule_for",
    "global_rng_state",
    "set_global_rng_state",
]


def datamodule_for(
    module: Any,
    *,
    env: EnvFactory,
    buffer: Callable[..., Any],
    seed: int,
    total_env_steps: int,
) -> EnvStreamDataModule:
    """The DataModule that serves ``module.data_spec`` with a fresh training actor.

    Args:
        module: a built ``RLModule`` (its spec, its actors, its metrics, its rollout hooks).
        env: factory of the training vector env.
        buffer: replay buffer partial (``buffer.*``); unused by on-policy specs.
        seed, total_env_steps: as the DataModules take them.
    """
    spec = module.data_spec
    actor = module.make_actor(num_envs=env.num_envs, mode="train")
    common: dict[str, Any] = {
        "env": env,
        "actor": actor,
        "metrics": module.metrics,
        "seed": seed,
        "total_env_steps": total_env_steps,
    }
    if isinstance(spec, RolloutSpec):
        return RolloutDataModule(spec=spec, learner=module, **common)
    if isinstance(spec, TransitionSpec | SequenceSpec):
        return ReplayDataModule(spec=spec, buffer=buffer, **common)
    raise TypeError(
        f"{type(module).__name__}.data_spec is a {type(spec).__name__}; expected "
        "TransitionSpec, SequenceSpec or RolloutSpec"
    )
