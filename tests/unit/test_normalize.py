"""Observation and reward normalization (``rlbench.envs.normalize``) and the ``env.*``
options that turn it on for every env family with vector observations."""

from __future__ import annotations

import pickle
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from rlbench.envs import AtariFactory, EnvFactory, MinAtarFactory
from rlbench.envs.normalize import (
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


def test_classic_control_envs_normalize_and_evaluation_freezes_the_moments() -> None:
    factory = EnvFactory(id="MountainCar-v0", num_envs=4, normalize_obs=True, normalize_reward=True)
    train = factory.make()
    assert isinstance(train, NormalizeVectorEnv)
    obs, _ = train.reset(seed=0)
    rng = np.random.default_rng(0)
    raw_rewards = []
    for _ in range(300):
        obs, reward, *_, info = train.step(rng.integers(3, size=4))
        raw_rewards.append(info["raw_reward"])
    # MountainCar's raw position is in [-1.2, 0.6] and velocity in [-0.07, 0.07]: once
    # standardized both have mean ~0 and std ~1 over what the envs returned
    assert np.all(np.abs(train.obs_moments.mean - [-0.5, 0.0]) < 0.2)
    assert train.obs_moments.var[1] < 1e-3  # the raw velocity's spread, tiny
    assert np.abs(obs[:, 1]).max() > 0.05  # ... so normalized velocities are not tiny
    raw = np.concatenate(raw_rewards)
    assert set(raw.tolist()) == {-1.0, 0.0}  # -1 a step; 0 on the autoreset step after 200
    assert np.all((reward > -1.0) & (reward < 0.0))  # -1 over the return's std (> 1)

    evaluation = factory.for_evaluation(training_envs=lambda: train).make(num_envs=2)
    assert isinstance(evaluation, NormalizeVectorEnv)
    assert not evaluation.normalize_reward and not evaluation.update
    np.testing.assert_array_equal(evaluation.obs_moments.mean, train.obs_moments.mean)
    evaluation.reset(seed=3)
    _, reward, *_ = evaluation.step(np.zeros(2, np.int64))
    np.testing.assert_array_equal(reward, [-1.0, -1.0])  # raw rewards
    np.testing.assert_array_equal(evaluation.obs_moments.mean, train.obs_moments.mean)


def test_without_the_options_envs_are_not_wrapped() -> None:
    factory = EnvFactory(id="CartPole-v1", num_envs=2)
    assert not isinstance(factory.make(), NormalizeVectorEnv)
    assert factory.for_evaluation(training_envs=lambda: None) is factory


def test_the_render_env_sees_the_evaluation_envs_observations() -> None:
    factory = EnvFactory(id="CartPole-v1", num_envs=2, normalize_obs=True)
    train = factory.make()
    train.reset(seed=0)
    for _ in range(50):
        train.step(np.array([0, 1]))
    eval_factory = factory.for_evaluation(training_envs=lambda: train)
    render = eval_factory.render_env()
    evaluation = eval_factory.make(num_envs=1)
    obs_render, _ = render.reset(seed=7)
    obs_eval, _ = evaluation.reset(seed=7)
    np.testing.assert_allclose(obs_render, obs_eval[0], rtol=1e-6)
    raw, _ = gym.make("CartPole-v1").reset(seed=7)
    assert not np.allclose(obs_render, raw)


def test_normalized_envs_pickle_with_their_moments_and_continue_identically() -> None:
    envs = EnvFactory(id="Acrobot-v1", num_envs=2, normalize_obs=True, normalize_reward=True).make()
    envs.reset(seed=1)
    for _ in range(40):
        envs.step(np.array([0, 2]))
    copy = pickle.loads(pickle.dumps(envs))
    for step in range(60):
        a = np.array([step % 3, (step + 1) % 3])
        for x, y in zip(envs.step(a)[:4], copy.step(a)[:4], strict=True):
            np.testing.assert_array_equal(x, y)


def test_old_checkpoints_find_the_classes_under_their_old_module() -> None:
    # checkpoints written before the move pickled rlbench.envs.mujoco.NormalizeVectorEnv
    import rlbench.envs.mujoco as old

    assert old.NormalizeVectorEnv is NormalizeVectorEnv
    assert old.RunningMoments is RunningMoments


@pytest.mark.parametrize(
    ("make", "key"),
    [
        (lambda: AtariFactory(game="breakout", normalize_obs=True), "normalize_obs"),
        (
            lambda: MinAtarFactory(id="MinAtar/Breakout-v1", normalize_reward=True),
            "normalize_reward",
        ),
    ],
)
def test_image_observation_families_refuse_normalization(make: Any, key: str) -> None:
    with pytest.raises(ConfigError, match=rf"env\.{key}=true: \w+ envs have image observations"):
        make()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"reward_gamma": 1.5}, r"env\.reward_gamma=1\.5: must be in \[0, 1\]"),
        ({"clip_obs": 0.0}, r"env\.clip_obs=0\.0: must be > 0"),
        ({"norm_epsilon": -1.0}, r"env\.norm_epsilon=-1\.0: must be > 0"),
    ],
)
def test_bad_normalization_options_are_one_line_errors(
    kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        EnvFactory(id="CartPole-v1", normalize_obs=True, **kwargs)
