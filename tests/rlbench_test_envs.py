"""Small envs for tests, registered on import (use ids like ``rlbench_test_envs:Counter-v0``).

``Counter-v0`` emits observations that encode ``(episode, t)`` so tests can check that no
replay transition crosses an episode boundary; ``NaNReward-v0`` returns a NaN reward after
``nan_after`` steps to exercise the non-finite-loss guard.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np


class CounterEnv(gym.Env[np.ndarray, int]):
    """obs = [episode_id, t, reset_seed]; reward = t; terminates at ``length`` or at random."""

    def __init__(self, length: int = 7, terminate_prob: float = 0.1) -> None:
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(3,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.length = length
        self.terminate_prob = terminate_prob
        self.episode = -1
        self.t = 0

    def _obs(self) -> np.ndarray:
        return np.array([self.episode, self.t, 0.0], dtype=np.float32)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.episode += 1
        self.t = 0
        return self._obs(), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self.t += 1
        terminated = bool(self.np_random.random() < self.terminate_prob) or self.t >= self.length
        return self._obs(), float(self.t), terminated, False, {}


class NaNRewardEnv(gym.Env[np.ndarray, int]):
    """CartPole-like shapes; reward becomes NaN after ``nan_after`` total steps."""

    def __init__(self, nan_after: int = 700) -> None:
        self.observation_space = gym.spaces.Box(-1.0, 1.0, shape=(4,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.nan_after = nan_after
        self.steps = 0

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        return self.np_random.uniform(-1, 1, size=4).astype(np.float32), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self.steps += 1
        reward = float("nan") if self.steps > self.nan_after else 1.0
        obs = self.np_random.uniform(-1, 1, size=4).astype(np.float32)
        return obs, reward, bool(self.np_random.random() < 0.05), False, {}


gym.register("Counter-v0", entry_point=CounterEnv, max_episode_steps=5)
gym.register("NaNReward-v0", entry_point=NaNRewardEnv)
