"""DataModules: they own the training envs and stream batches to the module."""

from rlbench.data.replay import ReplayDataModule, global_rng_state, set_global_rng_state

__all__ = ["ReplayDataModule", "global_rng_state", "set_global_rng_state"]
