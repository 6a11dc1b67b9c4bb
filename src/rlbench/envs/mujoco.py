"""MuJoCo locomotion (Gymnasium v5 ids) with exact checkpoints.

``env=halfcheetah`` (``hopper``, ``walker2d``, ``ant``, ``humanoid``, ``inverted_pendulum``)
make ``HalfCheetah-v5`` etc. through ``EnvFactory`` (serial or sync vectorization), with
exact checkpoints: Gymnasium's MuJoCo envs pickle as their constructor arguments, so a
pickled env comes back freshly built, not where it was. ``PhysicsState`` (the innermost
wrapper, just above the MuJoCo env) also saves the simulation's ``MjData`` and the env's
RNG, and copies them back on unpickling: a resumed run continues bit-identically.

Observation and reward normalization (``env.normalize_obs``, ``env.normalize_reward``) are
options of every env family with vector observations (``rlbench.envs.normalize``).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from rlbench.envs.factory import (
    EnvFactory,
    _make_single,
    check_env_id,
    require,
    wrap_innermost,
)

# Checkpoints written before normalization moved to rlbench.envs.normalize pickled these
# classes under this module's name; the names stay importable from here so they still load.
from rlbench.envs.normalize import NormalizeVectorEnv, RunningMoments  # noqa: F401

#: ``env.name`` -> Gymnasium id.
TASKS: dict[str, str] = {
    "halfcheetah": "HalfCheetah-v5",
    "hopper": "Hopper-v5",
    "walker2d": "Walker2d-v5",
    "ant": "Ant-v5",
    "humanoid": "Humanoid-v5",
    "inverted_pendulum": "InvertedPendulum-v5",
}


# ------------------------------------------------------------------ video frames
@dataclass(frozen=True)
class RenderSettings:
    """How ``MuJoCoFactory.render_env`` draws video frames.

    Without a GPU, MuJoCo's offscreen OpenGL runs in software (Mesa llvmpipe through EGL or
    OSMesa), where Gymnasium's defaults -- 480x480 frames, shadows from a 4096x4096 shadow
    map, 4x multisampling, floor reflections -- cost some 0.1 s a frame: minutes for the
    video of one 1,000-step episode. The defaults here draw the same scene from the same
    camera, only smaller and without those effects, about 20x faster.

    Attributes:
        width, height: frame size in pixels.
        shadows: keep the model's shadows (``vis.quality.shadowsize``; off: 0).
        multisamples: multisample anti-aliasing samples (``vis.quality.offsamples``).
        reflections: keep reflective materials (the floor; off: ``mat_reflectance`` 0).
    """

    width: int = 320
    height: int = 320
    shadows: bool = False
    multisamples: int = 0
    reflections: bool = False

    def apply(self, env: gym.Env[Any, Any]) -> None:
        """Set these on ``env``'s model; before its first ``render()``, which creates the
        rendering context from them."""
        model = env.unwrapped.model  # type: ignore[attr-defined]
        if not self.shadows:
            model.vis.quality.shadowsize = 0
        model.vis.quality.offsamples = self.multisamples
        if not self.reflections:
            model.mat_reflectance[:] = 0.0


# ------------------------------------------------------------------ exact checkpoints
class PhysicsState(gym.Wrapper[np.ndarray, np.ndarray, np.ndarray, np.ndarray]):
    """Pickles the MuJoCo ``MjData`` and RNG of the env it wraps (see module doc).

    The whole ``MjData`` is kept, not only the integration state: after ``mj_step`` derived
    quantities such as body positions lag one integration step behind ``qpos``, and rewards
    read them (Ant's forward reward), so recomputing them would change the next reward.
    """

    def __getstate__(self) -> dict[str, Any]:
        env = self.env.unwrapped
        state = dict(self.__dict__)
        state["_data"] = env.data  # type: ignore[attr-defined]
        state["_rng"] = env.np_random.bit_generator.state
        state["_rng_seed"] = env.np_random_seed
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        import mujoco

        data, rng, seed = state.pop("_data"), state.pop("_rng"), state.pop("_rng_seed")
        self.__dict__.update(state)
        env = self.env.unwrapped
        mujoco.mj_copyData(env.data, env.model, data)  # type: ignore[attr-defined]
        env.np_random.bit_generator.state = rng
        env._np_random_seed = seed


def make_mujoco(env_id: str, max_episode_steps: int | None, kwargs: dict[str, Any]) -> gym.Env:
    """One MuJoCo env whose pickles restore its physics (module level: picklable)."""
    env = _make_single(env_id, max_episode_steps, kwargs, replay=False)
    # PhysicsState sits inside TimeLimit & co. so their counters pickle as usual
    return wrap_innermost(env, PhysicsState)


@dataclass(kw_only=True)
class MuJoCoFactory(EnvFactory):
    """``env=halfcheetah`` etc.: a MuJoCo Gymnasium id with exact checkpoints (see the module
    docstring); normalization options as every ``EnvFactory``.

    Args:
        render_settings: (not by config) frame size and effects of video frames
            (``render_env``); the defaults render fast without a GPU.
    """

    render_settings: RenderSettings = field(default_factory=RenderSettings, repr=False)

    def __post_init__(self) -> None:
        require("mujoco", extra="mujoco", what=f"env.id={self.id}")
        super().__post_init__()

    def single_env_fn(self, **make_kwargs: Any) -> Callable[[], gym.Env]:
        check_env_id(self.id)
        kwargs = {**self.kwargs, **make_kwargs}
        return functools.partial(make_mujoco, self.id, self.max_episode_steps, kwargs)

    def render_env(self) -> gym.Env[Any, Any]:
        """One env rendering RGB frames as ``render_settings`` says, observations
        normalized like evaluation envs'.

        Without a display, MuJoCo renders offscreen through EGL (``MUJOCO_GL=egl`` unless
        set otherwise).
        """
        if "MUJOCO_GL" not in os.environ and not os.environ.get("DISPLAY"):
            os.environ["MUJOCO_GL"] = "egl"
        settings = self.render_settings
        size = {"width": settings.width, "height": settings.height}
        env = self.single_env_fn(render_mode="rgb_array", **size)()
        settings.apply(env)
        return self.normalize_render_env(env)
