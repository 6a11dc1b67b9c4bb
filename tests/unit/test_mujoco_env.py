"""MuJoCo: exact pickles (normalization included), evaluation stats, errors."""

from __future__ import annotations

import pickle
import sys

import numpy as np
import pytest

from rlbench.envs.mujoco import TASKS, MuJoCoFactory
from rlbench.envs.normalize import NormalizeVectorEnv
from rlbench.errors import ConfigError


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
