"""Building vectorized training and evaluation envs from config."""

from __future__ import annotations

import difflib
import functools
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Literal

import gymnasium as gym
import numpy as np
from gymnasium.vector import VectorEnv

from rlbench.envs.normalize import NormalizeVectorEnv, RunningMoments, normalize
from rlbench.envs.serial import SerialVectorEnv
from rlbench.errors import ConfigError

Vectorization = Literal["auto", "serial", "sync", "native"]
VECTORIZATIONS: tuple[str, ...] = ("auto", "serial", "sync", "native")

#: With at least this many envs a native vector env (CartPole's) beats stepping separate envs:
#: its cost is nearly flat in N (60-130 us per vector step) while serial stepping costs about
#: 7-11 us per env. What counts is the cost inside training, where a torch policy acts before
#: every step and evicts the caches both need: ``scripts/bench_envs.py`` on the shared 2-core
#: machine (2 runs of 5 blocks) measured serial / native 71-102 / 96-129 us at N=8, 90-99 /
#: 104-112 at N=10, 115-132 / 112-127 at N=12 and 122-179 / 100-133 at N=16. Stepping alone,
#: native is ahead from N=10 (N=8: 70 vs 75 us).
NATIVE_MIN_ENVS = 12
#: Evaluation episode j is seeded ``seed + EVAL_SEED_OFFSET + j``: disjoint from training seeds.
EVAL_SEED_OFFSET = 1_000_000

#: Gymnasium ids whose envs need an optional package: prefix -> (module, pip extra).
OPTIONAL_PACKAGES: dict[str, tuple[str, str]] = {"MinAtar/": ("minatar", "minatar")}


def require(module: str, *, extra: str, what: str) -> Any:
    """Import ``module`` or raise a one-line ConfigError naming the pip extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(
            f"{what} needs the package '{module}': pip install 'rlbench[{extra}]'"
        ) from None


#: Gymnasium's own envs that need an optional package: entry-point module -> (module, extra).
OPTIONAL_ENTRY_POINTS: dict[str, tuple[str, str]] = {
    "gymnasium.envs.mujoco": ("mujoco", "mujoco"),
    "gymnasium.envs.box2d": ("Box2D", "box2d"),  # LunarLander, BipedalWalker, CarRacing
}


def _required_package(spec: gym.envs.registration.EnvSpec) -> tuple[str, str] | None:
    """``(module, pip extra)`` that ``spec``'s env needs beyond the core install, if any."""
    entry = spec.entry_point if isinstance(spec.entry_point, str) else ""
    for prefix, needs in OPTIONAL_ENTRY_POINTS.items():
        if entry.startswith(prefix):
            return needs
    return None


def _ensure_registered(env_id: str) -> str:
    """Import what registers ``env_id``; returns the bare id.

    ``module:Env-v0`` imports ``module`` first (Gymnasium's convention for custom envs);
    ``ALE/...`` ids appear only after ``gym.register_envs(ale_py)``.
    """
    if ":" in env_id:
        module, env_id = env_id.split(":", 1)
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise ConfigError(f"env.id: cannot import module '{module}': {e}") from None
    if env_id not in gym.registry and env_id.startswith("ALE/"):
        import ale_py

        gym.register_envs(ale_py)
    for prefix, (module, extra) in OPTIONAL_PACKAGES.items():
        if env_id not in gym.registry and env_id.startswith(prefix):
            require(f"{module}.gym", extra=extra, what=f"env.id={env_id}").register_envs()
    return env_id


def check_env_id(env_id: str) -> gym.envs.registration.EnvSpec:
    """Return the spec of a registered Gymnasium id or raise a one-line ConfigError."""
    env_id = _ensure_registered(env_id)
    if env_id not in gym.registry:
        close = difflib.get_close_matches(env_id, list(gym.registry), n=5, cutoff=0.5)
        hint = f"; closest registered ids: {', '.join(close)}" if close else ""
        raise ConfigError(f"unknown env.id '{env_id}'{hint}")
    spec = gym.registry[env_id]
    needs = _required_package(spec)
    if needs is not None:
        require(needs[0], extra=needs[1], what=f"env.id={env_id}")
    return spec


