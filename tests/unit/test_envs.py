"""Env factory: vectorization, seeding, NEXT_STEP autoreset, pickling, errors."""

from __future__ import annotations

import pickle

import gymnasium as gym
import numpy as np
import pytest

import rlbench_test_envs  # noqa: F401  (registers Counter-v0)
from rlbench.envs import EnvFactory, SerialVectorEnv, random_actions
from rlbench.errors import ConfigError


def rollout(envs: gym.vector.VectorEnv, steps: int, seed: int) -> list[tuple[np.ndarray, ...]]:
    obs, _ = envs.reset(seed=seed)
    rng = np.random.default_rng(0)
    out = [(obs,)]
    for _ in range(steps):
        actions = rng.integers(2, size=envs.num_envs)
        obs, r, term, trunc, _ = envs.step(actions)
        out.append((obs, r, term, trunc))
    return out


def test_serial_matches_gymnasium_sync_vector_env() -> None:
    factory = EnvFactory(id="CartPole-v1", num_envs=3)
    ours = rollout(factory.make(), 300, seed=5)
    ref = rollout(gym.vector.SyncVectorEnv([lambda: gym.make("CartPole-v1")] * 3), 300, seed=5)
    for a, b in zip(ours, ref, strict=True):
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x, y)
    assert any(step[2].any() or step[3].any() for step in ours[1:])  # episodes did end


def test_next_step_autoreset_semantics() -> None:
    envs = SerialVectorEnv([lambda: gym.make("Counter-v0", terminate_prob=0.0)])
    obs, _ = envs.reset(seed=0)
    assert obs[0, :2].tolist() == [0, 0]
    for t in range(1, 5):
        obs, r, term, trunc, _ = envs.step(np.array([0]))
        assert obs[0, 1] == t
    obs, r, term, trunc, _ = envs.step(np.array([0]))  # t=5: the time limit truncates
    assert trunc[0] and obs[0, 1] == 5  # the true final observation
    obs, r, term, trunc, _ = envs.step(np.array([1]))  # action ignored: reset observation
    assert obs[0].tolist()[:2] == [1, 0] and r[0] == 0.0 and not (term[0] or trunc[0])


def test_env_i_is_seeded_with_seed_plus_i() -> None:
    factory = EnvFactory(id="CartPole-v1", num_envs=3)
    obs, _ = factory.make().reset(seed=10)
    for i in range(3):
        single, _ = gym.make("CartPole-v1").reset(seed=10 + i)
        np.testing.assert_array_equal(obs[i], single)


@pytest.mark.parametrize("vectorization", ["serial", "sync", "native"])
def test_vectorizations_are_deterministic_and_picklable(vectorization: str) -> None:
    factory = EnvFactory(id="CartPole-v1", num_envs=4, vectorization=vectorization)
    envs = factory.make()
    rollout(envs, 50, seed=1)
    clone = pickle.loads(pickle.dumps(envs))
    actions = np.array([0, 1, 0, 1])
    for _ in range(40):
        a = envs.step(actions)
        b = clone.step(actions)
        for x, y in zip(a[:4], b[:4], strict=True):
            np.testing.assert_array_equal(x, y)


def test_auto_picks_native_only_for_many_envs() -> None:
    assert EnvFactory(id="CartPole-v1", num_envs=2).backend(2) == "serial"
    # 8 envs step faster one by one when a policy acts in between (scripts/bench_envs.py)
    assert EnvFactory(id="CartPole-v1", num_envs=8).backend(8) == "serial"
    assert EnvFactory(id="CartPole-v1", num_envs=12).backend(12) == "native"
    assert EnvFactory(id="CartPole-v1", num_envs=64).backend(64) == "native"
    assert EnvFactory(id="Acrobot-v1", num_envs=64).backend(64) == "serial"


def test_unknown_env_id_names_close_matches() -> None:
    with pytest.raises(ConfigError, match=r"unknown env.id 'CartPol-v1'.*CartPole-v1"):
        EnvFactory(id="CartPol-v1")
    with pytest.raises(ConfigError, match="vectorization"):
        EnvFactory(id="CartPole-v1", vectorization="threads")


def test_custom_module_ids_are_imported() -> None:
    factory = EnvFactory(id="rlbench_test_envs:Counter-v0")
    assert factory.make().num_envs == 1


def test_random_actions_cover_space() -> None:
    rng = np.random.default_rng(0)
    a = random_actions(gym.spaces.Discrete(3, start=1), 1000, rng)
    assert set(a.tolist()) == {1, 2, 3}
    box = gym.spaces.Box(-2.0, 2.0, shape=(2,), dtype=np.float32)
    b = random_actions(box, 100, rng)
    assert b.shape == (100, 2) and b.dtype == np.float32 and np.abs(b).max() <= 2
