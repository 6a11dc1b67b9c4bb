"""MuJoCo: running moments, normalization, exact pickles, evaluation stats, errors."""

from __future__ import annotations

import pickle
import sys
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from rlbench.envs.mujoco import (
    TASKS,
    MuJoCoFactory,
    NormalizeVectorEnv,
    RunningMoments,
    merge_moments,
    normalize,
    scale_rewards,
)
from rlbench.envs.serial import SerialVectorEnv
from rlbench.errors import ConfigError


def test_merge_moments_hand_case() -> None:
    # running: {1, 3} -> mean 2, var 1, count 2; batch {5, 7, 9} -> all five: mean 5, var 8
    mean, var, count = merge_moments(
        np.array([2.0]), np.array([1.0]), 2.0, np.array([[5.0], [7.0], [9.0]])
    )
    assert (mean[0], var[0], count) == pytest.approx((5.0, 8.0, 5.0))


def test_running_moments_match_numpy_over_a_stream() -> None:
    data = np.random.default_rng(0).normal(3.0, 2.0, size=(40, 5))
    moments = RunningMoments((5,), count=0.0 + 1e-12)
    for chunk in np.split(data, [3, 10, 11, 25]):
        moments.update(chunk)
    np.testing.assert_allclose(moments.mean, data.mean(axis=0), rtol=1e-9)
    np.testing.assert_allclose(moments.var, data.var(axis=0), rtol=1e-6)


def test_normalize_and_scale_hand_cases() -> None:
    m = RunningMoments((2,))
    m.mean, m.var = np.array([1.0, -1.0]), np.array([4.0, 0.25])
    out = normalize(np.array([[3.0, -1.5], [100.0, 0.0]]), m, clip=5.0, eps=0.0)
    np.testing.assert_allclose(out, [[1.0, -1.0], [5.0, 2.0]])
    r = RunningMoments(())
    r.var = np.array(16.0)
    np.testing.assert_allclose(scale_rewards(np.array([2.0, -80.0]), r, clip=10, eps=0), [0.5, -10])


class Constant(gym.Env[np.ndarray, np.ndarray]):
    """obs = [t]; reward 1 every step; episodes of 3 steps."""

    def __init__(self) -> None:
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(1,), dtype=np.float64)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        self.t = 0

    def reset(self, *, seed: int | None = None, options: Any = None) -> Any:
        self.t = 0
        return np.array([0.0]), {}

    def step(self, action: Any) -> Any:
        self.t += 1
        return np.array([float(self.t)]), 1.0, self.t == 3, False, {}


def test_reward_scaling_follows_the_discounted_return_and_restarts_after_episodes() -> None:
    envs = NormalizeVectorEnv(
        SerialVectorEnv([Constant]),
        normalize_obs=False,
        normalize_reward=True,
        gamma=0.5,
        epsilon=0.0,
    )
    envs.reset(seed=0)
    returns = []
    for _ in range(5):  # steps 1-3, the ignored autoreset step (reward 0), step 1 again
        _, reward, _, _, info = envs.step(np.zeros((1, 1), np.float32))
        returns.append(float(envs.returns[0]))
        assert info["raw_reward"][0] in (0.0, 1.0)
    assert returns == [1.0, 1.5, 1.75, 0.0, 1.0]
    seen = np.array([1.0, 1.5, 1.75, 0.0, 1.0])
    assert envs.return_moments.var == pytest.approx(seen.var(), rel=1e-3)
    assert reward[0] == pytest.approx(1.0 / np.sqrt(envs.return_moments.var))


@pytest.mark.parametrize("task", ["halfcheetah", "ant"])
def test_pickled_envs_continue_bit_identically(task: str) -> None:
    factory = MuJoCoFactory(id=TASKS[task], num_envs=2, normalize_obs=True, normalize_reward=True)
    envs = factory.make()
    envs.reset(seed=1)
    space = envs.single_action_space
    rng = np.random.default_rng(0)

    def actions() -> np.ndarray:
        return rng.uniform(space.low, space.high, size=(2, *space.shape)).astype(np.float32)

    for _ in range(30):
        envs.step(actions())
    copy = pickle.loads(pickle.dumps(envs))
    for _ in range(100):
        a = actions()
        for x, y in zip(envs.step(a)[:4], copy.step(a)[:4], strict=True):
            np.testing.assert_array_equal(x, y)


def test_evaluation_envs_use_a_frozen_copy_of_the_training_moments() -> None:
    factory = MuJoCoFactory(id="Hopper-v5", num_envs=1, normalize_obs=True, normalize_reward=True)
    train = factory.make()
    train.reset(seed=0)
    for _ in range(20):
        train.step(np.zeros((1, 3), np.float32))
    evaluation = factory.for_evaluation(training_envs=lambda: train).make(num_envs=2)
    assert isinstance(evaluation, NormalizeVectorEnv) and isinstance(train, NormalizeVectorEnv)
    np.testing.assert_array_equal(evaluation.obs_moments.mean, train.obs_moments.mean)
    before = evaluation.obs_moments.mean.copy()
    evaluation.reset(seed=5)
    _, reward, *_ = evaluation.step(np.zeros((2, 3), np.float32))
    np.testing.assert_array_equal(evaluation.obs_moments.mean, before)  # frozen
    assert not evaluation.normalize_reward and reward.max() > 0.5  # raw rewards (~1 alive)


def test_unknown_task_and_missing_package(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match=r"unknown env\.id"):
        MuJoCoFactory(id="HalfCheeta-v5")
    monkeypatch.setitem(sys.modules, "mujoco", None)
    with pytest.raises(ConfigError, match=r"pip install 'rlbench\[mujoco\]'"):
        MuJoCoFactory(id="Walker2d-v5")
