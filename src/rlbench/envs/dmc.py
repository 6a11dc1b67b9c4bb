"""DeepMind Control Suite (``dm_control``) through Shimmy's Gymnasium bindings: ``env=dmc``.

``env=dmc env.task=cheetah-run`` (any ``<domain>-<task>`` of ``dm_control.suite``:
``walker-walk``, ``quadruped-run``, ``humanoid-run``, ``dog-run``, ...) loads the suite task
and wraps it in ``shimmy.DmControlCompatibilityV0``; ``DMCEnv`` adds what rlbench needs:

- **Flat observations.** The suite's dict observations are concatenated into one float32
  vector in the order of the task's ``observation_spec()`` (the order dm_control defines and
  TD-MPC2, DrQ-v2 and dmc2gym flatten in; not Gymnasium's alphabetical ``Dict`` order).
- **Action repeat** (``env.action_repeat``): each agent action is applied for that many
  simulator (control) steps; rewards are summed, and an episode that ends during the repeat
  ends there. ``DMCFactory.step_multiplier`` is the repeat: what one agent step of one env
  adds to ``env_steps``, which count simulator steps, the unit of the published DMC curves
  (TD-MPC2's ``results/*.csv`` multiply agent steps by the repeat, nicklashansen/tdmpc2#45).
- **Actions in [-1, 1]** (``env.rescale_actions``): tasks whose actuators have other bounds
  (quadruped) get a linear map from [-1, 1] to them, as dm_control's ``action_scale`` wrapper
  does for TD-MPC2 and DrQ-v2; the other tasks are untouched.
- **Exact checkpoints.** A ``DMCEnv`` pickles its whole dm_control environment -- ``MjModel``
  (tasks move targets and resize geoms in it), ``MjData``, the task's RNG, the step counter --
  zlib-compressed (the suite's 800x800 skybox makes each model ~12 MB raw, ~0.7 MB packed;
  the dog's meshes ~30 MB packed): an unpickled env continues bit-identically.
- **Seeding.** ``reset(seed=s)`` re-seeds the task's RNG, so the same seed gives the same
  episodes; the vector env seeds env ``i`` with ``seed + i``.
- **Video frames** are drawn offscreen by Gymnasium's MuJoCo renderer from the task's
  ``MjModel``/``MjData``, as MuJoCo envs' are, with the fast settings of
  ``envs.mujoco.RenderSettings`` (camera 2 for the quadruped, 0 otherwise, as TD-MPC2).
  Not dm_control's ``physics.render``: dm_control fixes its OpenGL backend when it is first
  imported, by whatever imports it first, while this renderer reads ``MUJOCO_GL`` when it
  starts (``egl`` without a display, unless set). Without a display and ``MUJOCO_GL``, and
  with libEGL present, ``MUJOCO_GL=egl`` is also set before dm_control is imported, which
  spares its GLFW probe (a warning without X11).

Episodes end with the task's own time limit (1,000 simulator steps for every suite task but
the two LQR ones, which have none; as ``truncated``); ``env.max_episode_steps`` sets a limit
in agent steps instead. Per-step rewards are in [0, 1], so returns lie in [0, 1000]
(``env.score_range``).
"""

from __future__ import annotations

import ctypes.util
import difflib
import functools
import importlib
import logging
import os
import pickle
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from rlbench.envs.factory import EnvFactory, require
from rlbench.envs.mujoco import RenderSettings
from rlbench.errors import ConfigError

#: Domains filmed by another camera than 0 (TD-MPC2's choice).
CAMERAS: dict[str, int] = {"quadruped": 2}


def _headless_gl(*, probe: bool) -> None:
    """``MUJOCO_GL=egl`` where unset and there is no display (with ``probe``: only where
    libEGL can be found)."""
    if "MUJOCO_GL" in os.environ or os.environ.get("DISPLAY"):
        return
    if not probe or ctypes.util.find_library("EGL"):
        os.environ["MUJOCO_GL"] = "egl"


