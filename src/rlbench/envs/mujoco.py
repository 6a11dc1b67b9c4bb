"""MuJoCo locomotion (Gymnasium v5 ids): exact checkpoints and optional normalization.

``env=halfcheetah`` (``hopper``, ``walker2d``, ``ant``, ``humanoid``, ``inverted_pendulum``)
make ``HalfCheetah-v5`` etc. through ``EnvFactory`` (serial or sync vectorization) with two
additions:

- **Exact checkpoints.** Gymnasium's MuJoCo envs pickle as their constructor arguments, so a
  pickled env comes back freshly built, not where it was. ``PhysicsState`` (the innermost
  wrapper, just above the MuJoCo env) also saves the simulation's ``MjData`` and the env's
  RNG, and copies them back on unpickling: a resumed run continues bit-identically.
- **Normalization** (Stable-Baselines3's ``VecNormalize``, Gymnasium's ``NormalizeObservation``
  and ``NormalizeReward``): ``env.normalize_obs`` standardizes observations with running
  moments, ``env.normalize_reward`` divides rewards by the running standard deviation of
  the discounted return. The moments live in the vector env, so they are saved in every
  checkpoint. Evaluation envs (``for_evaluation``) use a frozen copy of the training envs'
  current observation moments and raw rewards. The raw rewards of a training step are in
  ``info["raw_reward"]``.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv

from rlbench.envs.factory import EnvFactory, _make_single, check_env_id, require
from rlbench.errors import ConfigError

#: ``env.name`` -> Gymnasium id.
TASKS: dict[str, str] = {
    "halfcheetah": "HalfCheetah-v5",
    "hopper": "Hopper-v5",
    "walker2d": "Walker2d-v5",
    "ant": "Ant-v5",
    "humanoid": "Humanoid-v5",
    "inverted_pendulum": "InvertedPendulum-v5",
}


# ------------------------------------------------------------------ running moments
def merge_moments(
    mean: np.ndarray,
    var: np.ndarray,
    count: float,
    batch: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Merge a batch ``(B, *shape)`` into running ``(mean, var, count)`` (Chan et al. 1979,
    the parallel variance update; population variance). Returns the new triple."""
    b_count = batch.shape[0]
    b_mean = batch.mean(axis=0)
    b_var = batch.var(axis=0)
    delta = b_mean - mean
    total = count + b_count
    new_mean = mean + delta * (b_count / total)
    m2 = var * count + b_var * b_count + delta**2 * (count * b_count / total)
    return new_mean, m2 / total, total


@dataclass
class RunningMoments:
    """Running mean and variance of a stream of arrays of ``shape`` (float64), starting at
    mean 0, variance 1 and a tiny prior count like Gymnasium's ``RunningMeanStd``."""

    shape: tuple[int, ...]
    mean: np.ndarray = field(init=False)
    var: np.ndarray = field(init=False)
    count: float = 1e-4

    def __post_init__(self) -> None:
        self.mean = np.zeros(self.shape, dtype=np.float64)
        self.var = np.ones(self.shape, dtype=np.float64)

    def update(self, batch: np.ndarray) -> None:
        """Merge ``batch`` ``(B, *shape)``."""
        self.mean, self.var, self.count = merge_moments(
            self.mean, self.var, self.count, np.asarray(batch, dtype=np.float64)
        )

    def copy(self) -> RunningMoments:
        new = RunningMoments(self.shape, count=self.count)
        new.mean, new.var = self.mean.copy(), self.var.copy()
        return new


def normalize(x: np.ndarray, moments: RunningMoments, *, clip: float, eps: float) -> np.ndarray:
    """``clip((x - mean) / sqrt(var + eps), -clip, clip)``."""
    return np.clip((x - moments.mean) / np.sqrt(moments.var + eps), -clip, clip)


def scale_rewards(
    reward: np.ndarray, returns: RunningMoments, *, clip: float, eps: float
) -> np.ndarray:
    """``clip(reward / sqrt(var(discounted return) + eps), -clip, clip)`` (no centring)."""
    return np.clip(reward / np.sqrt(returns.var + eps), -clip, clip)


