"""Environments: vectorized, seeded, with Gymnasium 1.x NEXT_STEP autoreset.

``EnvFactory`` (classic control and any Gymnasium id), ``AtariFactory`` (ale-py's native
vector env), ``MinAtarFactory``, ``MuJoCoFactory`` and ``DMCFactory`` (the DeepMind Control
Suite); optional packages are imported only when an env needs them, and a missing one is a
one-line error naming its pip extra.
"""

from rlbench.envs.atari import AtariFactory
from rlbench.envs.dmc import DMCFactory
from rlbench.envs.factory import (
    EVAL_SEED_OFFSET,
    EnvFactory,
    check_env_id,
    random_actions,
)
from rlbench.envs.minatar import MinAtarFactory
from rlbench.envs.mujoco import MuJoCoFactory
from rlbench.envs.serial import SerialVectorEnv

__all__ = [
    "EVAL_SEED_OFFSET",
    "AtariFactory",
    "DMCFactory",
    "EnvFactory",
    "MinAtarFactory",
    "MuJoCoFactory",
    "SerialVectorEnv",
    "check_env_id",
    "random_actions",
]
