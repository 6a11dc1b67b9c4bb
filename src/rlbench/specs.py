"""What an algorithm declares to the code that steps envs: actors and data specs.

An algorithm (an ``RLModule``) never sees an env or a DataModule. It hands out **actors**
(``module.make_actor(num_envs=N, mode="train" | "eval")``): the training DataModule, every
evaluation and every video get their own, so an evaluation never disturbs the training
actor's state (exploration RNG, recurrent latent, planner mean). It declares what it
learns from with a **data spec** (``module.data_spec``), and the spec picks the DataModule
(``rlbench.data.datamodule_for``): n-step ``TransitionSpec`` and ``SequenceSpec`` are
served by the replay DataModule from one trajectory buffer, ``RolloutSpec`` by the
on-policy one. This module holds only those declarations, so algorithms depend on it and
not on the data side.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

ACTOR_MODES = ("train", "eval")


@runtime_checkable
class Actor(Protocol):
    """Turns a batch of observations into actions; the one call env-stepping code makes.

    ``act(obs (N, *obs_shape), *, first (N,) bool) -> actions (N, *action_shape)``:
    ``first[i]`` is true on env ``i``'s first observation of an episode (after a reset),
    where a stateful actor resets its per-env state (recurrent latent, planner warm start).
    A training actor reads the training clock ``env_step`` (set by the DataModule before
    each call) for its schedules (epsilon). ``state_dict`` / ``load_state_dict`` hold what
    must survive a resume (RNG, per-env state) as tensors and python values.
    """

    env_step: int

    def act(self, obs: np.ndarray, *, first: np.ndarray) -> np.ndarray: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class RolloutActor(Actor, Protocol):
    """An on-policy training actor: also gives the log-probabilities of its actions."""

    def act_with_log_prob(
        self, obs: np.ndarray, *, first: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(actions (N, *action_shape), log_prob (N,))`` sampled from the current policy."""
        ...


class MetricSink(Protocol):
    """Where a DataModule reports episode statistics (``rollout/*``): ``module.metrics``."""

    def add(self, name: str, value: Any) -> None: ...


@dataclass(frozen=True, kw_only=True)
class UpdateSchedule:
    """When a replay algorithm learns, in env steps whatever the env count.

    Nothing is learnt before ``learning_starts`` env steps, which are collected with
    uniformly random actions. From then on learning goes in phases, as Stable-Baselines3's
    ``train_freq`` / ``gradient_steps`` and CleanRL's ``train_frequency``: collect
    ``train_every`` env steps with the current policy, then take ``gradient_steps``
    gradient steps together. Every env step earns ``gradient_steps / train_every`` of them
    (the replay ratio); with N envs a phase collects whole vector steps and carries what it
    collected beyond ``train_every`` into the next, so the ratio holds for any
    ``env.num_envs``. ``initial_updates`` gradient steps are owed at once when learning
    starts (TD-MPC2's burst over its seed data).

    Phases, not updates spread one per ``train_every / gradient_steps`` env steps: the
    policy then stays fixed for ``train_every`` steps. On MountainCar with the zoo's DQN
    values (16 / 8) that is the difference between learning and not: spread, the policy
    changed every 2 env steps and never reached the flag in 120k steps on 5 seeds (-200);
    in phases it ended at -114.0 and -110.6 on seeds 0 and 1, as SB3 (-107.1, -113.7,
    -116.1 on seeds 0-2).
    """

    batch_size: int
    learning_starts: int
    train_every: int = 1
    gradient_steps: int = 1
    initial_updates: int = 0

    @property
    def ratio(self) -> float:
        """Gradient steps per env step."""
        return self.gradient_steps / self.train_every


@dataclass(frozen=True, kw_only=True)
class TransitionSpec(UpdateSchedule):
    """n-step transitions ``(s_t, a_t, R_t^(n), s_{t+n}, gamma^L)`` (see the buffer's
    ``gather``); ``n_step=None`` takes the buffer's ``buffer.n_step``."""

    gamma: float
    n_step: int | None = None


@dataclass(frozen=True, kw_only=True)
class SequenceSpec(UpdateSchedule):
    """Sequences of ``length`` steps ``(B, L, ...)`` with ``is_first``, ``is_terminal`` and a
    validity ``mask`` (see the buffer's ``sample_sequences``). ``within_episode``: every
    sequence lies inside one episode (TD-MPC2); otherwise sequences may span episode
    boundaries, marked by ``is_first`` (DreamerV3)."""

    length: int
    within_episode: bool = True


ReplaySpec = TransitionSpec  # the name the replay path had before sequences


@dataclass(frozen=True, kw_only=True)
class RolloutSpec:
    """What an on-policy module asks of the rollout DataModule.

    Args:
        mode: ``steps`` (fixed-length rollouts, GAE) or ``episodes`` (whole episodes,
            returns-to-go).
        num_steps: ``steps`` mode: vector steps per rollout (``T``; the batch has ``T * N``
            rows before autoreset rows are dropped).
        episodes: ``episodes`` mode: whole episodes per rollout, a multiple of
            ``env.num_envs``.
        group_size: ``episodes`` mode: consecutive episodes that start from the same reset
            seed (``episodes`` must be a multiple of it).
        epochs: passes over each rollout.
        minibatches: minibatches per pass (1: the whole batch).
        gamma: discount.
        gae_lambda: GAE lambda (``steps`` mode).
    """

    mode: str
    num_steps: int = 0
    episodes: int = 0
    group_size: int = 1
    epochs: int = 1
    minibatches: int = 1
    gamma: float = 0.99
    gae_lambda: float = 0.95
