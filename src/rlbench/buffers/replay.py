"""Trajectory replay: each env's stream of steps stored in order; n chosen at sample time.

Layout. The memory is a ring of ``rows = capacity // num_envs`` rows by ``num_envs`` columns.
Row ``t`` of column ``e`` holds the observation env ``e`` saw at its ``t``-th step and,
once that step is taken, the action, reward and the ``terminated``/``truncated`` flags it
produced. Observations are stored once: the next observation of row ``t`` is the
observation of row ``t + 1``. With Gymnasium's NEXT_STEP autoreset the row after an episode's
last step holds that episode's final observation and an *ignored* action (the env reset
instead of stepping); ignored rows are never sampled as transitions, only used as
bootstrap observations for truncated episodes.

Sampling. A transition at row ``k`` of age ``a`` (``a`` complete rows newer than it,
counting itself) is sampleable once its n-window is known: ``a >= n`` or its episode ends
within those ``a`` rows. It returns the n-step discounted reward, the bootstrap
observation and its discount ``gamma**L`` (``L <= n`` steps taken; ``0`` when the window
ends in termination, while truncation bootstraps from the true final observation).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

Batch = dict[str, np.ndarray]


class TrajectoryReplayBuffer:
    """Uniform replay over ordered per-env trajectories.

    Args:
        capacity: total transitions kept (rounded down to a multiple of ``num_envs``).
        num_envs: number of parallel env streams.
        obs_shape, obs_dtype: one observation.
        action_shape, action_dtype: one action (``()`` and int64 for discrete).
        n_step: default n for ``sample`` (the DataModule passes it explicitly).
        seed: seed of the buffer's own sampling generator.
        checkpoint: whether the contents are saved in checkpoints.
    """

    def __init__(
        self,
        *,
        capacity: int,
        num_envs: int,
        obs_shape: tuple[int, ...],
        obs_dtype: np.dtype[Any] | type,
        action_shape: tuple[int, ...] = (),
        action_dtype: np.dtype[Any] | type = np.int64,
        n_step: int = 1,
        seed: int = 0,
        checkpoint: bool = True,
    ) -> None:
        rows = capacity // num_envs
        if rows < 2:
            raise ValueError(f"buffer.capacity={capacity} is too small for {num_envs} envs")
        if n_step < 1:
            raise ValueError(f"buffer.n_step={n_step}: must be >= 1")
        self.rows = rows
        self.num_envs = num_envs
        self.n_step = n_step
        self.checkpoint = checkpoint
        self.obs = np.zeros((rows, num_envs, *obs_shape), dtype=obs_dtype)
        self.action = np.zeros((rows, num_envs, *action_shape), dtype=action_dtype)
        self.reward = np.zeros((rows, num_envs), dtype=np.float32)
        self.terminated = np.zeros((rows, num_envs), dtype=np.bool_)
        self.truncated = np.zeros((rows, num_envs), dtype=np.bool_)
        self.ignored = np.zeros((rows, num_envs), dtype=np.bool_)
        self.head = 0  # row holding the newest observation, whose step is not taken yet
        self.complete = 0  # rows with a taken step (at most rows - 1)
        self.started = False
        self.rng = np.random.default_rng(seed)

    # ------------------------------------------------------------------ writing
    def start(self, obs: np.ndarray) -> None:
        """Store the first observations ``(num_envs, *obs_shape)`` after ``env.reset``."""
        self.obs[self.head] = obs
        self.started = True

    def add(
        self,
        *,
        action: np.ndarray,
        reward: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        next_obs: np.ndarray,
        ignored: np.ndarray,
    ) -> None:
        """Record one vector step taken from the observations stored at the head row.

        Args:
            action: ``(num_envs, *action_shape)`` actions taken.
            reward: ``(num_envs,)`` rewards received.
            terminated, truncated: ``(num_envs,)`` episode-end flags of this step.
            next_obs: ``(num_envs, *obs_shape)`` observations returned by the step.
            ignored: ``(num_envs,)`` True where the env autoreset instead of stepping
                (its previous step ended an episode), so this row is no transition.
        """
        if not self.started:
            raise RuntimeError("call start(obs) before add(...)")
        h = self.head
        self.action[h] = action
        self.reward[h] = reward
        self.terminated[h] = terminated
        self.truncated[h] = truncated
        self.ignored[h] = ignored
        h = (h + 1) % self.rows
        self.obs[h] = next_obs
        self.head = h
        self.complete = min(self.complete + 1, self.rows - 1)

    # ------------------------------------------------------------------ reading
    def __len__(self) -> int:
        """Number of stored steps (complete rows times envs), ignored rows included."""
        return self.complete * self.num_envs

    def can_sample(self, n_step: int | None = None) -> bool:
        """Whether some transition's n-window is known (the oldest row's, or one that ends)."""
        n = n_step or self.n_step
        if self.complete >= n + 1:
            return True
        ages = np.arange(1, self.complete + 1)
        rows = (self.head - ages) % self.rows
        for e in range(self.num_envs):
            if self._valid(rows, np.full_like(rows, e), ages, n).any():
                return True
        return False

    def _valid(self, rows: np.ndarray, envs: np.ndarray, ages: np.ndarray, n: int) -> np.ndarray:
        """Which ``(row, env)`` transitions of the given ages have a known n-window."""
        ok = ~self.ignored[rows, envs]
        short = ok & (ages < n)
        if short.any():
            r, e, a = rows[short], envs[short], ages[short]
            window = (r[:, None] + np.arange(n)) % self.rows
            done = self.terminated[window, e[:, None]] | self.truncated[window, e[:, None]]
            done &= np.arange(n) < a[:, None]
            ok[short] = done.any(axis=1)
        return ok

    def _draw(self, batch_size: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Uniform ``(rows, envs)`` over sampleable transitions (rejection sampling)."""
        rows = np.empty(batch_size, dtype=np.int64)
        envs = np.empty(batch_size, dtype=np.int64)
        todo = np.arange(batch_size)
        for _ in range(1000):
            ages = self.rng.integers(1, self.complete + 1, size=todo.size)
            e = self.rng.integers(0, self.num_envs, size=todo.size)
            r = (self.head - ages) % self.rows
            ok = self._valid(r, e, ages, n)
            rows[todo[ok]], envs[todo[ok]] = r[ok], e[ok]
            todo = todo[~ok]
            if todo.size == 0:
                return rows, envs
        raise RuntimeError("replay buffer holds too few sampleable transitions")

    def gather(self, rows: np.ndarray, envs: np.ndarray, *, n_step: int, gamma: float) -> Batch:
        """n-step transitions starting at ``(rows[i], envs[i])``; all arrays have batch dim B.

        Returns:
            ``obs (B, *obs)``, ``action (B, *act)``, ``reward (B,)`` discounted n-step sum,
            ``next_obs (B, *obs)`` bootstrap observation, ``discount (B,)`` = ``gamma**L``
            or 0 after termination, ``steps (B,)`` = L.
        """
        n = n_step
        window = (rows[:, None] + np.arange(n)) % self.rows  # (B, n)
        e = envs[:, None]
        done = self.terminated[window, e] | self.truncated[window, e]
        # alive[:, j]: no episode end strictly before step j of the window.
        alive = np.ones((rows.size, n), dtype=np.bool_)
        if n > 1:
            alive[:, 1:] = np.cumsum(done[:, :-1], axis=1) == 0
        steps = alive.sum(axis=1)  # L in [1, n]
        powers = gamma ** np.arange(n, dtype=np.float64)
        rewards = np.where(alive, self.reward[window, e], 0.0)
        last = window[np.arange(rows.size), steps - 1]
        boot = (rows + steps) % self.rows
        discount = gamma ** steps.astype(np.float64) * ~self.terminated[last, envs]
        return {
            "obs": self.obs[rows, envs],
            "action": self.action[rows, envs],
            "reward": (rewards @ powers).astype(np.float32),
            "next_obs": self.obs[boot, envs],
            "discount": discount.astype(np.float32),
            "steps": steps,
        }

    def sample(self, batch_size: int, *, n_step: int, gamma: float) -> Batch:
        """A uniform batch of n-step transitions (see ``gather``) plus ``indices``.

        ``indices (B,)`` are flat slots ``row * num_envs + env`` for ``update``. Uniform
        samples carry no ``weights`` (all ones); prioritized buffers add them.
        """
        if not self.can_sample(n_step):
            raise RuntimeError(f"replay buffer has {len(self)} steps: too few to sample")
        rows, envs = self._draw(batch_size, n_step)
        batch = self.gather(rows, envs, n_step=n_step, gamma=gamma)
        batch["indices"] = rows * self.num_envs + envs
        return batch

    def update(self, indices: np.ndarray, priorities: np.ndarray) -> None:
        """Uniform replay ignores priorities (prioritized replay overrides this)."""

    # ------------------------------------------------------------------ state
    def _used_rows(self) -> int:
        return self.rows if self.complete == self.rows - 1 else self.head + 1

    def state_dict(self) -> dict[str, Any]:
        """Contents (only the rows in use) and pointers, as tensors and python scalars."""
        used = self._used_rows()
        state: dict[str, Any] = {
            "head": self.head,
            "complete": self.complete,
            "started": self.started,
            "rows": self.rows,
            "num_envs": self.num_envs,
            "rng": self.rng.bit_generator.state,
        }
        if self.checkpoint:
            for name in ("obs", "action", "reward", "terminated", "truncated", "ignored"):
                state[name] = torch.from_numpy(np.ascontiguousarray(getattr(self, name)[:used]))
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if (state["rows"], state["num_envs"]) != (self.rows, self.num_envs):
            raise ValueError(
                f"buffer shape in checkpoint {(state['rows'], state['num_envs'])} "
                f"!= configured {(self.rows, self.num_envs)}"
            )
        self.rng.bit_generator.state = state["rng"]
        if "obs" not in state:  # saved without contents: start empty from the current obs
            self.head, self.complete, self.started = 0, 0, False
            return
        self.head, self.complete, self.started = state["head"], state["complete"], state["started"]
        for name in ("obs", "action", "reward", "terminated", "truncated", "ignored"):
            data = state[name].numpy()
            getattr(self, name)[: len(data)] = data
