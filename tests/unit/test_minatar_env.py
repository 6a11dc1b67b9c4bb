"""MinAtar: registration, channel-first uint8 observations, seeding, pickling, errors."""

from __future__ import annotations

import pickle
import sys
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from rlbench.envs.minatar import GAMES, MinAtarFactory, channels_first
from rlbench.errors import ConfigError


def test_channels_first_hand_case() -> None:
    obs = np.zeros((10, 10, 3), dtype=np.bool_)
    obs[2, 5, 1] = True
    out = channels_first(obs)
    assert out.shape == (3, 10, 10) and out.dtype == np.uint8 and out.flags.c_contiguous
    assert out[1, 2, 5] == 1 and out.sum() == 1


@pytest.mark.parametrize("name", sorted(GAMES))
def test_every_game_has_uint8_channel_first_observations(name: str) -> None:
    factory = MinAtarFactory(id=GAMES[name], num_envs=2)
    obs_space, act_space = factory.spaces()
    assert obs_space.dtype == np.uint8 and obs_space.shape is not None
    c, h, w = obs_space.shape
    assert (h, w) == (10, 10) and c >= 4
    assert isinstance(act_space, gym.spaces.Discrete)
    obs, _ = factory.make().reset(seed=0)
    assert obs.shape == (2, c, 10, 10) and obs.dtype == np.uint8 and obs.max() <= 1


def rollout(envs: Any, steps: int) -> list[np.ndarray]:
    out = [envs.reset(seed=4)[0]]
    rng = np.random.default_rng(0)
    for _ in range(steps):
        obs, reward, term, trunc, _ = envs.step(rng.integers(3, size=envs.num_envs))
        out += [obs, reward, term, trunc]
    return out


def test_seeded_runs_repeat_and_pickles_continue_exactly() -> None:
    factory = MinAtarFactory(id="MinAtar/Breakout-v1", num_envs=3)
    a, b = rollout(factory.make(), 200), rollout(factory.make(), 200)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    envs = factory.make()
    rollout(envs, 50)
    copy = pickle.loads(pickle.dumps(envs))
    rng = np.random.default_rng(1)
    for _ in range(200):
        actions = rng.integers(3, size=3)
        for x, y in zip(envs.step(actions)[:4], copy.step(actions)[:4], strict=True):
            np.testing.assert_array_equal(x, y)


def test_render_env_gives_uint8_rgb_frames() -> None:
    env = MinAtarFactory(id="MinAtar/Freeway-v1").render_env()
    env.reset(seed=0)
    frame = env.render()
    assert frame.shape == (160, 160, 3) and frame.dtype == np.uint8
    assert env.metadata["render_fps"] > 0


def test_missing_package_names_the_pip_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for module in [m for m in sys.modules if m.startswith("minatar")]:
        monkeypatch.delitem(sys.modules, module)
    monkeypatch.setitem(sys.modules, "minatar", None)  # what an absent package looks like
    monkeypatch.delitem(gym.registry, "MinAtar/Asterix-v1")
    with pytest.raises(ConfigError, match=r"pip install 'rlbench\[minatar\]'") as e:
        MinAtarFactory(id="MinAtar/Asterix-v1")
    assert "\n" not in str(e.value)