def _not_settotalmass(record: logging.LogRecord) -> bool:
    """Drops MuJoCo 4's deprecation warning about the cheetah's ``settotalmass`` compiler
    attribute (dm_control's XML), which dm_control logs each time a cheetah is loaded."""
    return "compiler attribute 'settotalmass' is deprecated" not in record.getMessage()


def _import_suite(what: str) -> Any:
    """``dm_control.suite`` (and Shimmy's bindings), or a one-line ConfigError naming the
    pip extra (or the OpenGL backend) that is missing."""
    _headless_gl(probe=True)
    absl = logging.getLogger("absl")
    if _not_settotalmass not in absl.filters:
        absl.addFilter(_not_settotalmass)
    for module in ("dm_control", "shimmy"):
        require(module, extra="dmc", what=what)
    try:
        suite = importlib.import_module("dm_control.suite")
        importlib.import_module("shimmy.dm_control_compatibility")
    except ImportError as e:
        raise ConfigError(f"{what}: {e}: pip install 'rlbench[dmc]'") from None
    except Exception as e:  # dm_control loads the MUJOCO_GL backend at import time
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(
            f"{what}: dm_control cannot load the OpenGL backend "
            f"MUJOCO_GL={os.environ.get('MUJOCO_GL')!r} ({msg}); set MUJOCO_GL to one this "
            "machine has (egl, osmesa, glfw) or to 'disable' to run without videos"
        ) from None
    return suite


def suite_tasks() -> list[str]:
    """Every ``<domain>-<task>`` of ``dm_control.suite``, in the suite's order."""
    suite = _import_suite("env=dmc")
    return [f"{domain}-{task}" for domain, task in suite.ALL_TASKS]


def parse_task(task: str) -> tuple[str, str]:
    """``"cheetah-run"`` -> ``("cheetah", "run")``; a ConfigError naming the valid ones."""
    valid = suite_tasks()
    if task not in valid:
        close = difflib.get_close_matches(task, valid, n=3, cutoff=0.6)
        hint = f"closest: {', '.join(close)}; " if close else ""
        raise ConfigError(f"unknown env.task '{task}' ({hint}valid: {', '.join(valid)})")
    domain, name = task.split("-", 1)
    return domain, name


