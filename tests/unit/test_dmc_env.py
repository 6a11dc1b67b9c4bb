"""DeepMind Control Suite (``env=dmc``): spaces, flattening order, action repeat, seeding,
exact pickles, time limits, video frames and the one-line errors."""

from __future__ import annotations

import importlib.util
import pickle
import sys

import numpy as np
import pytest

from rlbench.envs.dmc import DMCEnv, DMCFactory
from rlbench.envs.serial import SerialVectorEnv
from rlbench.errors import ConfigError

needs_dmc = pytest.mark.skipif(
    importlib.util.find_spec("dm_control") is None or importlib.util.find_spec("shimmy") is None,
    reason="needs the dmc extra (dm-control, shimmy)",
)


def uniform(space: object, rng: np.random.Generator, n: int | None = None) -> np.ndarray:
    low, high = space.low, space.high  # type: ignore[attr-defined]
    shape = low.shape if n is None else (n, *low.shape)
    return rng.uniform(low, high, size=shape).astype(np.float32)


@needs_dmc
def test_observations_are_flattened_in_observation_spec_order() -> None:
    env = DMCEnv("walker-walk")
    # dm_control's order (what TD-MPC2 and DrQ-v2 concatenate), not Gymnasium's sorted Dict
    assert env.keys == ("orientations", "height", "velocity")
    assert env.observation_space.shape == (14 + 1 + 9,)
    assert env.observation_space.dtype == np.float32
    assert env.action_space.shape == (6,) and env.action_space.dtype == np.float32
    assert np.all(env.action_space.low == -1) and np.all(env.action_space.high == 1)
    obs, _ = env.reset(seed=0)
    dm = env.dm_env
    parts = dm.task.get_observation(dm.physics)
    expected = np.concatenate([np.ravel(parts[k]) for k in env.keys]).astype(np.float32)
    assert obs.dtype == np.float32 and obs.shape == (24,)
    np.testing.assert_array_equal(obs, expected)
    obs, *_ = env.step(np.zeros(6, np.float32))
    parts = dm.task.get_observation(dm.physics)
    expected = np.concatenate([np.ravel(parts[k]) for k in env.keys]).astype(np.float32)
    np.testing.assert_array_equal(obs, expected)
    assert obs[14] == np.float32(parts["height"])  # a scalar takes one slot
    env.close()


@needs_dmc
def test_action_repeat_sums_rewards_like_stepping_by_hand_and_stops_at_episode_end() -> None:
    repeated, single = DMCEnv("cheetah-run", action_repeat=3), DMCEnv("cheetah-run")
    repeated.reset(seed=5)
    single.reset(seed=5)
    rng = np.random.default_rng(0)
    steps = 0
    while True:
        a = uniform(repeated.action_space, rng)
        obs, reward, terminated, truncated, _ = repeated.step(a)
        total, sim_steps = 0.0, 0
        for _ in range(3):
            by_hand, r, te, tr, _ = single.step(a)
            total += r
            sim_steps += 1
            if te or tr:
                break
        np.testing.assert_array_equal(obs, by_hand)
        assert reward == total and (terminated, truncated) == (te, tr)
        steps += 1
        if terminated or truncated:
            break
    # the suite's 1,000 simulator steps: 333 full agent steps and one of a single step
    assert steps == 334 and sim_steps == 1 and truncated and not terminated


@needs_dmc
def test_vector_env_is_seeded_per_env_and_deterministic() -> None:
    factory = DMCFactory(task="cartpole-swingup", num_envs=2)
    assert factory.id == "dm_control/cartpole-swingup-v0" and factory.name == "cartpole-swingup"
    assert factory.step_multiplier == 1
    assert factory.score_range == [0.0, 1000.0]

    def rollout(seed: int) -> list[np.ndarray]:
        envs = factory.make()
        assert isinstance(envs, SerialVectorEnv)
        obs, _ = envs.reset(seed=seed)
        out = [obs]
        rng = np.random.default_rng(1)
        for _ in range(20):
            out.append(envs.step(uniform(envs.single_action_space, rng, 2))[0])
        envs.close()
        return out

    first, again, other = rollout(3), rollout(3), rollout(4)
    for x, y in zip(first, again, strict=True):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(first[0][1], other[0][0])  # env i is reset with seed + i
    assert not np.array_equal(first[0][0], other[0][0])
    single = DMCEnv("cartpole-swingup")
    np.testing.assert_array_equal(single.reset(seed=4)[0], first[0][1])


