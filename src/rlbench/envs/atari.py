"""Atari through ale-py's native vector env (C++ threads), deterministic and resumable.

``AtariVectorEnv`` (ale-py) steps all envs in C++ worker threads with the standard
preprocessing done there too: frame skip with max-pooling of the last two frames, 84x84
grayscale (``cv2.INTER_AREA``), a zero-padded frame stack, up to ``noop_max`` no-ops and FIRE
on reset, sticky actions (Machado et al. 2018) and a per-episode frame limit. On the 2-core
dev machine it steps Breakout x8 2.0 to 2.2x faster than Gymnasium's ``SyncVectorEnv`` with
``AtariPreprocessing`` (``scripts/bench_envs.py`` re-measures). ``NativeAtariVectorEnv``
wraps it with what rlbench needs on top:

- **NEXT_STEP autoreset**, as Gymnasium 1.x and the DataModules expect; ale-py's native
  mode already is, and rewards are returned unclipped (clipping is ``algo.clip_rewards``).
- **Episodic life done right.** ale-py's own ``episodic_life`` resets the *whole game* when
  a life is lost (checked on ale-py 0.12.1), which is not the DQN protocol. Here a lost life
  ends the episode for learning (``terminated``) while the game goes on: the following step,
  which NEXT_STEP consumers ignore, is a NOOP (as in Stable-Baselines3's
  ``EpisodicLifeEnv``). ``rollout/*`` statistics are then per life; evaluation envs never
  use it (``AtariFactory.for_evaluation``), so ``eval/*`` returns are whole games.
- **Seeding.** ``reset(seed=s)`` seeds env ``i`` with ``s + i``: two runs with one seed see
  identical observations and rewards.
- **Exact resume by replay.** The native env's state cannot be read out, but it is a pure
  function of the reset seeds and the actions sent since. Pickling saves exactly those (one
  byte per env step) plus a digest of the last observation; unpickling builds a new native
  env, replays the actions and checks the digest, so a resumed run continues bit-identically.
  The replay costs about as much as the env steps of the run so far, without learning
  (a few minutes per million env steps on 2 cores); ``resume_replay=False`` instead truncates
  every episode on resume (see ``NativeAtariVectorEnv``).
- **FIRE after a lost life** (``fire_on_life_loss``), so Breakout serves the next ball even
  for a policy that never presses FIRE (evaluation would otherwise run to the frame cap).
  Evaluation envs also press FIRE on the first step of every game (``fire_on_start``):
  ale-py's own reset FIRE lasts one frame, and sticky actions drop it a quarter of the time
  (Breakout with a NOOP policy: 5 of 16 games never served, checked on ale-py 0.12.1).
"""

from __future__ import annotations

import difflib
import hashlib
import logging
import os
import time
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv

from rlbench.envs.factory import EnvFactory
from rlbench.errors import CheckpointError, ConfigError

log = logging.getLogger(__name__)

#: Largest seed ale-py accepts (its seeds are C ``int``).
MAX_SEED = 2**31 - 1
_HISTORY_CHUNK = 4096


def rom_ids() -> list[str]:
    """The snake_case ROM names ale-py ships (``breakout``, ``ms_pacman``, ...)."""
    from ale_py import roms

    return sorted(roms.get_all_rom_ids())


def check_game(game: str) -> str:
    """Return ``game`` if ale-py ships its ROM, else raise a one-line ConfigError with the
    closest names (``Breakout`` and ``ms-pacman`` are accepted as ``breakout``,
    ``ms_pacman``)."""
    names = rom_ids()
    key = game.strip().replace("-", "_")
    if key not in names:  # CamelCase -> snake_case
        key = "".join(f"_{c.lower()}" if c.isupper() else c for c in key).lstrip("_")
    if key in names:
        return key
    close = difflib.get_close_matches(key, names, n=5, cutoff=0.6)
    hint = f"; closest: {', '.join(close)}" if close else f"; {len(names)} games, e.g. pong"
    raise ConfigError(f"env.game='{game}' is not an Atari ROM shipped with ale-py{hint}")


