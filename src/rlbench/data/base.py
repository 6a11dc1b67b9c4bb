"""What both DataModules share: the training envs and the stream state around them.

The current observations, NEXT_STEP autoreset flags, episode statistics, counters, the
env and RNG states and their checkpointing, and the iterable handed to Lightning. The
replay and rollout DataModules add what they yield (replay batches or on-policy rollouts).
"""

from __future__ import annotations

import pickle
import random
from collections.abc import Callable, Iterator
from typing import Any, cast

import lightning as L
import numpy as np
import torch

from rlbench.data.protocol import Actor, MetricSink
from rlbench.envs import EnvFactory
from rlbench.errors import CheckpointError


def global_rng_state() -> dict[str, Any]:
    """python / numpy-global / torch RNG states in a ``weights_only``-loadable form."""
    np_state = cast(tuple[Any, ...], np.random.get_state())
    return {
        "python": [*random.getstate()[1], random.getstate()[2]],
        "numpy": {
            "keys": torch.from_numpy(np_state[1].copy()),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }


def set_global_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((3, tuple(py[:-1]), py[-1]))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy(), n["pos"], n["has_gauss"], n["cached"]))
    torch.set_rng_state(state["torch"])


class _Stream:
    """Iterable handed to Lightning; each ``iter()`` continues from the DataModule's state."""

    def __init__(self, next_batch: Callable[[], dict[str, Any]]) -> None:
        self._next_batch = next_batch

    def __iter__(self) -> Iterator[dict[str, Any]]:
        while True:
            try:
                yield self._next_batch()
            except StopIteration:
                return


class EnvStreamDataModule(L.LightningDataModule):
    """Base of rlbench's DataModules: the only place a training env is stepped.

    Args:
        env: factory of the training vector env (``env.*``).
        seed: env ``i`` is reset with ``seed + i``; other generators derive from it.
        total_env_steps: the stream ends after this many env steps.
        rng_stream: distinguishes this DataModule's own generator from other ones.
        actor: the training actor; its state is part of this DataModule's checkpoint.
        metrics: where ``rollout/*`` episode statistics go.
    """

    def __init__(
        self,
        *,
        env: EnvFactory,
        seed: int,
        total_env_steps: int,
        rng_stream: int,
        actor: Actor,
        metrics: MetricSink,
    ) -> None:
        super().__init__()
        self.env_factory = env
        self.actor = actor
        self.metrics = metrics
        self.seed = seed
        self.total_env_steps = total_env_steps
        self.observation_space, self.action_space = env.spaces()
        self.envs: Any = None
        self.env_steps = 0
        # env steps are simulator steps: each env's agent step adds the env's action repeat
        self.step_multiplier = env.step_multiplier
        self.episodes = 0
        self.rng = np.random.default_rng([seed, rng_stream])
        self._restored_rng: dict[str, Any] | None = None
        self.loaded_state = False
        self.obs: np.ndarray = np.zeros(0)
        self.prev_done: np.ndarray = np.zeros(0, dtype=np.bool_)
        self.first: np.ndarray = np.zeros(0, dtype=np.bool_)  # obs is an episode's first
        self.ep_return: np.ndarray = np.zeros(0)
        self.ep_length: np.ndarray = np.zeros(0, dtype=np.int64)

    def start_envs(self, envs: Any) -> None:
        """Adopt a new vector env and reset it (env ``i`` with ``seed + i``)."""
        self.envs = envs
        n = envs.num_envs
        self.obs, _ = envs.reset(seed=self.seed)
        self.prev_done = np.zeros(n, dtype=np.bool_)
        self.first = np.ones(n, dtype=np.bool_)
        self.ep_return = np.zeros(n, dtype=np.float64)
        self.ep_length = np.zeros(n, dtype=np.int64)

    def train_dataloader(self) -> _Stream:
        return _Stream(self._next)

    def _next(self) -> dict[str, Any]:
        if self._restored_rng is not None:
            # Restored here, not in load_state_dict: Lightning draws from the global RNGs
            # between loading a checkpoint and the first batch of the new iterator.
            set_global_rng_state(self._restored_rng)
            self._restored_rng = None
        return self._next_batch()

    def _next_batch(self) -> dict[str, Any]:
        """The next batch for ``training_step``; raise StopIteration at the end."""
        raise NotImplementedError

    # ------------------------------------------------------------------ state
    def stream_state(self) -> dict[str, Any]:
        """Counters, envs, observations, episode statistics, the training actor's state and
        the RNGs (weights_only-safe)."""
        return {
            "env_steps": self.env_steps,
            "episodes": self.episodes,
            "envs": pickle.dumps(self.envs),
            "obs": torch.from_numpy(np.array(self.obs)),
            "prev_done": torch.from_numpy(self.prev_done.copy()),
            "first": torch.from_numpy(np.array(self.first, dtype=np.bool_)),
            "actor": self.actor.state_dict(),
            "ep_return": torch.from_numpy(self.ep_return.copy()),
            "ep_length": torch.from_numpy(self.ep_length.copy()),
            "rng": self.rng.bit_generator.state,
            "global_rng": global_rng_state(),
        }

    def load_stream_state(self, state: dict[str, Any]) -> None:
        """Inverse of ``stream_state``; the global RNGs are applied at the first batch."""
        self.env_steps = state["env_steps"]
        self.episodes = state["episodes"]
        if self.envs is not None:
            self.envs.close()
        self.envs = pickle.loads(state["envs"])
        self.obs = state["obs"].numpy()
        self.prev_done = state["prev_done"].numpy().copy()
        self.first = state["first"].numpy().copy()
        self.actor.load_state_dict(state["actor"])
        self.ep_return = state["ep_return"].numpy().copy()
        self.ep_length = state["ep_length"].numpy().copy()
        self.rng.bit_generator.state = state["rng"]
        self._restored_rng = state["global_rng"]

    def checkpoint_error(self, e: Exception) -> CheckpointError:
        return CheckpointError(f"checkpoint data state does not match this run: {e}")

    def teardown(self, stage: str) -> None:
        if self.envs is not None:
            self.envs.close()
