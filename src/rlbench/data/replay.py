"""Off-policy data path: the DataModule steps the envs and streams replay batches.

The DataModule is the only thing that steps a training env. On each ``next()`` of its
stream it either yields another gradient batch of the current training phase, or first
collects ``train_every`` env steps with the module's current policy (uniformly random
before ``learning_starts``), then yields ``gradient_steps`` batches. All stream state --
envs, current observations, autoreset flags, counters, episode statistics, the buffer and
every RNG -- lives on the DataModule and is saved in checkpoints, so a resumed run
continues bit-identically from a new iterator.
"""

from __future__ import annotations

import pickle
import random
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol, cast

import lightning as L
import numpy as np
import torch

from rlbench.buffers import TrajectoryReplayBuffer
from rlbench.data.protocol import ReplaySpec
from rlbench.envs import EnvFactory, random_actions
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


class ReplayLearner(Protocol):
    """What the replay DataModule needs of its module (``RLModule`` with a replay schedule)."""

    replay_spec: ReplaySpec
    metrics: Any

    def act(self, obs: np.ndarray, *, explore: bool, env_step: int) -> np.ndarray: ...


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


class ReplayDataModule(L.LightningDataModule):
    """Owns the training envs and the replay buffer; yields n-step replay batches.

    Args:
        env: factory of the training vector env (``env.*``).
        buffer: partial ``(num_envs, obs_shape, obs_dtype, action_shape, action_dtype, seed)
            -> TrajectoryReplayBuffer`` (``buffer.*``).
        seed: env ``i`` is reset with ``seed + i``; other generators derive from it.
        total_env_steps: the stream ends after this many env steps.
    """

    def __init__(
        self,
        *,
        env: EnvFactory,
        buffer: Callable[..., TrajectoryReplayBuffer],
        seed: int,
        total_env_steps: int,
    ) -> None:
        super().__init__()
        self.env_factory = env
        self.buffer_factory = buffer
        self.seed = seed
        self.total_env_steps = total_env_steps
        self.observation_space, self.action_space = env.spaces()
        self.envs: Any = None
        self.buffer: TrajectoryReplayBuffer | None = None
        self.env_steps = 0
        self.episodes = 0
        self.pending_gradient_steps = 0
        self.rng = np.random.default_rng([seed, 2])
        self._restored_rng: dict[str, Any] | None = None
        self.loaded_state = False
        self._timer = {"collect_s": 0.0, "sample_s": 0.0}

    # ------------------------------------------------------------------ setup
    def setup(self, stage: str) -> None:
        if self.envs is not None:
            return
        self.envs = self.env_factory.make()
        n = self.envs.num_envs
        obs_space, act_space = self.observation_space, self.action_space
        assert obs_space.shape is not None and act_space.shape is not None
        self.buffer = self.buffer_factory(
            num_envs=n,
            obs_shape=tuple(obs_space.shape),
            obs_dtype=obs_space.dtype,
            action_shape=tuple(act_space.shape),
            action_dtype=act_space.dtype,
            seed=self.seed,
        )
        self.obs, _ = self.envs.reset(seed=self.seed)
        self.prev_done = np.zeros(n, dtype=np.bool_)
        self.ep_return = np.zeros(n, dtype=np.float64)
        self.ep_length = np.zeros(n, dtype=np.int64)
        self.buffer.start(self.obs)

    @property
    def module(self) -> ReplayLearner:
        assert self.trainer is not None
        return cast(ReplayLearner, self.trainer.lightning_module)

    def train_dataloader(self) -> _Stream:
        return _Stream(self._next_batch)

    # ------------------------------------------------------------------ stream
    def _next_batch(self) -> dict[str, Any]:
        if self._restored_rng is not None:
            # Restored here, not in load_state_dict: Lightning draws from the global RNGs
            # between loading a checkpoint and the first batch of the new iterator.
            set_global_rng_state(self._restored_rng)
            self._restored_rng = None
        spec: ReplaySpec = self.module.replay_spec
        assert self.buffer is not None
        while self.pending_gradient_steps == 0:
            if self.env_steps >= self.total_env_steps:
                assert self.trainer is not None
                self.trainer.should_stop = True
                raise StopIteration
            t0 = time.perf_counter()
            self._collect(spec)
            self._timer["collect_s"] += time.perf_counter() - t0
            if self.env_steps >= spec.learning_starts and self.buffer.can_sample():
                self.pending_gradient_steps = spec.gradient_steps
        self.pending_gradient_steps -= 1
        t0 = time.perf_counter()
        batch = self.buffer.sample(spec.batch_size, n_step=self.buffer.n_step, gamma=spec.gamma)
        out: dict[str, Any] = {k: torch.from_numpy(v) for k, v in batch.items()}
        out["env_step"] = self.env_steps
        self._timer["sample_s"] += time.perf_counter() - t0
        return out

    def _collect(self, spec: ReplaySpec) -> None:
        """Step the envs up to the next multiple of ``train_every`` env steps."""
        n = self.envs.num_envs
        target = min(
            (self.env_steps // spec.train_every + 1) * spec.train_every, self.total_env_steps
        )
        module, buffer = self.module, self.buffer
        assert buffer is not None
        while self.env_steps < target:
            if self.env_steps < spec.learning_starts:
                actions = random_actions(self.action_space, n, self.rng)
            else:
                actions = module.act(self.obs, explore=True, env_step=self.env_steps)
            next_obs, reward, terminated, truncated, _ = self.envs.step(actions)
            buffer.add(
                action=actions,
                reward=reward,
                terminated=terminated,
                truncated=truncated,
                next_obs=next_obs,
                ignored=self.prev_done,
            )
            self._track_episodes(reward, terminated | truncated)
            self.obs = next_obs
            self.env_steps += n

    def _track_episodes(self, reward: np.ndarray, done: np.ndarray) -> None:
        if not (done.any() or self.prev_done.any()):  # the common case, kept cheap
            self.ep_return += reward
            self.ep_length += 1
            self.prev_done = done
            return
        stepped = ~self.prev_done  # envs that autoreset this step took no real step
        self.ep_return[stepped] += reward[stepped]
        self.ep_length[stepped] += 1
        if done.any():
            for i in np.flatnonzero(done):
                self.module.metrics.add("rollout/episode_return", float(self.ep_return[i]))
                self.module.metrics.add("rollout/episode_length", float(self.ep_length[i]))
            self.episodes += int(done.sum())
            self.ep_return[done] = 0.0
            self.ep_length[done] = 0
        self.prev_done = done

    def update_priorities(self, indices: torch.Tensor, loss: torch.Tensor) -> None:
        """Forward per-sample losses to a prioritized buffer (no-op for uniform replay)."""
        assert self.buffer is not None
        if type(self.buffer).update is not TrajectoryReplayBuffer.update:
            self.buffer.update(indices.numpy(), loss.cpu().numpy())

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        assert self.buffer is not None
        return {
            "env_steps": self.env_steps,
            "episodes": self.episodes,
            "pending_gradient_steps": self.pending_gradient_steps,
            "envs": pickle.dumps(self.envs),
            "obs": torch.from_numpy(np.array(self.obs)),
            "prev_done": torch.from_numpy(self.prev_done.copy()),
            "ep_return": torch.from_numpy(self.ep_return.copy()),
            "ep_length": torch.from_numpy(self.ep_length.copy()),
            "rng": self.rng.bit_generator.state,
            "global_rng": global_rng_state(),
            "buffer": self.buffer.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        assert self.buffer is not None
        try:
            self.env_steps = state["env_steps"]
            self.episodes = state["episodes"]
            self.pending_gradient_steps = state["pending_gradient_steps"]
            self.envs.close()
            self.envs = pickle.loads(state["envs"])
            self.obs = state["obs"].numpy()
            self.prev_done = state["prev_done"].numpy().copy()
            self.ep_return = state["ep_return"].numpy().copy()
            self.ep_length = state["ep_length"].numpy().copy()
            self.rng.bit_generator.state = state["rng"]
            self._restored_rng = state["global_rng"]
            self.buffer.load_state_dict(state["buffer"])
        except (KeyError, ValueError, pickle.UnpicklingError) as e:
            raise CheckpointError(f"checkpoint data state does not match this run: {e}") from e
        if not self.buffer.started:  # buffer saved without contents (buffer.checkpoint=false)
            self.buffer.start(self.obs)
        self.loaded_state = True

    def teardown(self, stage: str) -> None:
        if self.envs is not None:
            self.envs.close()
