"""Running observation and reward normalization of vector envs, for every env family with
vector observations (classic control, Box2D, MuJoCo, DeepMind Control).

Stable-Baselines3's ``VecNormalize`` and Gymnasium's ``NormalizeObservation`` /
``NormalizeReward``, as one vector-env wrapper whose statistics are part of its pickled
state, so every checkpoint holds them. ``EnvFactory`` applies it where
``env.normalize_obs`` or ``env.normalize_reward`` is set; evaluation envs take a frozen copy
of the training envs' observation moments and see raw rewards.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv


# ------------------------------------------------------------------ running moments
def merge_moments(
    mean: np.ndarray,
    var: np.ndarray,
    count: float,
    batch: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Merge a batch ``(B, *shape)`` into running ``(mean, var, count)`` (Chan et al. 1979,
    the parallel variance update; population variance). Returns the new triple."""
    b_count = batch.shape[0]
    b_mean = batch.mean(axis=0)
    b_var = batch.var(axis=0)
    delta = b_mean - mean
    total = count + b_count
    new_mean = mean + delta * (b_count / total)
    m2 = var * count + b_var * b_count + delta**2 * (count * b_count / total)
    return new_mean, m2 / total, total


@dataclass
class RunningMoments:
    """Running mean and variance of a stream of arrays of ``shape`` (float64), starting at
    mean 0, variance 1 and a tiny prior count like Gymnasium's ``RunningMeanStd``."""

    shape: tuple[int, ...]
    mean: np.ndarray = field(init=False)
    var: np.ndarray = field(init=False)
    count: float = 1e-4

    def __post_init__(self) -> None:
        self.mean = np.zeros(self.shape, dtype=np.float64)
        self.var = np.ones(self.shape, dtype=np.float64)

    def update(self, batch: np.ndarray) -> None:
        """Merge ``batch`` ``(B, *shape)``."""
        self.mean, self.var, self.count = merge_moments(
            self.mean, self.var, self.count, np.asarray(batch, dtype=np.float64)
        )

    def copy(self) -> RunningMoments:
        new = RunningMoments(self.shape, count=self.count)
        new.mean, new.var = self.mean.copy(), self.var.copy()
        return new


def normalize(x: np.ndarray, moments: RunningMoments, *, clip: float, eps: float) -> np.ndarray:
    """``clip((x - mean) / sqrt(var + eps), -clip, clip)``."""
    return np.clip((x - moments.mean) / np.sqrt(moments.var + eps), -clip, clip)


def scale_rewards(
    reward: np.ndarray, returns: RunningMoments, *, clip: float, eps: float
) -> np.ndarray:
    """``clip(reward / sqrt(var(discounted return) + eps), -clip, clip)`` (no centring)."""
    return np.clip(reward / np.sqrt(returns.var + eps), -clip, clip)


# ------------------------------------------------------------------ normalization
class NormalizeVectorEnv(VectorEnv):
    """Observation and reward normalization around a vector env with NEXT_STEP autoreset.

    Observations (reset ones too) update ``obs_moments`` and are standardized with them;
    rewards are divided by the standard deviation of the per-env discounted return
    ``R_t = gamma * R_{t-1} + r_t`` (restarted after an episode ends). ``update=False``
    freezes the moments (evaluation). Picklable when the wrapped env is: the moments are
    part of its state.

    Args:
        env: the vector env to wrap.
        normalize_obs, normalize_reward: which normalization to apply.
        gamma: discount of the return whose spread scales rewards.
        clip_obs, clip_reward: bounds of the normalized values.
        epsilon: added to variances before the square root.
        obs_moments: start from these moments (a copy is taken), e.g. the training envs'.
        update: update the moments with what the env returns.
    """

    metadata: dict[str, Any] = {"autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(
        self,
        env: VectorEnv,
        *,
        normalize_obs: bool,
        normalize_reward: bool,
        gamma: float = 0.99,
        clip_obs: float = 10.0,
        clip_reward: float = 10.0,
        epsilon: float = 1e-8,
        obs_moments: RunningMoments | None = None,
        update: bool = True,
    ) -> None:
        self.env = env
        self.num_envs = env.num_envs
        self.single_observation_space = env.single_observation_space
        self.single_action_space = env.single_action_space
        self.observation_space = env.observation_space
        self.action_space = env.action_space
        self.spec = env.spec
        self.normalize_obs = normalize_obs
        self.normalize_reward = normalize_reward
        self.gamma = gamma
        self.clip_obs = clip_obs
        self.clip_reward = clip_reward
        self.epsilon = epsilon
        self.update = update
        shape = tuple(env.single_observation_space.shape or ())
        self.obs_moments = obs_moments.copy() if obs_moments else RunningMoments(shape)
        self.return_moments = RunningMoments(())
        self.returns = np.zeros(self.num_envs, dtype=np.float64)
        self.prev_done = np.zeros(self.num_envs, dtype=np.bool_)

    def _obs(self, obs: np.ndarray) -> np.ndarray:
        if not self.normalize_obs:
            return obs
        if self.update:
            self.obs_moments.update(obs)
        out = normalize(obs, self.obs_moments, clip=self.clip_obs, eps=self.epsilon)
        return out.astype(obs.dtype, copy=False)

    def reset(
        self,
        *,
        seed: int | Sequence[int | None] | None = None,
        options: dict[str, Any] | None = None,
    ) -> tuple[np.ndarray, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)  # type: ignore[arg-type]
        self.returns[:] = 0.0
        self.prev_done[:] = False
        return self._obs(obs), info

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(actions)
        if self.normalize_reward:
            raw = np.asarray(reward, dtype=np.float64)
            self.returns = np.where(self.prev_done, 0.0, self.returns * self.gamma) + raw
            if self.update:
                self.return_moments.update(self.returns)
            reward = scale_rewards(
                raw, self.return_moments, clip=self.clip_reward, eps=self.epsilon
            )
            info = {**info, "raw_reward": raw}
        self.prev_done = terminated | truncated
        return self._obs(obs), reward, terminated, truncated, info

    def close_extras(self, **kwargs: Any) -> None:
        self.env.close()
