"""Envs that pickle as their constructor arguments (Box2D) are restored exactly by
``ReplayOnUnpickle``: a pickled vector env continues as the original does."""

from __future__ import annotations

import pickle
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from rlbench.envs import EnvFactory
from rlbench.envs.factory import ReplayOnUnpickle


def inner_wrappers(env: gym.Env[Any, Any]) -> list[str]:
    names = []
    while isinstance(env, gym.Wrapper):
        names.append(type(env).__name__)
        env = env.env
    return names


def continue_identically(envs: Any, actions: Any, *, before: int, after: int) -> None:
    """Step ``before`` times, pickle, then step both ``after`` times with the same actions."""
    envs.reset(seed=3)
    for t in range(before):
        envs.step(actions(t))
    copy = pickle.loads(pickle.dumps(envs))
    for t in range(before, before + after):
        a = actions(t)
        for x, y in zip(envs.step(a)[:4], copy.step(a)[:4], strict=True):
            np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("continuous", [False, True])
def test_lunar_lander_continues_bit_identically_after_a_pickle(continuous: bool) -> None:
    factory = EnvFactory(id="LunarLander-v3", num_envs=2, kwargs={"continuous": continuous})
    envs = factory.make()
    rng = np.random.default_rng(0)
    if continuous:
        table = rng.uniform(-1, 1, size=(2000, 2, 2)).astype(np.float32)
    else:
        table = rng.integers(4, size=(2000, 2))
    # 700 steps: both envs have ended episodes and autoreset (unseeded resets) by then
    continue_identically(envs, lambda t: table[t], before=700, after=400)


def test_the_replay_holds_one_episode_of_actions_and_unpickles_into_a_live_world() -> None:
    env = EnvFactory(id="LunarLander-v3").single_env_fn()()
    assert inner_wrappers(env)[-1] == "ReplayOnUnpickle"  # innermost: TimeLimit & co. outside
    env.reset(seed=1)
    for _ in range(30):
        env.step(0)
    replay = env
    while not isinstance(replay, ReplayOnUnpickle):
        replay = replay.env  # type: ignore[attr-defined]
    assert len(replay._actions) == 30
    copy = pickle.loads(pickle.dumps(env))
    assert copy.unwrapped.lander is not None  # type: ignore[attr-defined]  # without: None
    np.testing.assert_array_equal(env.step(2)[0], copy.step(2)[0])


def test_envs_that_pickle_their_state_are_not_wrapped() -> None:
    assert "ReplayOnUnpickle" not in inner_wrappers(EnvFactory(id="CartPole-v1").single_env_fn()())


def test_normalized_lunar_lander_continues_identically() -> None:
    factory = EnvFactory(id="LunarLander-v3", num_envs=2, normalize_obs=True, normalize_reward=True)
    table = np.random.default_rng(1).integers(4, size=(1200, 2))
    continue_identically(factory.make(), lambda t: table[t], before=300, after=300)
