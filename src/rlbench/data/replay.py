"""Off-policy data path: the DataModule steps the envs and streams replay batches.

The DataModule is the only thing that steps a training env. On each ``next()`` of its
stream it either yields another batch owed by the algorithm's update schedule, or first
collects more env steps with its training actor (uniformly random actions before
``learning_starts``). What a batch holds follows the algorithm's data spec: n-step
transitions (``TransitionSpec``) or sequences (``SequenceSpec``), both served by one
trajectory buffer. All stream state -- envs, current observations, autoreset flags,
counters, episode statistics, the buffer, the actor's state and every RNG -- lives on the
DataModule and is saved in checkpoints, so a resumed run continues bit-identically from a
new iterator.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from rlbench.buffers import TrajectoryReplayBuffer
from rlbench.data.base import EnvStreamDataModule
from rlbench.data.protocol import Actor, MetricSink, PriorityHandle, SequenceSpec, TransitionSpec
from rlbench.envs import EnvFactory, random_actions


class ReplayDataModule(EnvStreamDataModule):
    """Owns the training envs and the replay buffer; yields replay batches.

    Args:
        env: factory of the training vector env (``env.*``).
        buffer: partial ``(num_envs, obs_shape, obs_dtype, action_shape, action_dtype, seed)
            -> TrajectoryReplayBuffer`` (``buffer.*``).
        spec: what the algorithm learns from, and when (``module.data_spec``).
        actor: the training actor (``module.make_actor(num_envs=N, mode="train")``).
        metrics: where ``rollout/*`` episode statistics go (``module.metrics``).
        seed: env ``i`` is reset with ``seed + i``; other generators derive from it.
        total_env_steps: the stream ends after this many env steps.
    """

    def __init__(
        self,
        *,
        env: EnvFactory,
        buffer: Callable[..., TrajectoryReplayBuffer],
        spec: TransitionSpec | SequenceSpec,
        actor: Actor,
        metrics: MetricSink,
        seed: int,
        total_env_steps: int,
    ) -> None:
        super().__init__(
            env=env,
            seed=seed,
            total_env_steps=total_env_steps,
            rng_stream=2,
            actor=actor,
            metrics=metrics,
        )
        self.buffer_factory = buffer
        self.spec = spec
        self.buffer: TrajectoryReplayBuffer | None = None
        self.owed_updates = 0  # gradient steps earned and not yet yielded
        self.update_credit = 0  # earned fractions of a gradient step, in 1/train_every
        self._sampleable = False  # derived from the buffer, not saved

    # ------------------------------------------------------------------ setup
    def setup(self, stage: str) -> None:
        if self.envs is not None:
            return
        envs = self.env_factory.make()
        self.start_envs(envs)
        obs_space, act_space = self.observation_space, self.action_space
        assert obs_space.shape is not None and act_space.shape is not None
        self.buffer = self.buffer_factory(
            num_envs=envs.num_envs,
            obs_shape=tuple(obs_space.shape),
            obs_dtype=obs_space.dtype,
            action_shape=tuple(act_space.shape),
            action_dtype=act_space.dtype,
            seed=self.seed,
        )
        self.buffer.start(self.obs)

    # ------------------------------------------------------------------ stream
    def _can_sample(self) -> bool:
        """Whether the buffer holds the spec's data (a transition's n-step window, a whole
        sequence). Checked until it first does, then kept: the check can cost a scan, and
        a buffer that held windows only loses them all if every later episode is shorter
        than one, which the sampler then reports as an error."""
        if self._sampleable:
            return True
        assert self.buffer is not None
        spec = self.spec
        if isinstance(spec, SequenceSpec):
            self._sampleable = self.buffer.can_sample_sequences(spec.length, spec.within_episode)
        else:
            self._sampleable = self.buffer.can_sample(spec.n_step)
        return self._sampleable

    def _next_batch(self) -> dict[str, Any]:
        spec, buffer = self.spec, self.buffer
        assert buffer is not None
        while self.owed_updates == 0 or not self._can_sample():
            if self.env_steps >= self.total_env_steps:
                assert self.trainer is not None
                self.trainer.should_stop = True
                raise StopIteration
            self._collect(spec)
        self.owed_updates -= 1
        if isinstance(spec, SequenceSpec):
            batch = buffer.sample_sequences(
                spec.batch_size, length=spec.length, within_episode=spec.within_episode
            )
        else:
            n = spec.n_step or buffer.n_step
            batch = buffer.sample(spec.batch_size, n_step=n, gamma=spec.gamma)
        out: dict[str, Any] = {k: torch.from_numpy(v) for k, v in batch.items()}
        if type(buffer).update is not TrajectoryReplayBuffer.update:  # a priority rule
            out["priorities"] = PriorityHandle(buffer, batch["indices"])
        out["env_step"] = self.env_steps
        return out

    def _phase_target(self, spec: TransitionSpec | SequenceSpec) -> int:
        """The env step at which this collect phase ends: ``learning_starts`` while the
        data is random, else once ``train_every`` env steps (less what earlier phases left
        over) have earned the phase's ``gradient_steps``, which are then paid together."""
        n = self.envs.num_envs * self.step_multiplier  # env steps per vector step
        if self.env_steps < spec.learning_starts:
            target = spec.learning_starts
        else:
            # credit counts gradient_steps per env step; a phase ends on earning g of them
            per_vector_step = n * spec.gradient_steps
            left = spec.train_every * spec.gradient_steps - self.update_credit
            vector_steps = -(-left // per_vector_step)
            target = self.env_steps + max(vector_steps, 1) * n
        return min(target, self.total_env_steps)

    def _collect(self, spec: TransitionSpec | SequenceSpec) -> None:
        """Step the envs to the end of the current phase and earn the gradient steps owed
        for what was collected from ``learning_starts`` on."""
        n = self.envs.num_envs
        stride = n * self.step_multiplier  # env steps per vector step
        start, target = self.env_steps, self._phase_target(spec)
        actor, buffer, step = self.actor, self.buffer, self.envs.step
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
                    actor.env_step = self.env_steps
                    actions = actor.act(self.obs, first=self.first)
                next_obs, reward, terminated, truncated, info = step(actions)
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
                self.first = self.prev_done  # an env that autoreset now sees a first obs
                self.prev_done = done
                self.obs = next_obs
                self.env_steps += stride
        finally:
            self.ep_return = np.array(ep_return, dtype=np.float64)
            self.ep_length = np.array(ep_length, dtype=np.int64)
        if start < spec.learning_starts <= self.env_steps:
            self.owed_updates += spec.initial_updates
        learnt = self.env_steps - max(start, spec.learning_starts)
        if learnt > 0:
            self.update_credit += learnt * spec.gradient_steps
            self.owed_updates += self.update_credit // spec.train_every
            self.update_credit %= spec.train_every

    def _end_episodes(self, done: list[bool], ep_return: list[float], ep_length: list[int]) -> None:
        """Log ``rollout/*`` for the envs whose episode ``done`` marks, and zero their sums."""
        metrics = self.metrics
        for i, d in enumerate(done):
            if d:
                metrics.add("rollout/episode_return", ep_return[i])
                metrics.add("rollout/episode_length", float(ep_length[i]))
                ep_return[i], ep_length[i] = 0.0, 0
                self.episodes += 1

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        assert self.buffer is not None
        return {
            **self.stream_state(),
            "owed_updates": self.owed_updates,
            "update_credit": self.update_credit,
            "buffer": self.buffer.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        assert self.buffer is not None
        try:
            self.load_stream_state(state)
            self.owed_updates = state["owed_updates"]
            self.update_credit = state["update_credit"]
            self.buffer.load_state_dict(state["buffer"])
        except (KeyError, ValueError, TypeError, pickle.UnpicklingError) as e:
            raise self.checkpoint_error(e) from e
        if not self.buffer.started:  # buffer saved without contents (buffer.checkpoint=false)
            self.buffer.start(self.obs)
        self.loaded_state = True