def _native_options(options: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments of ``ale_py.vector_env.AtariVectorEnv`` for our options."""
    return {
        "frameskip": options["frame_skip"],
        "stack_num": options["frame_stack"],
        "img_height": options["screen_size"],
        "img_width": options["screen_size"],
        "grayscale": True,
        "maxpool": True,
        "noop_max": options["noop_max"],
        "use_fire_reset": options["fire_reset"],
        "repeat_action_probability": options["repeat_action_probability"],
        "full_action_space": options["full_action_space"],
        "max_num_frames_per_episode": options["max_episode_frames"],
        "num_threads": options["num_threads"],
        "episodic_life": False,  # it resets the whole game: done here instead
        "life_loss_info": False,
        "reward_clipping": False,
        "autoreset_mode": AutoresetMode.NEXT_STEP,
        **options["extra"],
    }


def native_threads(requested: int, num_envs: int) -> int:
    """Worker threads for the native env: ``requested``, or for 0 one per env up to the cores
    this process may use. (ale-py's own 0 takes ``std::thread::hardware_concurrency``, which
    ignores CPU affinity: under ``taskset`` or a cgroup CPU set it starts more threads than
    the process has cores, and they contend: Breakout x8 on the 2-core dev machine steps
    about 10% faster with 2 threads than with 8, ``scripts/bench_envs.py``.)"""
    if requested > 0:
        return requested
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(num_envs, cores or 1))


class NativeAtariVectorEnv(VectorEnv):
    """ale-py's ``AtariVectorEnv`` with NEXT_STEP autoreset, episodic life as a learning
    signal, per-env seeds and exact resume by replay (see the module docstring).

    Observations ``(num_envs, frame_stack, screen_size, screen_size)`` uint8; rewards
    ``(num_envs,)`` float64, unclipped; ``info`` is ale-py's (``lives``, frame numbers).

    Args:
        game: snake_case ROM name.
        num_envs: envs stepped together.
        episodic_life: a lost life ends the episode for learning; the game goes on.
        fire_on_life_loss: in games with a FIRE action, the step after a lost life presses
            FIRE instead of the agent's action (with ``episodic_life``, instead of the NOOP
            restart). Breakout waits for FIRE to serve the next ball, so a greedy policy that
            never presses it would otherwise stall until ``max_episode_frames``.
        fire_on_start: in games with a FIRE action, the first step of every game presses
            FIRE instead of the agent's action (it is sent through the whole frame skip, so
            sticky actions drop it with probability ``p**frame_skip``, not ``p``). For
            evaluation envs: in training it would store a transition whose action was not
            the one taken.
        resume_replay: on unpickling, replay the recorded actions to restore the exact
            state (``True``), or start fresh games: then the first ``step`` after unpickling
            returns the last observation again with reward 0 and ``truncated`` set for every
            env (one placeholder transition per env), and the next one the new games' first
            observations, as NEXT_STEP consumers expect.
        options: the remaining ``AtariFactory`` preprocessing options.
    """

    metadata: dict[str, Any] = {"autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(
        self,
        *,
        game: str,
        num_envs: int,
        episodic_life: bool = False,
        fire_on_life_loss: bool = True,
        fire_on_start: bool = False,
        resume_replay: bool = True,
        **options: Any,
    ) -> None:
        self.game = game
        self.num_envs = num_envs
        self.episodic_life = episodic_life
        self.fire_on_life_loss = fire_on_life_loss
        self.fire_on_start = fire_on_start
        self.resume_replay = resume_replay
        self.options = options
        self._native = self._build()
        self.single_observation_space = self._native.single_observation_space
        self.single_action_space = self._native.single_action_space
        self.observation_space = self._native.observation_space
        self.action_space = self._native.action_space
        actions = list(self._native.ale.get_action_set())
        names = [a.name for a in actions]
        noop = names.index("NOOP") if "NOOP" in names else 0
        fire = names.index("FIRE") if "FIRE" in names else None
        # what the step after a lost life sends instead of the agent's action: FIRE to serve
        # again, else with episodic life a NOOP restart, else nothing is replaced
        after_loss = fire if fire_on_life_loss else None
        if after_loss is None and episodic_life:
            after_loss = noop
        self._after_loss_action = after_loss
        self._start_action = fire if fire_on_start else None  # the first step of a game
        self.last_sent = np.zeros(num_envs, dtype=np.int64)  # actions the emulators got
        self._seeds: np.ndarray | None = None  # reset seeds of the last reset()
        self._chunks: list[np.ndarray] = []  # full chunks of actions sent since then
        self._chunk = np.zeros((_HISTORY_CHUNK, num_envs), dtype=np.uint8)
        self._chunk_len = 0
        self._lives = np.zeros(num_envs, dtype=np.int64)
        self._lost_life = np.zeros(num_envs, dtype=np.bool_)  # the last step lost a life
        self._started = np.zeros(num_envs, dtype=np.bool_)  # the last step started a game
        self._ended = np.zeros(num_envs, dtype=np.bool_)  # the last step ended a game
        self._last_obs: np.ndarray | None = None
        # steps to return before stepping again (set when unpickled without replay)
        self._queued: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]] = []

    def _build(self) -> Any:
        from ale_py.vector_env import AtariVectorEnv

        kwargs = _native_options(self.options)
        kwargs["num_threads"] = native_threads(self.options["num_threads"], self.num_envs)
        return AtariVectorEnv(self.game, self.num_envs, **kwargs)

    # ------------------------------------------------------------------ stepping
    def reset(
        self,
        *,
        seed: int | np.ndarray | None = None,
        options: dict[str, Any] | None = None,
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start new games in every env; an int ``seed`` seeds env ``i`` with ``seed + i``
        (``None`` draws seeds from the OS, still recorded for resume).

        Returns:
            ``(obs (num_envs, stack, H, W) uint8, info)``.
        """
        if options:
            raise ValueError(f"NativeAtariVectorEnv.reset takes no options, got {options}")
        if seed is None:
            seeds = np.random.default_rng().integers(0, MAX_SEED - self.num_envs, self.num_envs)
        elif isinstance(seed, int | np.integer):
            seeds = int(seed) + np.arange(self.num_envs)
        else:
            seeds = np.asarray(seed, dtype=np.int64).reshape(self.num_envs)
        if seeds.min() < 0 or seeds.max() > MAX_SEED:
            raise ValueError(f"Atari seeds must be in [0, {MAX_SEED}], got {seeds.tolist()}")
        obs, info = self._native.reset(seed=seeds.astype(np.int64))
        self._seeds = seeds.astype(np.int64)
        self._chunks, self._chunk_len = [], 0
        self._lives = np.asarray(info["lives"], dtype=np.int64).copy()
        self._lost_life[:] = False
        self._started[:] = True
        self._ended[:] = False
        self._queued = []
        self._last_obs = obs
        return obs, info

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step every env with ``actions`` ``(num_envs,)`` (ignored for envs whose previous
        step ended an episode: they restart, per NEXT_STEP)."""
        if self._queued:
            return self._queued.pop(0)
        if self._seeds is None:
            raise RuntimeError("call reset() before step()")
        sent = np.asarray(actions, dtype=np.int64).reshape(self.num_envs)
        after_loss = self._lost_life
        if self._after_loss_action is not None and after_loss.any():
            sent = np.where(after_loss, self._after_loss_action, sent)
        if self._start_action is not None and self._started.any():
            sent = np.where(self._started, self._start_action, sent)
        self._record(sent)
        self.last_sent = sent
        obs, reward, terminated, truncated, info = self._native.step(sent)
        reward = reward.astype(np.float64)
        lives = np.asarray(info["lives"], dtype=np.int64)
        native_end = terminated | truncated
        lost = (lives < self._lives) & ~native_end
        if self.episodic_life:
            lost &= ~after_loss
            if after_loss.any():  # the restart after a lost life: not a transition
                reward[after_loss] = 0.0
            terminated = terminated | lost
        self._lost_life = lost
        self._started = self._ended  # NEXT_STEP: this step reset the envs that ended before
        self._ended = native_end
        self._lives = lives.copy()
        self._last_obs = obs
        return obs, reward, terminated, truncated, info

    def _record(self, sent: np.ndarray) -> None:
        self._chunk[self._chunk_len] = sent
        self._chunk_len += 1
        if self._chunk_len == _HISTORY_CHUNK:
            self._chunks.append(self._chunk)
            self._chunk = np.zeros_like(self._chunk)
            self._chunk_len = 0

    def _history(self) -> np.ndarray:
        """``(T, num_envs)`` uint8 actions sent since the last reset."""
        return np.concatenate([*self._chunks, self._chunk[: self._chunk_len]])

    def close_extras(self, **kwargs: Any) -> None:
        self._native = None

    # ------------------------------------------------------------------ pickling
    def __getstate__(self) -> dict[str, Any]:
        last = self._last_obs
        return {
            "game": self.game,
            "num_envs": self.num_envs,
            "episodic_life": self.episodic_life,
            "fire_on_life_loss": self.fire_on_life_loss,
            "fire_on_start": self.fire_on_start,
            "resume_replay": self.resume_replay,
            "options": self.options,
            "seeds": None if self._seeds is None else self._seeds.tolist(),
            "history": self._history().tobytes() if self._seeds is not None else b"",
            "lives": self._lives.tolist(),
            "life_reset": self._lost_life.tolist(),
            "started": self._started.tolist(),
            "ended": self._ended.tolist(),
            "last_obs": None if last is None else np.ascontiguousarray(last).tobytes(),
            "digest": None if last is None else _digest(last),
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(  # type: ignore[misc]
            game=state["game"],
            num_envs=state["num_envs"],
            episodic_life=state["episodic_life"],
            fire_on_life_loss=state.get("fire_on_life_loss", False),
            fire_on_start=state.get("fire_on_start", False),
            resume_replay=state["resume_replay"],
            **state["options"],
        )
        if state["seeds"] is None:
            return
        shape = self.observation_space.shape
        last_obs = np.frombuffer(state["last_obs"], dtype=np.uint8).reshape(shape).copy()
        if not self.resume_replay:
            # NEXT_STEP view of "every episode was truncated at the checkpoint": the next step
            # returns the last observation again, truncated; the one after, the new games.
            obs, _ = self.reset(seed=_fresh_seeds(state))
            n, no = self.num_envs, np.zeros(self.num_envs, dtype=np.bool_)
            self._queued = [(last_obs, np.zeros(n), no, ~no, {}), (obs, np.zeros(n), no, no, {})]
            return
        history = np.frombuffer(state["history"], dtype=np.uint8).reshape(-1, self.num_envs)
        start = time.perf_counter()
        obs, _ = self.reset(seed=np.asarray(state["seeds"], dtype=np.int64))
        for sent in history:
            obs, *_ = self._native.step(sent.astype(np.int64))
            self._record(sent)
        if _digest(obs) != state["digest"]:
            raise CheckpointError(
                f"Atari env replay of {len(history)} steps did not reproduce the saved state "
                "(different ale-py version?); resume with env.resume_replay=false"
            )
        if len(history):
            log.info(
                "restored %d Atari envs by replaying %d steps in %.1f s",
                self.num_envs,
                len(history),
                time.perf_counter() - start,
            )
        self._lives = np.asarray(state["lives"], dtype=np.int64)
        self._lost_life = np.asarray(state["life_reset"], dtype=np.bool_)
        unset = [False] * self.num_envs  # checkpoints from before fire_on_start
        self._started = np.asarray(state.get("started", unset), dtype=np.bool_)
        self._ended = np.asarray(state.get("ended", unset), dtype=np.bool_)
        self._last_obs = obs


def _digest(obs: np.ndarray) -> str:
    return hashlib.blake2b(np.ascontiguousarray(obs).tobytes(), digest_size=16).hexdigest()


def _fresh_seeds(state: dict[str, Any]) -> np.ndarray:
    """Seeds for the new games after a resume without replay: a pure function of the saved
    state, so two resumes of one checkpoint start the same games."""
    mix = np.random.SeedSequence([int(s) for s in state["seeds"]] + [len(state["history"])])
    return mix.generate_state(state["num_envs"], dtype=np.uint32).astype(np.int64) % MAX_SEED


class AtariRenderEnv(gym.Env[np.ndarray, np.int64]):
    """One Atari env with the training observation and an RGB ``render()`` for videos.

    Two native envs with the same seed run in lockstep: one with the training preprocessing
    (its observations go to the agent), one emitting raw 210x160 RGB frames. ALE's dynamics
    do not depend on preprocessing, so both play the same game (rewards, lives and episode
    ends are checked to agree).
    """

    metadata: dict[str, Any] = {"render_modes": ["rgb_array"], "render_fps": 15}

    def __init__(self, *, game: str, render_mode: str = "rgb_array", **options: Any) -> None:
        from ale_py.vector_env import AtariVectorEnv

        self.render_mode = render_mode
        self._env = NativeAtariVectorEnv(game=game, num_envs=1, **options)
        rgb = _native_options({**options, "frame_stack": 1, "screen_size": 0})
        rgb.update(grayscale=False, img_height=210, img_width=160, maxpool=False)
        self._rgb: Any = AtariVectorEnv(game, 1, **rgb)
        self.observation_space = self._env.single_observation_space
        self.action_space = self._env.single_action_space
        self._frame = np.zeros((210, 160, 3), dtype=np.uint8)
        fps = 60 // max(int(options.get("frame_skip", 4)), 1)
        self.metadata = {**self.metadata, "render_fps": fps}

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        if seed is None:
            seed = int(self.np_random.integers(0, MAX_SEED))
        obs, info = self._env.reset(seed=seed)
        frame, _ = self._rgb.reset(seed=np.array([seed], dtype=np.int64))
        self._frame = frame[0, 0]
        return obs[0], {k: v[0] for k, v in info.items()}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        sent = np.array([int(action)], dtype=np.int64)
        obs, reward, terminated, truncated, _ = self._env.step(sent)
        frame, rgb_reward, rgb_term, rgb_trunc, _ = self._rgb.step(self._env.last_sent)
        if rgb_reward[0] != reward[0] or (rgb_term[0] or rgb_trunc[0]) != (
            terminated[0] or truncated[0]
        ):
            raise RuntimeError("Atari render env lost lockstep with the observation env")
        self._frame = frame[0, 0]
        return obs[0], float(reward[0]), bool(terminated[0]), bool(truncated[0]), {}

    def render(self) -> np.ndarray:
        return self._frame.copy()

    def close(self) -> None:
        self._env.close()
        self._rgb = None


@dataclass(kw_only=True)
class AtariFactory(EnvFactory):
    """``env=atari env.game=<rom>`` (``env=breakout``, ``env=pong``): ale-py's native vector
    env with the standard preprocessing (Mnih et al. 2015; Machado et al. 2018).

    Args:
        game: snake_case ROM name (any ROM ale-py ships).
        frame_skip: emulator frames per agent step (rewards summed, last two max-pooled).
        frame_stack: frames per observation (the replay buffer stores single frames).
        screen_size: observations are ``screen_size x screen_size`` grayscale.
        noop_max: up to this many no-op actions on reset.
        repeat_action_probability: sticky actions; 0.25 per Machado et al. 2018, 0 for the
            DQN-paper protocol.
        episodic_life: a lost life ends the learning episode (training envs only).
        full_action_space: all 18 actions instead of the game's minimal set.
        max_episode_frames: emulator frames before an episode is truncated (108k = 30 min).
        fire_reset: press FIRE after reset in games that need it to start.
        fire_on_life_loss: press FIRE on the step after a lost life (games with FIRE), so
            Breakout serves again; see ``NativeAtariVectorEnv``.
        fire_on_start: press FIRE on the first step of every game (set by
            ``for_evaluation`` where ``fire_on_life_loss`` is on, not by config).
        num_threads: native worker threads (0: one per env up to the core count).
        resume_replay: restore envs exactly on resume by replaying actions (see
            ``NativeAtariVectorEnv``).
    """

    normalizable: ClassVar[bool] = False

    id: str = ""
    num_envs: int = 8
    vectorization: str = "native"
    game: str = "breakout"
    frame_skip: int = 4
    frame_stack: int = 4
    screen_size: int = 84
    noop_max: int = 30
    repeat_action_probability: float = 0.25
    episodic_life: bool = False
    full_action_space: bool = False
    max_episode_frames: int = 108_000
    fire_reset: bool = True
    fire_on_life_loss: bool = True
    fire_on_start: bool = False
    num_threads: int = 0
    resume_replay: bool = True

    def __post_init__(self) -> None:
        if self.num_envs < 1:
            raise ConfigError(f"env.num_envs={self.num_envs}: must be >= 1")
        if self.vectorization not in ("auto", "native"):
            raise ConfigError(
                f"env.vectorization='{self.vectorization}': Atari envs run on ale-py's native "
                "vector env; allowed auto, native"
            )
        if self.max_episode_steps is not None:
            raise ConfigError(
                f"env.max_episode_steps={self.max_episode_steps}: Atari episodes are limited by "
                "env.max_episode_frames (emulator frames)"
            )
        self.check_normalization()
        self.game = check_game(self.game)
        if not self.id:
            self.id = f"ALE/{self.game}"
        for key in ("frame_skip", "frame_stack", "screen_size", "max_episode_frames"):
            if getattr(self, key) < 1:
                raise ConfigError(f"env.{key}={getattr(self, key)}: must be >= 1")
        if self.noop_max < 0 or self.num_threads < 0:
            raise ConfigError("env.noop_max and env.num_threads must be >= 0")
        if not 0.0 <= self.repeat_action_probability <= 1.0:
            raise ConfigError(
                f"env.repeat_action_probability={self.repeat_action_probability}: must be in [0, 1]"
            )

    def _options(self) -> dict[str, Any]:
        return {
            "frame_skip": self.frame_skip,
            "frame_stack": self.frame_stack,
            "screen_size": self.screen_size,
            "noop_max": self.noop_max,
            "fire_reset": self.fire_reset,
            "repeat_action_probability": self.repeat_action_probability,
            "full_action_space": self.full_action_space,
            "max_episode_frames": self.max_episode_frames,
            "num_threads": self.num_threads,
            "extra": dict(self.kwargs),
        }

    def backend(self, num_envs: int) -> str:
        return "native"

    def make(self, *, num_envs: int | None = None) -> VectorEnv:
        return NativeAtariVectorEnv(
            game=self.game,
            num_envs=self.num_envs if num_envs is None else num_envs,
            episodic_life=self.episodic_life,
            fire_on_life_loss=self.fire_on_life_loss,
            fire_on_start=self.fire_on_start,
            resume_replay=self.resume_replay,
            **self._options(),
        )

    def spaces(self) -> tuple[gym.Space[Any], gym.Space[Any]]:
        from ale_py import ALEInterface, LoggerMode, roms

        stack = (self.frame_stack, self.screen_size, self.screen_size)
        obs_space = gym.spaces.Box(0, 255, shape=stack, dtype=np.uint8)
        ALEInterface.setLoggerMode(LoggerMode.Error)
        ale = ALEInterface()
        rom = roms.get_rom_path(self.game)
        assert rom is not None  # check_game passed
        ale.loadROM(rom)
        n = len(ale.getLegalActionSet() if self.full_action_space else ale.getMinimalActionSet())
        return obs_space, gym.spaces.Discrete(n)

    def for_evaluation(self, **kwargs: Any) -> AtariFactory:
        """Evaluation envs play whole games (no episodic life), and where FIRE serves after a
        lost life it also serves at the start (``fire_on_start``)."""
        return replace(self, episodic_life=False, fire_on_start=self.fire_on_life_loss)

    def render_env(self) -> gym.Env[Any, Any]:
        return AtariRenderEnv(
            game=self.game,
            episodic_life=False,
            fire_on_life_loss=self.fire_on_life_loss,
            fire_on_start=self.fire_on_start,
            **self._options(),
        )
