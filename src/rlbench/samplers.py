"""Action samplers: turn per-action scores ``(B, A)`` into actions ``(B,)``.

Samplers are swappable by config (``sampler=epsilon_greedy|greedy|boltzmann``). Scores may
be passed lazily (``LazyScores``) so that epsilon-greedy skips the network forward pass when
every env in the batch explores; the random draws are the same either way, so results do
not depend on whether the forward pass was skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from rlbench.errors import ConfigError


class LazyScores:
    """Scores ``fn(obs)`` of shape ``(len(obs), num_actions)``, computed only when a sampler
    asks for them.

    (A plain slotted class: it is built once per env step, where a dataclass costs more.)
    """

    __slots__ = ("batch_size", "fn", "num_actions", "obs")

    def __init__(
        self, fn: Callable[[np.ndarray], np.ndarray], obs: np.ndarray, num_actions: int
    ) -> None:
        self.fn = fn
        self.obs = obs
        self.batch_size = len(obs)
        self.num_actions = num_actions

    def values(self) -> np.ndarray:
        return self.fn(self.obs)


Scores = np.ndarray | LazyScores


def _shape(scores: Scores) -> tuple[int, int]:
    if isinstance(scores, LazyScores):
        return scores.batch_size, scores.num_actions
    b, a = scores.shape
    return int(b), int(a)


def _values(scores: Scores) -> np.ndarray:
    return scores.values() if isinstance(scores, LazyScores) else scores


@dataclass(frozen=True, kw_only=True)
class LinearSchedule:
    """``start`` at step 0, linearly to ``end`` at ``duration`` steps, then constant."""

    start: float
    end: float
    duration: int

    def __call__(self, step: int) -> float:
        # called on every env step: the constant tail (most of a run) returns at once
        if step >= self.duration or self.duration <= 0:
            return self.end
        return self.start + max(step, 0) / self.duration * (self.end - self.start)


class ActionSampler:
    """Base class. ``explore=False`` is the deterministic (greedy) evaluation policy."""

    def __call__(
        self, scores: Scores, *, step: int, rng: np.random.Generator, explore: bool = True
    ) -> np.ndarray:
        """Actions ``(B,)`` from scores ``(B, A)`` at env step ``step``."""
        if not explore:
            return np.asarray(_values(scores).argmax(axis=1))
        return self.explore(scores, step=step, rng=rng)

    def explore(self, scores: Scores, *, step: int, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def stats(self, step: int) -> dict[str, float]:
        """Schedule values to log under ``train/`` (e.g. epsilon)."""
        return {}


class Greedy(ActionSampler):
    """Always the highest-scoring action (for noisy nets, whose exploration is in the weights)."""

    def explore(self, scores: Scores, *, step: int, rng: np.random.Generator) -> np.ndarray:
        return np.asarray(_values(scores).argmax(axis=1))


def decay_duration(
    *, decay_steps: int, decay_fraction: float | None, total_env_steps: int | None
) -> int:
    """Env steps over which an exploration schedule decays.

    ``decay_fraction`` (the ``exploration_fraction`` of CleanRL and Stable-Baselines3), when
    set, wins over ``decay_steps``: the schedule ends at ``round(decay_fraction *
    total_env_steps)``, so a preset keeps its shape when ``total_env_steps`` changes (also on
    a resume that raises ``total_env_steps``: the rest of the schedule stretches with it).
    ``decay_fraction=None`` keeps ``decay_steps``.
    """
    if decay_steps < 0:
        raise ConfigError(f"sampler.decay_steps={decay_steps}: must be >= 0")
    if decay_fraction is None:
        return decay_steps
    if not 0.0 <= decay_fraction <= 1.0:
        raise ConfigError(f"sampler.decay_fraction={decay_fraction}: must be in [0, 1] or null")
    if total_env_steps is None or total_env_steps <= 0:
        raise ConfigError(
            f"sampler.decay_fraction={decay_fraction} needs total_env_steps > 0 "
            f"(got {total_env_steps})"
        )
    return round(decay_fraction * total_env_steps)


class EpsilonGreedy(ActionSampler):
    """With probability epsilon (linear schedule over env steps) a uniform random action.

    Epsilon goes from ``start`` to ``end`` over ``decay_steps`` env steps, or, when
    ``decay_fraction`` is set, over that fraction of ``total_env_steps`` (which the CLI
    passes); see ``decay_duration``.
    """

    def __init__(
        self,
        *,
        start: float = 1.0,
        end: float = 0.05,
        decay_steps: int = 25_000,
        decay_fraction: float | None = None,
        total_env_steps: int | None = None,
    ):
        for name, v in (("start", start), ("end", end)):
            if not 0.0 <= v <= 1.0:
                raise ConfigError(f"sampler.{name}={v}: epsilon must be in [0, 1]")
        duration = decay_duration(
            decay_steps=decay_steps, decay_fraction=decay_fraction, total_env_steps=total_env_steps
        )
        self.epsilon = LinearSchedule(start=start, end=end, duration=duration)

    def explore(self, scores: Scores, *, step: int, rng: np.random.Generator) -> np.ndarray:
        b, a = _shape(scores)
        # One draw of 2B uniforms per call (cheaper than random + integers): the first B
        # decide who explores, the last B pick their uniform actions.
        u = rng.random(2 * b)
        if b == 1:  # one env (the common DQN set-up): python scalars, same draws and result
            explore, pick = u.tolist()
            if explore < self.epsilon(step):
                return np.array([int(pick * a)], dtype=np.int64)
            return _values(scores).argmax(axis=1)  # (1, A) scores: already an array
        random = u[:b] < self.epsilon(step)
        actions = (u[b:] * a).astype(np.int64)
        if random.all():
            return actions
        greedy = _values(scores).argmax(axis=1)
        return np.where(random, actions, greedy)

    def stats(self, step: int) -> dict[str, float]:
        return {"epsilon": self.epsilon(step)}


class Boltzmann(ActionSampler):
    """Samples ``softmax(scores / temperature)`` with the Gumbel-max trick."""

    def __init__(self, *, temperature: float = 1.0):
        if temperature <= 0:
            raise ConfigError(f"sampler.temperature={temperature}: must be > 0")
        self.temperature = temperature

    def explore(self, scores: Scores, *, step: int, rng: np.random.Generator) -> np.ndarray:
        values = _values(scores)
        gumbel = -np.log(-np.log(rng.random(values.shape) + 1e-20) + 1e-20)
        return np.asarray((values / self.temperature + gumbel).argmax(axis=1))

    def stats(self, step: int) -> dict[str, float]:
        return {"temperature": self.temperature}