class ReplayOnUnpickle(gym.Wrapper[Any, Any, Any, Any]):
    """Exact pickles of an env that pickles as its constructor arguments (Gymnasium's
    ``EzPickle`` envs: LunarLander, BipedalWalker and other Box2D envs).

    Such an env comes back from a pickle freshly built and not reset, so a resumed run would
    step an env with no world in it (LunarLander: ``assert self.lander is not None``). This
    wrapper keeps what made the current episode: the reset's seed and options, the RNG state
    before it when the reset was unseeded (autoresets), and the actions since. Unpickling
    rebuilds the env, resets it the same way and replays the actions, which restores the
    episode exactly (the simulation is deterministic given the RNG and the actions; at most
    one episode of steps is replayed). It sits innermost, so the counters of ``TimeLimit``
    and the other wrappers above it pickle as usual.
    """

    def __init__(self, env: gym.Env[Any, Any]) -> None:
        super().__init__(env)
        # (seed, options, RNG state before an unseeded reset) of the current episode
        self._episode: tuple[int | None, dict[str, Any] | None, Any] | None = None
        self._actions: list[Any] = []

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        rng = None if seed is not None else self.env.unwrapped.np_random.bit_generator.state
        obs, info = self.env.reset(seed=seed, options=options)
        self._episode, self._actions = (seed, options, rng), []
        return obs, info

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        out = self.env.step(action)
        self._actions.append(np.array(action, copy=True))
        return out

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if self._episode is None:
            return
        seed, options, rng = self._episode
        if rng is not None:
            generator = np.random.Generator(getattr(np.random, rng["bit_generator"])())
            generator.bit_generator.state = rng
            self.env.unwrapped.np_random = generator
        self.env.reset(seed=seed, options=options)
        for action in self._actions:
            self.env.step(action)


def wrap_innermost(env: gym.Env[Any, Any], wrapper: Callable[[gym.Env], gym.Env]) -> gym.Env:
    """``env`` with ``wrapper`` put directly around its unwrapped env, inside every wrapper
    ``gym.make`` added (so their own state pickles with them). Returns the outermost env."""
    inner: gym.Env = env
    while isinstance(inner, gym.Wrapper) and isinstance(inner.env, gym.Wrapper):
        inner = inner.env
    if isinstance(inner, gym.Wrapper):
        inner.env = wrapper(inner.env)
        return env
    return wrapper(env)


def _make_single(
    env_id: str, max_episode_steps: int | None, kwargs: dict[str, Any], *, replay: bool = True
) -> gym.Env:
    """One env as ``gym.make`` makes it; with ``replay``, envs that pickle as their
    constructor arguments get ``ReplayOnUnpickle`` so checkpoints restore them exactly."""
    env = gym.make(env_id, max_episode_steps=max_episode_steps, **kwargs)
    if replay and isinstance(env.unwrapped, gym.utils.EzPickle):
        env = wrap_innermost(env, ReplayOnUnpickle)
    return env


