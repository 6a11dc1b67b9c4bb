"""MinAtar (Young & Tian 2019): five miniature Atari games on a 10x10 grid.

``env=minatar_breakout`` (``_asterix``, ``_freeway``, ``_seaquest``, ``_space_invaders``) use
the package's Gymnasium ids ``MinAtar/<Game>-v1`` (minimal action sets), which exist only
after ``minatar.gym.register_envs()``; the factory calls it, or says which pip extra to
install. MinAtar emits bool observations ``(10, 10, C)``; they are converted once per
vector step (``ChannelsFirstVectorEnv``: one transpose for all envs instead of about 10 us
per env with ``np.moveaxis`` in a per-env wrapper) to the channel-first uint8
``(C, 10, 10)`` the conv encoders take (values 0/1: one byte per cell in the replay
buffer). MinAtar's own sticky actions (probability 0.1) and its difficulty ramping stay
on, as in the paper; ``env.kwargs`` passes other options.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from rlbench.envs.factory import EnvFactory, _make_single, check_env_id
from rlbench.envs.serial import SerialVectorEnv

#: ``env.name`` -> Gymnasium id.
GAMES: dict[str, str] = {
    "asterix": "MinAtar/Asterix-v1",
    "breakout": "MinAtar/Breakout-v1",
    "freeway": "MinAtar/Freeway-v1",
    "seaquest": "MinAtar/Seaquest-v1",
    "space_invaders": "MinAtar/SpaceInvaders-v1",
}

#: Pixels per MinAtar cell in rendered video frames.
RENDER_SCALE = 16


def channels_first(obs: np.ndarray) -> np.ndarray:
    """``(..., H, W, C)`` bool -> ``(..., C, H, W)`` uint8 (0/1), contiguous."""
    cells = obs.view(np.uint8) if obs.dtype == np.bool_ else obs.astype(np.uint8)
    n = cells.ndim
    return np.ascontiguousarray(cells.transpose(*range(n - 3), n - 1, n - 3, n - 2))


def channels_first_space(space: gym.Space[Any]) -> gym.spaces.Box:
    assert space.shape is not None
    h, w, c = space.shape
    return gym.spaces.Box(0, 1, shape=(c, h, w), dtype=np.uint8)


class ChannelsFirstVectorEnv(VectorEnv):
    """A vector env of MinAtar envs with ``(N, C, 10, 10)`` uint8 observations (picklable
    when the wrapped vector env is)."""

    metadata: dict[str, Any] = {"autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, env: VectorEnv) -> None:
        self.env = env
        self.num_envs = env.num_envs
        self.single_observation_space = channels_first_space(env.single_observation_space)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.single_action_space = env.single_action_space
        self.action_space = env.action_space
        self.spec = env.spec

    def reset(self, **kwargs: Any) -> tuple[np.ndarray, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        return channels_first(obs), info

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(actions)
        return channels_first(obs), reward, terminated, truncated, info

    def close_extras(self, **kwargs: Any) -> None:
        self.env.close()


class ChannelsFirst(gym.ObservationWrapper[np.ndarray, Any, np.ndarray]):
    """MinAtar observations as ``(C, 10, 10)`` uint8; ``render()`` upscaled to uint8 RGB."""

    def __init__(self, env: gym.Env[np.ndarray, Any]) -> None:
        super().__init__(env)
        self.observation_space = channels_first_space(env.observation_space)
        self.metadata = {**env.metadata, "render_fps": 15}

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return channels_first(observation)

    def render(self) -> Any:
        frame = self.env.render()
        if self.env.render_mode != "rgb_array" or frame is None:
            return frame
        rgb = np.asarray(np.asarray(frame, dtype=np.float64) * 255.0 + 0.5, dtype=np.uint8)
        return np.repeat(np.repeat(rgb, RENDER_SCALE, axis=0), RENDER_SCALE, axis=1)


def make_minatar(
    env_id: str, max_episode_steps: int | None, kwargs: dict[str, Any], *, convert: bool = True
) -> gym.Env:
    """One MinAtar env, with channel-first uint8 observations when ``convert`` (module
    level: picklable)."""
    check_env_id(env_id)  # registers MinAtar ids (or names the pip extra)
    env = _make_single(env_id, max_episode_steps, kwargs)
    return ChannelsFirst(env) if convert else env


@dataclass(kw_only=True)
class MinAtarFactory(EnvFactory):
    """``env=minatar_<game>``: a MinAtar Gymnasium id with channel-first uint8 observations.

    Same options as ``EnvFactory`` but normalization; ``id`` is ``MinAtar/<Game>-v1``.
    """

    normalizable: ClassVar[bool] = False

    def single_env_fn(self, **make_kwargs: Any) -> Callable[[], gym.Env]:
        kwargs = {**self.kwargs, **make_kwargs}
        return functools.partial(make_minatar, self.id, self.max_episode_steps, kwargs)

    def make(self, *, num_envs: int | None = None) -> VectorEnv:
        """Sub-envs emit MinAtar's bool ``(10, 10, C)``; the batch is converted at once."""
        n = self.num_envs if num_envs is None else num_envs
        raw = functools.partial(
            make_minatar, self.id, self.max_episode_steps, dict(self.kwargs), convert=False
        )
        if self.backend(n) == "sync":
            return ChannelsFirstVectorEnv(gym.vector.SyncVectorEnv([raw] * n))
        return ChannelsFirstVectorEnv(SerialVectorEnv([raw] * n))

    def render_env(self) -> gym.Env[Any, Any]:
        # MinAtar renders floats; ChannelsFirst converts, so the checker's warning is moot
        return self.single_env_fn(render_mode="rgb_array", disable_env_checker=True)()