class DMCEnv(gym.Env[np.ndarray, np.ndarray]):
    """One suite task as a Gymnasium env: flat float32 observations, action repeat, actions
    in [-1, 1], exact pickles (see the module docstring).

    Args:
        task: ``<domain>-<task>``, e.g. ``cheetah-run``.
        action_repeat: simulator steps per ``step`` (rewards summed).
        rescale_actions: map [-1, 1] to the task's action bounds where they differ.
        render_mode: ``"rgb_array"`` for ``render()`` frames ``(H, W, 3)`` uint8.
        render_kwargs: ``height``, ``width``, ``camera_id`` of those frames.
        load_kwargs: keyword arguments of ``dm_control.suite.load`` (``task_kwargs``,
            ``environment_kwargs``, ``visualize_reward``).
    """

    def __init__(
        self,
        task: str,
        *,
        action_repeat: int = 1,
        rescale_actions: bool = True,
        render_mode: str | None = None,
        render_kwargs: dict[str, Any] | None = None,
        load_kwargs: dict[str, Any] | None = None,
    ) -> None:
        if action_repeat < 1:
            raise ConfigError(f"env.action_repeat={action_repeat}: must be >= 1")
        if render_mode not in (None, "rgb_array"):
            raise ConfigError(f"render_mode={render_mode!r}: DMCEnv renders 'rgb_array' only")
        suite = _import_suite(f"env.task={task}")
        domain, name = parse_task(task)
        self.task = task
        self.action_repeat = action_repeat
        self.rescale_actions = rescale_actions
        self.render_mode = render_mode
        self.render_kwargs = dict(render_kwargs or {})
        self._wrap(suite.load(domain, name, **(load_kwargs or {})))

    def _wrap(self, dm_env: Any) -> None:
        """Wrap a dm_control environment (new or unpickled) and derive the spaces."""
        from shimmy.dm_control_compatibility import DmControlCompatibilityV0

        self._env = DmControlCompatibilityV0(dm_env)
        self._renderer: Any = None
        obs_spec = dm_env.observation_spec()
        self.keys: tuple[str, ...] = tuple(obs_spec)
        size = sum(int(np.prod(spec.shape)) for spec in obs_spec.values())
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(size,), dtype=np.float32)
        spec = dm_env.action_spec()
        low = np.broadcast_to(spec.minimum, spec.shape).astype(np.float64)
        high = np.broadcast_to(spec.maximum, spec.shape).astype(np.float64)
        self._rescale = self.rescale_actions and not (np.all(low == -1) and np.all(high == 1))
        self._low, self._half_range = low, (high - low) / 2.0
        if self._rescale:
            low, high = -np.ones_like(low), np.ones_like(high)
        self.action_space = gym.spaces.Box(
            low.astype(np.float32), high.astype(np.float32), dtype=np.float32
        )
        fps = 1.0 / (dm_env.control_timestep() * self.action_repeat)
        self.metadata = {"render_modes": ["rgb_array"], "render_fps": max(round(fps), 1)}

    @property
    def dm_env(self) -> Any:
        """The dm_control environment (``.physics``, ``.task``)."""
        return self._env._env

    @property
    def model(self) -> Any:
        """The ``mujoco.MjModel`` (what ``RenderSettings.apply`` edits)."""
        return self.dm_env.physics.model.ptr

    def flatten(self, obs: dict[str, Any]) -> np.ndarray:
        """A suite observation dict as one float32 vector, in ``self.keys`` order."""
        return np.concatenate([np.ravel(obs[k]) for k in self.keys]).astype(np.float32)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        obs, _ = self._env.reset(seed=seed)  # seed: a new RNG for the task
        return self.flatten(obs), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        a = np.asarray(action, dtype=np.float64)
        if self._rescale:
            a = self._low + (a + 1.0) * self._half_range
        reward, terminated, truncated = 0.0, False, False
        obs: dict[str, Any] = {}
        for _ in range(self.action_repeat):
            obs, r, terminated, truncated, _ = self._env.step(a)
            reward += float(r)
            if terminated or truncated:
                break
        return self.flatten(obs), reward, terminated, truncated, {}

    def render(self) -> np.ndarray | None:
        """An RGB frame ``(H, W, 3)`` uint8 with ``render_mode="rgb_array"``, else ``None``."""
        if self.render_mode != "rgb_array":
            return None
        model, data = self.model, self.dm_env.physics.data.ptr
        renderer = self._renderer
        if renderer is None or renderer.model is not model or renderer.data is not data:
            from gymnasium.envs.mujoco.mujoco_rendering import MujocoRenderer

            if renderer is not None:
                renderer.close()
            _headless_gl(probe=False)
            kwargs = self.render_kwargs
            renderer = self._renderer = MujocoRenderer(
                model,
                data,
                width=kwargs.get("width", 320),
                height=kwargs.get("height", 240),
                camera_id=kwargs.get("camera_id", 0),
            )
        frame: np.ndarray = renderer.render("rgb_array")
        return frame

    def close(self) -> None:
        if "_env" in self.__dict__ and not getattr(self, "_closed", False):
            self._closed = True
            if self._renderer is not None:
                self._renderer.close()
                self._renderer = None
            self._env.close()

    # ------------------------------------------------------------------ exact pickles
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        dm_env = state.pop("_env")._env
        state["_renderer"] = None  # an OpenGL context: a new one is made on the next render
        state["_dm_env"] = zlib.compress(pickle.dumps(dm_env, pickle.HIGHEST_PROTOCOL), 1)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        _import_suite(f"env.task={state['task']}")  # MUJOCO_GL is set before dm_control loads
        dm_env = pickle.loads(zlib.decompress(state.pop("_dm_env")))
        self.__dict__.update(state)
        self._wrap(dm_env)