@pytest.mark.parametrize("vectorization", ["serial", "sync"])
@needs_dmc
def test_pickled_envs_continue_bit_identically(vectorization: str) -> None:
    """Reacher moves its target in the MjModel each episode; short time limits make both
    envs end episodes and autoreset after the copy is taken."""
    factory = DMCFactory(
        task="reacher-hard",
        num_envs=2,
        vectorization=vectorization,
        action_repeat=2,
        max_episode_steps=40,
    )
    envs = factory.make()
    envs.reset(seed=1)
    rng = np.random.default_rng(0)
    space = envs.single_action_space
    for _ in range(30):
        envs.step(uniform(space, rng, 2))
    copy = pickle.loads(pickle.dumps(envs))
    ends = 0
    for _ in range(100):
        a = uniform(space, rng, 2)
        x, y = envs.step(a), copy.step(a)
        for u, v in zip(x[:4], y[:4], strict=True):
            np.testing.assert_array_equal(u, v)
        ends += int(x[3].sum())
    assert ends >= 4  # episodes of 40 agent steps ended (and restarted) in both
    envs.close()
    copy.close()


@needs_dmc
def test_actions_in_minus_one_one_map_to_the_task_bounds_like_dm_control() -> None:
    from dm_control import suite
    from dm_control.suite.wrappers import action_scale

    env = DMCEnv("quadruped-run")
    assert np.all(env.action_space.low == -1) and np.all(env.action_space.high == 1)
    raw = DMCEnv("quadruped-run", rescale_actions=False)
    assert raw.action_space.high.max() == pytest.approx(1.1)  # the quadruped's own bounds
    quadruped = suite.load("quadruped", "run", task_kwargs={"random": 2})  # = reset(seed=2)
    reference = action_scale.Wrapper(quadruped, minimum=-1.0, maximum=1.0)
    obs, _ = env.reset(seed=2)
    np.testing.assert_array_equal(obs, env.flatten(reference.reset().observation))
    rng = np.random.default_rng(0)
    for _ in range(10):
        a = uniform(env.action_space, rng)
        obs, reward, *_ = env.step(a)
        step = reference.step(a.astype(np.float64))
        np.testing.assert_array_equal(obs, env.flatten(step.observation))
        assert reward == step.reward


@needs_dmc
def test_time_limit_in_agent_steps_and_video_frames() -> None:
    factory = DMCFactory(task="cartpole-swingup", action_repeat=2, max_episode_steps=5)
    env = factory.render_env()
    assert env.metadata["render_fps"] == 50  # 100 Hz control, every second frame
    env.reset(seed=0)
    frame = env.render()
    assert isinstance(frame, np.ndarray)
    assert frame.shape == (320, 320, 3) and frame.dtype == np.uint8 and frame.std() > 0
    truncated = [env.step(np.zeros(1, np.float32))[3] for _ in range(5)]
    assert truncated == [False] * 4 + [True]
    env.close()


@needs_dmc
def test_unknown_task_names_it_and_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError) as e:
        DMCFactory(task="cheetah-runn")
    message = str(e.value)
    assert message.startswith("unknown env.task 'cheetah-runn' (closest: cheetah-run")
    assert "walker-walk" in message and "dog-run" in message and "\n" not in message


@needs_dmc
def test_bad_options_are_one_line_errors() -> None:
    with pytest.raises(ConfigError, match=r"env\.action_repeat=0: must be >= 1"):
        DMCFactory(task="cheetah-run", action_repeat=0)
    with pytest.raises(ConfigError, match="no native vector env"):
        DMCFactory(task="cheetah-run", vectorization="native")


def test_missing_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "dm_control", None)
    with pytest.raises(ConfigError, match=r"pip install 'rlbench\[dmc\]'") as e:
        DMCFactory(task="walker-walk")
    assert "\n" not in str(e.value)
