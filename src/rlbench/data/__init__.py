"""DataModules: they own the training envs and stream batches to the module."""

from rlbench.data.base import EnvStreamDataModule, global_rng_state, set_global_rng_state
from rlbench.data.replay import ReplayDataModule

__all__ = ["EnvStreamDataModule", "ReplayDataModule", "global_rng_state", "set_global_rng_state"]
