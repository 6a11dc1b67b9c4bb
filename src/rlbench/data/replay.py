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
from collections.abc import Callable
from typing import Any, Protocol, cast

import numpy as np
import torch

from rlbench.buffers import TrajectoryReplayBuffer
from rlbench.data.base import EnvStreamDataModule
from rlbench.data.protocol import ReplaySpec
from rlbench.envs import EnvFactory, random_actions


class ReplayLearner(Protocol):
    """What the replay DataModule needs of its module (``RLModule`` with a replay schedule)."""

    replay_spec: ReplaySpec
    metrics: Any

    def act(self, obs: np.ndarray, *, explore: bool, env_step: int) -> np.ndarray: ...


class ReplayDataModule(EnvStreamDataModule):
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
        super().__init__(env=env, seed=seed, total_env_steps=total_env_steps, rng_stream=2)
        self.buffer_factory = buffer
        self.buffer: TrajectoryReplayBuffer | None = None
        self.pending_gradient_steps = 0

    # ------------------------------------------------------------------ setup
    def setup(self, stage: str) -> None:
        if self.envs is not None:
            return
        envs = self.env_factory.make()
        self.start_envs(envs)
        n = envs.num_envs
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
        self.buffer.start(self.obs)

    @property
    def module(self) -> ReplayLearner:
        assert self.trainer is not None
        return cast(ReplayLearner, self.trainer.lightning_module)

    # ------------------------------------------------------------------ stream
    def _next_batch(self) -> dict[str, Any]:
        spec: ReplaySpec = self.module.replay_spec
        assert self.buffer is not None
        while self.pending_gradient_steps == 0:
            if self.env_steps >= self.total_env_steps:
                assert self.trainer is not None
                self.trainer.should_stop = True
                raise StopIteration
            self._collect(spec)
            if self.env_steps >= spec.learning_starts and self.buffer.can_sample():
                self.pending_gradient_steps = spec.gradient_steps
        self.pending_gradient_steps -= 1
        batch = self.buffer.sample(spec.batch_size, n_step=self.buffer.n_step, gamma=spec.gamma)
        out: dict[str, Any] = {k: torch.from_numpy(v) for k, v in batch.items()}
        out["env_step"] = self.env_steps
        return out

    def _collect(self, spec: ReplaySpec) -> None:
        """Step the envs up to the next multiple of ``train_every`` env steps."""
        n = self.envs.num_envs
        target = min(
            (self.env_steps // spec.train_every + 1) * spec.train_every, self.total_env_steps
        )
        module, buffer = self.module, self.buffer
        assert buffer is not None
        # Episode statistics run on python lists within the phase: for the usual handful of
        # envs, scalar adds cost a fraction of numpy's per-call overhead on tiny arrays.
        # They are written back to the numpy arrays when the phase ends, before any checkpoint
        # (checkpoints are written between batches).
        ep_return, ep_length = self.ep_return.tolist(), self.ep_length.tolist()
        prev_done = self.prev_done.tolist()
        try:
            while self.env_steps < target:
                if self.env_steps < spec.learning_starts:
                    actions = random_actions(self.action_space, n, self.rng)
                else:
                    actions = module.act(self.obs, explore=True, env_step=self.env_steps)
                next_obs, reward, terminated, truncated, info = self.envs.step(actions)
                buffer.add(
                    action=actions,
                    reward=reward,
                    terminated=terminated,
                    truncated=truncated,
                    next_obs=next_obs,
                    ignored=self.prev_done,
                )
                done = terminated | truncated
                # episode statistics in the env's own units when it normalizes rewards
                rewards: list[float] = info.get("raw_reward", reward).tolist()
                if any(prev_done):  # envs that autoreset this step took no real step
                    stepped = list(zip(prev_done, ep_return, rewards, ep_length, strict=True))
                    ep_return = [g if p else g + r for p, g, r, _ in stepped]
                    ep_length = [k if p else k + 1 for p, _, _, k in stepped]
                else:
                    ep_return = [g + r for g, r in zip(ep_return, rewards, strict=True)]
                    ep_length = [k + 1 for k in ep_length]
                prev_done = done.tolist()
                if any(prev_done):
                    self._end_episodes(prev_done, ep_return, ep_length)
                self.prev_done = done
                self.obs = next_obs
                self.env_steps += n
        finally:
            self.ep_return = np.array(ep_return, dtype=np.float64)
            self.ep_length = np.array(ep_length, dtype=np.int64)

    def _end_episodes(self, done: list[bool], ep_return: list[float], ep_length: list[int]) -> None:
        """Log ``rollout/*`` for the envs whose episode ``done`` marks, and zero their sums."""
        metrics = self.module.metrics
        for i, d in enumerate(done):
            if d:
                metrics.add("rollout/episode_return", ep_return[i])
                metrics.add("rollout/episode_length", float(ep_length[i]))
                ep_return[i], ep_length[i] = 0.0, 0
                self.episodes += 1

    def update_priorities(self, indices: torch.Tensor, loss: torch.Tensor) -> None:
        """Forward per-sample losses to a prioritized buffer (no-op for uniform replay)."""
        assert self.buffer is not None
        if type(self.buffer).update is not TrajectoryReplayBuffer.update:
            self.buffer.update(indices.numpy(), loss.cpu().numpy())

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        assert self.buffer is not None
        return {
            **self.stream_state(),
            "pending_gradient_steps": self.pending_gradient_steps,
            "buffer": self.buffer.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        assert self.buffer is not None
        try:
            self.load_stream_state(state)
            self.pending_gradient_steps = state["pending_gradient_steps"]
            self.buffer.load_state_dict(state["buffer"])
        except (KeyError, ValueError, pickle.UnpicklingError) as e:
            raise self.checkpoint_error(e) from e
        if not self.buffer.started:  # buffer saved without contents (buffer.checkpoint=false)
            self.buffer.start(self.obs)
        self.loaded_state = True