# ------------------------------------------------------------------ normalization
class NormalizeVectorEnv(VectorEnv):
    """Observation and reward normalization around a vector env with NEXT_STEP autoreset.

    Observations (reset ones too) update ``obs_moments`` and are standardized with them;
    rewards are divided by the standard deviation of the per-env discounted return
    ``R_t = gamma * R_{t-1} + r_t`` (restarted after an episode ends). ``update=False``
    freezes the moments (evaluation). Picklable when the wrapped env is: the moments are
    part of its state.

    Args:
        env: the vector env to wrap.
        normalize_obs, normalize_reward: which normalization to apply.
        gamma: discount of the return whose spread scales rewards.
        clip_obs, clip_reward: bounds of the normalized values.
        epsilon: added to variances before the square root.
        obs_moments: start from these moments (a copy is taken), e.g. the training envs'.
        update: update the moments with what the env returns.
    """

    metadata: dict[str, Any] = {"autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(
        self,
        env: VectorEnv,
        *,
        normalize_obs: bool,
        normalize_reward: bool,
        gamma: float = 0.99,
        clip_obs: float = 10.0,
        clip_reward: float = 10.0,
        epsilon: float = 1e-8,
        obs_moments: RunningMoments | None = None,
        update: bool = True,
    ) -> None:
        self.env = env
        self.num_envs = env.num_envs
        self.single_observation_space = env.single_observation_space
        self.single_action_space = env.single_action_space
        self.observation_space = env.observation_space
        self.action_space = env.action_space
        self.spec = env.spec
        self.normalize_obs = normalize_obs
        self.normalize_reward = normalize_reward
        self.gamma = gamma
        self.clip_obs = clip_obs
        self.clip_reward = clip_reward
        self.epsilon = epsilon
        self.update = update
        shape = tuple(env.single_observation_space.shape or ())
        self.obs_moments = obs_moments.copy() if obs_moments else RunningMoments(shape)
        self.return_moments = RunningMoments(())
        self.returns = np.zeros(self.num_envs, dtype=np.float64)
        self.prev_done = np.zeros(self.num_envs, dtype=np.bool_)

    def _obs(self, obs: np.ndarray) -> np.ndarray:
        if not self.normalize_obs:
            return obs
        if self.update:
            self.obs_moments.update(obs)
        out = normalize(obs, self.obs_moments, clip=self.clip_obs, eps=self.epsilon)
        return out.astype(obs.dtype, copy=False)

    def reset(
        self,
        *,
        seed: int | Sequence[int | None] | None = None,
        options: dict[str, Any] | None = None,
    ) -> tuple[np.ndarray, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)  # type: ignore[arg-type]
        self.returns[:] = 0.0
        self.prev_done[:] = False
        return self._obs(obs), info

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(actions)
        if self.normalize_reward:
            raw = np.asarray(reward, dtype=np.float64)
            self.returns = np.where(self.prev_done, 0.0, self.returns * self.gamma) + raw
            if self.update:
                self.return_moments.update(self.returns)
            reward = scale_rewards(
                raw, self.return_moments, clip=self.clip_reward, eps=self.epsilon
            )
            info = {**info, "raw_reward": raw}
        self.prev_done = terminated | truncated
        return self._obs(obs), reward, terminated, truncated, info

    def close_extras(self, **kwargs: Any) -> None:
        self.env.close()


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
    env = _make_single(env_id, max_episode_steps, kwargs)
    # PhysicsState must sit inside TimeLimit & co. so their counters pickle as usual
    inner: gym.Env = env
    while isinstance(inner, gym.Wrapper) and isinstance(inner.env, gym.Wrapper):
        inner = inner.env
    if isinstance(inner, gym.Wrapper):
        inner.env = PhysicsState(inner.env)
    else:
        env = PhysicsState(env)
    return env


@dataclass(kw_only=True)
class MuJoCoFactory(EnvFactory):
    """``env=halfcheetah`` etc.: a MuJoCo Gymnasium id with exact checkpoints and optional
    normalization (see the module docstring).

    Args:
        normalize_obs: standardize observations with running moments.
        normalize_reward: divide rewards by the running std of the discounted return.
        reward_gamma: discount of that return (match ``algo.gamma``).
        clip_obs, clip_reward: bounds of normalized values.
        norm_epsilon: added to variances.
        training_envs: (set by ``for_evaluation``, not by config) returns the current
            training vector env whose observation moments evaluation envs copy.
        render_settings: (not by config) frame size and effects of video frames
            (``render_env``); the defaults render fast without a GPU.
    """

    normalize_obs: bool = False
    normalize_reward: bool = False
    reward_gamma: float = 0.99
    clip_obs: float = 10.0
    clip_reward: float = 10.0
    norm_epsilon: float = 1e-8
    training_envs: Callable[[], VectorEnv | None] | None = field(
        default=None, repr=False, compare=False
    )
    render_settings: RenderSettings = field(default_factory=RenderSettings, repr=False)

    def __post_init__(self) -> None:
        require("mujoco", extra="mujoco", what=f"env.id={self.id}")
        super().__post_init__()
        if not 0.0 <= self.reward_gamma <= 1.0:
            raise ConfigError(f"env.reward_gamma={self.reward_gamma}: must be in [0, 1]")
        for key in ("clip_obs", "clip_reward", "norm_epsilon"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"env.{key}={getattr(self, key)}: must be > 0")

    def single_env_fn(self, **make_kwargs: Any) -> Callable[[], gym.Env]:
        check_env_id(self.id)
        kwargs = {**self.kwargs, **make_kwargs}
        return functools.partial(make_mujoco, self.id, self.max_episode_steps, kwargs)

    def make(self, *, num_envs: int | None = None) -> VectorEnv:
        envs = super().make(num_envs=num_envs)
        if not (self.normalize_obs or self.normalize_reward):
            return envs
        return NormalizeVectorEnv(
            envs,
            normalize_obs=self.normalize_obs,
            normalize_reward=self.normalize_reward,
            gamma=self.reward_gamma,
            clip_obs=self.clip_obs,
            clip_reward=self.clip_reward,
            epsilon=self.norm_epsilon,
            obs_moments=self._training_obs_moments(),
            update=self.training_envs is None,
        )

    def _training_obs_moments(self) -> RunningMoments | None:
        if self.training_envs is None:
            return None
        source = self.training_envs()
        return source.obs_moments if isinstance(source, NormalizeVectorEnv) else None

    def for_evaluation(
        self, *, training_envs: Callable[[], VectorEnv | None] | None = None
    ) -> MuJoCoFactory:
        """Raw rewards; observations normalized with a frozen copy of the moments of
        ``training_envs()`` at the time each evaluation env is made."""
        return replace(self, normalize_reward=False, training_envs=training_envs)

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
        if not self.normalize_obs:
            return env
        shape = tuple(env.observation_space.shape or ())
        moments = self._training_obs_moments() or RunningMoments(shape)
        frozen = moments.copy()
        clip, eps = self.clip_obs, self.norm_epsilon
        return gym.wrappers.TransformObservation(
            env,
            lambda obs: normalize(obs, frozen, clip=clip, eps=eps).astype(obs.dtype),
            env.observation_space,
        )