def make_dmc(
    task: str,
    max_episode_steps: int | None,
    options: dict[str, Any],
    make_kwargs: dict[str, Any],
) -> gym.Env:
    """One ``DMCEnv`` (``options``: its constructor's keyword arguments; ``make_kwargs``: the
    render ones), with a time limit in agent steps if ``max_episode_steps`` (module level:
    picklable)."""
    env: gym.Env = DMCEnv(task, **options, **make_kwargs)
    if max_episode_steps is not None:
        env = gym.wrappers.TimeLimit(env, max_episode_steps)
    return env


@dataclass(kw_only=True)
class DMCFactory(EnvFactory):
    """``env=dmc``: a DeepMind Control Suite task (see the module docstring).

    Args:
        task: ``<domain>-<task>`` of ``dm_control.suite``, e.g. ``cheetah-run``.
        action_repeat: simulator steps per agent step (rewards summed); env steps count
            simulator steps (``step_multiplier``).
        rescale_actions: actions in [-1, 1], mapped to the task's bounds where they differ.
        id: a label (runs and reports group by it); default ``dm_control/<task>-v0``.
        max_episode_steps: a time limit in agent steps (``None``: the task's own,
            1,000 simulator steps).
        kwargs: keyword arguments of ``dm_control.suite.load``.
        score_range: returns for min-max normalization: a suite episode's are in [0, 1000].
        render_settings: (not by config) frame size and effects of video frames.
    """

    id: str = ""
    task: str = "cheetah-run"
    action_repeat: int = 1
    rescale_actions: bool = True
    score_range: list[float] | None = field(default_factory=lambda: [0.0, 1000.0])
    render_settings: RenderSettings = field(default_factory=RenderSettings, repr=False)

    def __post_init__(self) -> None:
        self.id = self.id or f"dm_control/{self.task}-v0"
        self.name = self.name or self.task
        if self.num_envs < 1:
            raise ConfigError(f"env.num_envs={self.num_envs}: must be >= 1")
        if self.vectorization not in ("auto", "serial", "sync"):
            raise ConfigError(
                f"env.vectorization='{self.vectorization}': allowed auto, serial, sync "
                "(dm_control has no native vector env)"
            )
        self.check_normalization()
        if self.action_repeat < 1:
            raise ConfigError(f"env.action_repeat={self.action_repeat}: must be >= 1")
        if self.max_episode_steps is not None and self.max_episode_steps < 1:
            raise ConfigError(f"env.max_episode_steps={self.max_episode_steps}: must be >= 1")
        _import_suite(f"env.task={self.task}")
        parse_task(self.task)

    @property
    def step_multiplier(self) -> int:
        """Simulator steps per agent step: what one vector step adds to ``env_steps`` per
        env."""
        return self.action_repeat

    def backend(self, num_envs: int) -> str:
        return "serial" if self.vectorization == "auto" else self.vectorization

    def single_env_fn(self, **make_kwargs: Any) -> Callable[[], gym.Env]:
        options = {
            "action_repeat": self.action_repeat,
            "rescale_actions": self.rescale_actions,
            "load_kwargs": dict(self.kwargs),
        }
        return functools.partial(make_dmc, self.task, self.max_episode_steps, options, make_kwargs)

    def render_env(self) -> gym.Env[Any, Any]:
        """One env rendering RGB frames as ``render_settings`` says (offscreen)."""
        domain, _ = parse_task(self.task)
        settings = self.render_settings
        size = {"height": settings.height, "width": settings.width}
        render_kwargs = {**size, "camera_id": CAMERAS.get(domain, 0)}
        env = self.single_env_fn(render_mode="rgb_array", render_kwargs=render_kwargs)()
        settings.apply(env)
        return self.normalize_render_env(env)
