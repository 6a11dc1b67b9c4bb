"""Environments: vectorized, seeded, with Gymnasium 1.x NEXT_STEP autoreset."""

from rlbench.envs.factory import (
    EVAL_SEED_OFFSET,
    EnvFactory,
    check_env_id,
    random_actions,
)
from rlbench.envs.serial import SerialVectorEnv

__all__ = ["EVAL_SEED_OFFSET", "EnvFactory", "SerialVectorEnv", "check_env_id", "random_actions"]