@dataclass(kw_only=True)
class EnvFactory:
    """Makes the vector envs of one experiment: ``env.*`` in config.

    Args:
        id: any registered Gymnasium id, e.g. ``CartPole-v1``.
        name: short name used in run directory names.
        num_envs: training envs stepped in lockstep.
        vectorization: ``auto`` picks the fastest measured backend for the env and count.
        max_episode_steps: override of the registered time limit (``None`` keeps it).
        kwargs: extra keyword arguments for ``gym.make``.
        score_range: ``[min, max]`` returns for min-max normalization in reports.
        normalize_obs: standardize observations with running moments (SB3's
            ``VecNormalize``; see ``rlbench.envs.normalize``). The moments are saved in
            checkpoints; evaluation envs use a frozen copy of the training envs'.
        normalize_reward: divide training rewards by the running std of the discounted
            return (evaluation envs and ``eval/*`` returns stay raw).
        reward_gamma: discount of that return (match ``algo.gamma``).
        clip_obs, clip_reward: bounds of normalized values.
        norm_epsilon: added to variances.
        training_envs: (set by ``for_evaluation``, not by config) returns the current
            training vector env whose observation moments evaluation envs copy.
    """

    #: Whether ``normalize_obs`` / ``normalize_reward`` apply (False for image observations).
    normalizable: ClassVar[bool] = True

    id: str
    name: str = ""
    num_envs: int = 1
    vectorization: str = "auto"
    max_episode_steps: int | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    score_range: list[float] | None = None
    normalize_obs: bool = False
    normalize_reward: bool = False
    reward_gamma: float = 0.99
    clip_obs: float = 10.0
    clip_reward: float = 10.0
    norm_epsilon: float = 1e-8
    training_envs: Callable[[], VectorEnv | None] | None = field(
        default=None, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if self.num_envs < 1:
            raise ConfigError(f"env.num_envs={self.num_envs}: must be >= 1")
        if self.vectorization not in VECTORIZATIONS:
            raise ConfigError(
                f"env.vectorization='{self.vectorization}': allowed {', '.join(VECTORIZATIONS)}"
            )
        self.check_normalization()
        check_env_id(self.id)

    def check_normalization(self) -> None:
        """One-line ConfigErrors for normalization options out of range or not supported."""
        if (self.normalize_obs or self.normalize_reward) and not self.normalizable:
            key = "normalize_obs" if self.normalize_obs else "normalize_reward"
            raise ConfigError(
                f"env.{key}=true: {type(self).__name__} envs have image observations; "
                "normalization is for vector observations (allowed: false)"
            )
        if not 0.0 <= self.reward_gamma <= 1.0:
            raise ConfigError(f"env.reward_gamma={self.reward_gamma}: must be in [0, 1]")
        for key in ("clip_obs", "clip_reward", "norm_epsilon"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"env.{key}={getattr(self, key)}: must be > 0")

    @property
    def step_multiplier(self) -> int:
        """Env steps one agent step of one env counts for (the action repeat of families
        that repeat actions inside the env, such as DeepMind Control): ``env_steps`` count
        simulator steps, the unit of published learning curves."""
        return 1

    def backend(self, num_envs: int) -> str:
        """The vectorization used for ``num_envs`` envs."""
        has_native = check_env_id(self.id).vector_entry_point is not None
        if self.vectorization == "native" and not has_native:
            raise ConfigError(f"env.vectorization=native: {self.id} has no native vector env")
        if self.vectorization != "auto":
            return self.vectorization
        return "native" if has_native and num_envs >= NATIVE_MIN_ENVS else "serial"

    def make(self, *, num_envs: int | None = None) -> VectorEnv:
        """A new, not yet reset vector env of ``num_envs`` (default ``self.num_envs``) envs,
        normalized where ``normalize_obs`` / ``normalize_reward`` say."""
        envs = self.make_raw(num_envs=num_envs)
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
            obs_moments=self.training_obs_moments(),
            update=self.training_envs is None,
        )

    def make_raw(self, *, num_envs: int | None = None) -> VectorEnv:
        """``make`` without normalization: the vector env of the sub-envs themselves."""
        n = self.num_envs if num_envs is None else num_envs
        backend = self.backend(n)
        if backend == "native":
            kwargs = dict(self.kwargs)
            if self.max_episode_steps is not None:
                kwargs["max_episode_steps"] = self.max_episode_steps
            return gym.make_vec(
                self.id, num_envs=n, vectorization_mode="vector_entry_point", **kwargs
            )
        # functools.partial (not a lambda) keeps the vector env picklable for checkpoints.
        fns = [self.single_env_fn()] * n
        if backend == "sync":
            return gym.vector.SyncVectorEnv(fns)
        return SerialVectorEnv(fns)

    def single_env_fn(self, **make_kwargs: Any) -> Callable[[], gym.Env]:
        """A picklable function making one env as the vector env's sub-envs are made
        (``make_kwargs`` go to ``gym.make``, e.g. ``render_mode``)."""
        kwargs = {**self.kwargs, **make_kwargs}
        return functools.partial(_make_single, self.id, self.max_episode_steps, kwargs)

    def spaces(self) -> tuple[gym.Space[Any], gym.Space[Any]]:
        """``(single_observation_space, single_action_space)`` of one env."""
        env = self.single_env_fn()()
        try:
            return env.observation_space, env.action_space
        finally:
            env.close()

    def for_evaluation(
        self, *, training_envs: Callable[[], VectorEnv | None] | None = None
    ) -> EnvFactory:
        """The factory of evaluation envs: training-only options off (reward normalization,
        Atari's episodic life) and observation moments copied, frozen, from
        ``training_envs()`` at the time each evaluation env is made."""
        if not (self.normalize_obs or self.normalize_reward):
            return self
        return replace(self, normalize_reward=False, training_envs=training_envs)

    def training_obs_moments(self) -> RunningMoments | None:
        """The observation moments of the current training envs (``training_envs``), if they
        normalize observations."""
        if self.training_envs is None:
            return None
        source = self.training_envs()
        return source.obs_moments if isinstance(source, NormalizeVectorEnv) else None

    def normalize_render_env(self, env: gym.Env[Any, Any]) -> gym.Env[Any, Any]:
        """``env`` (one render env) with observations normalized like evaluation envs'."""
        if not self.normalize_obs:
            return env
        shape = tuple(env.observation_space.shape or ())
        frozen = (self.training_obs_moments() or RunningMoments(shape)).copy()
        clip, eps = self.clip_obs, self.norm_epsilon
        return gym.wrappers.TransformObservation(
            env,
            lambda obs: normalize(obs, frozen, clip=clip, eps=eps).astype(obs.dtype),
            env.observation_space,
        )

    def render_env(self) -> gym.Env[Any, Any]:
        """One env whose observations match an evaluation sub-env's and whose ``render()``
        returns RGB frames ``(H, W, 3)`` uint8, for videos of evaluation episodes."""
        spec = check_env_id(self.id)
        modes = _render_modes(spec)
        if "rgb_array" not in modes:
            raise ConfigError(f"video: {self.id} cannot render RGB frames (render modes {modes})")
        try:
            env = self.single_env_fn(render_mode="rgb_array")()
        except gym.error.DependencyNotInstalled as e:
            raise ConfigError(f"video: {self.id} cannot render: {str(e).splitlines()[0]}") from None
        return self.normalize_render_env(env)


def _render_modes(spec: gym.envs.registration.EnvSpec) -> list[str]:
    """The ``render_modes`` an env class declares (without making the env)."""
    entry = spec.entry_point
    if isinstance(entry, str):
        module, _, name = entry.partition(":")
        entry = getattr(importlib.import_module(module), name)
    metadata = getattr(entry, "metadata", {}) or {}
    return list(metadata.get("render_modes", []))


def random_actions(space: gym.Space[Any], n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` uniformly random actions from a single-env action space, drawn from ``rng``."""
    if isinstance(space, gym.spaces.Discrete):
        return rng.integers(space.n, size=n) + int(space.start)
    if isinstance(space, gym.spaces.Box):
        low = np.broadcast_to(space.low, space.shape)
        high = np.broadcast_to(space.high, space.shape)
        return rng.uniform(low, high, size=(n, *space.shape)).astype(space.dtype)
    raise ConfigError(f"random actions for {space} are not supported")
