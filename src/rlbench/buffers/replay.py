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

Frame stacks. With ``frame_stack=k > 1`` an observation is a stack of ``k`` frames on its
first axis (Atari: ``(4, 84, 84)`` uint8) and only its newest frame is stored, so a
transition costs one frame instead of ``k`` (about 7 GB instead of 28 GB for 1M Atari
transitions). Stacks are rebuilt at sample time from the preceding rows of the same env.
Which rows may be used is decided when a stack is stored, by comparing it with the stack
stored before it: a stack *linked* to its predecessor (its first ``k - 1`` frames are the
predecessor's last ``k - 1``) extends the chain; any other stack starts a new chain and must
be padded in a known way (all older frames zero, as ale-py pads after a reset, or all equal
to the newest, as Gymnasium's ``FrameStackObservation`` can) -- otherwise it is marked
unknown and transitions that would need its missing frames are never sampled. Each row
keeps ``depth`` (how many predecessors its stack reaches, at most ``k - 1``) and the
padding of the slots beyond it, so a rebuilt stack equals the stored one bit for bit.

Reward clipping. ``clip_rewards=True`` clips each per-step reward to ``[-1, 1]`` before the
n-step sum (Mnih et al. 2015); stored rewards stay raw, and so do logged episode returns.
The config key is ``algo.clip_rewards`` (``buffer.clip_rewards`` follows it).

Sequences. ``sample_sequences`` serves windows of ``L`` consecutive steps of one env from the
same rows (TD-MPC2, DreamerV3): observations ``o_0..o_L`` and the ``L`` steps between them,
with ``is_first`` (a reset observation: stored per row in ``first``, since the row before the
oldest one is gone), ``is_terminal`` and ``mask`` (False at ignored rows). Windows either lie
inside one episode (``within_episode=True``: all ``L`` steps real, only the last may end the
episode, its ``o_L`` the true final observation) or may span episode boundaries (only the
first step must be real). Which windows are valid is the storage's rule (``_valid_windows``);
the sampling rule drawing among them is uniform here.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

Batch = dict[str, np.ndarray]

#: Padding of the stack slots older than a row's ``depth``.
PAD_ZERO, PAD_REPEAT, PAD_UNKNOWN = 0, 1, 2


def stack_padding(stacks: np.ndarray) -> np.ndarray:
    """How each fresh stack ``(B, k, *frame)`` is padded: ``PAD_ZERO`` when its ``k - 1``
    older frames are all zero, ``PAD_REPEAT`` when they all equal the newest frame, else
    ``PAD_UNKNOWN``. Returns ``(B,)`` int8."""
    n = len(stacks)
    older = stacks[:, :-1].reshape(n, -1)
    zero = ~older.any(axis=1)
    repeat = (stacks[:, :-1] == stacks[:, -1:]).reshape(n, -1).all(axis=1)
    out = np.full(n, PAD_UNKNOWN, dtype=np.int8)
    out[repeat] = PAD_REPEAT
    out[zero] = PAD_ZERO
    return out


def rebuild_stacks(
    frames: np.ndarray,
    rows: np.ndarray,
    envs: np.ndarray,
    *,
    depth: np.ndarray,
    padding: np.ndarray,
    k: int,
) -> np.ndarray:
    """Stacks ``(B, k, *frame)`` ending at ``frames[rows[i], envs[i]]``.

    ``frames`` is a ring ``(R, E, *frame)`` of newest frames; slot ``j`` of a stack is the
    frame ``k - 1 - j`` rows back when that is within the row's ``depth (B,)``, otherwise
    padding: zeros (``PAD_ZERO``) or the oldest frame in reach (``PAD_REPEAT``).
    """
    offsets = np.arange(k - 1, -1, -1)  # slot j holds the frame `offsets[j]` rows back
    reach = np.minimum(offsets[None, :], depth[:, None].astype(np.int64))  # (B, k)
    src = (rows[:, None] - reach) % frames.shape[0]
    out = frames[src, envs[:, None]]
    zero = (offsets[None, :] > depth[:, None]) & (padding == PAD_ZERO)[:, None]
    if zero.any():
        out[zero] = 0
    return out


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
        frame_stack: observations stack this many frames on their first axis; only the
            newest frame of each is stored and stacks are rebuilt at sample time (1: store
            observations whole).
        clip_rewards: clip each per-step reward to ``[-1, 1]`` when sampling; stored
            rewards stay raw.
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
        frame_stack: int = 1,
        clip_rewards: bool = False,
    ) -> None:
        rows = capacity // num_envs
        if rows < 2:
            raise ValueError(f"buffer.capacity={capacity} is too small for {num_envs} envs")
        if n_step < 1:
            raise ValueError(f"buffer.n_step={n_step}: must be >= 1")
        if frame_stack < 1:
            raise ValueError(f"buffer.frame_stack={frame_stack}: must be >= 1")
        if frame_stack > 1 and (len(obs_shape) < 2 or obs_shape[0] != frame_stack):
            raise ValueError(
                f"buffer.frame_stack={frame_stack}: observations of shape {obs_shape} are not "
                f"stacks of {frame_stack} frames on their first axis (use buffer.frame_stack=1)"
            )
        self.rows = rows
        self.num_envs = num_envs
        self.n_step = n_step
        self.checkpoint = checkpoint
        self.frame_stack = frame_stack
        self.clip_rewards = clip_rewards
        stored_shape = obs_shape[1:] if frame_stack > 1 else obs_shape
        self.obs = np.zeros((rows, num_envs, *stored_shape), dtype=obs_dtype)
        # frame stacks: chain depth and padding per row, and the last stack stored per env
        self.depth = np.zeros((rows, num_envs) if frame_stack > 1 else (0, 0), dtype=np.int8)
        self.padding = np.zeros_like(self.depth)
        self._last_stack = np.zeros(
            (num_envs, *obs_shape) if frame_stack > 1 else (0,), dtype=obs_dtype
        )
        self.action = np.zeros((rows, num_envs, *action_shape), dtype=action_dtype)
        self.reward = np.zeros((rows, num_envs), dtype=np.float32)
        self.terminated = np.zeros((rows, num_envs), dtype=np.bool_)
        self.truncated = np.zeros((rows, num_envs), dtype=np.bool_)
        self.ignored = np.zeros((rows, num_envs), dtype=np.bool_)
        # observation is the first of an episode (after start() or an ignored autoreset row)
        self.first = np.zeros((rows, num_envs), dtype=np.bool_)
        # (rows * num_envs, ...) views of the row arrays, indexed by flat slot
        self._flat = {
            name: getattr(self, name).reshape(rows * num_envs, *getattr(self, name).shape[2:])
            for name in ("obs", "action", "reward", "terminated")
        }
        self.head = 0  # row holding the newest observation, whose step is not taken yet
        self.complete = 0  # rows with a taken step (at most rows - 1)
        self.started = False
        self.rng = np.random.default_rng(seed)

    # ------------------------------------------------------------------ writing
    def start(self, obs: np.ndarray) -> None:
        """Store the first observations ``(num_envs, *obs_shape)`` after ``env.reset``."""
        self._store_obs(self.head, obs, first=True)
        self.first[self.head] = True
        self.started = True

    def _store_obs(self, row: int, obs: np.ndarray, *, first: bool) -> None:
        """Write observations ``(num_envs, *obs_shape)`` at ``row`` (newest frames only when
        stacking, with the chain bookkeeping described in the module docstring)."""
        if self.frame_stack == 1:
            self.obs[row] = obs
            return
        k, n = self.frame_stack, self.num_envs
        self.obs[row] = obs[:, -1]
        if first:
            linked = np.zeros(n, dtype=np.bool_)
        else:
            linked = (obs[:, :-1] == self._last_stack[:, 1:]).reshape(n, -1).all(axis=1)
        prev = (row - 1) % self.rows
        fresh_padding = stack_padding(obs) if not linked.all() else self.padding[prev]
        self.depth[row] = np.where(linked, np.minimum(self.depth[prev] + 1, k - 1), 0)
        self.padding[row] = np.where(linked, self.padding[prev], fresh_padding)
        self._last_stack[...] = obs

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
        self._store_obs(h, next_obs, first=False)
        self.first[h] = ignored  # the env reset instead of stepping: next_obs starts an episode
        self.head = h
        self.complete = min(self.complete + 1, self.rows - 1)

    # ------------------------------------------------------------------ reading
    def __len__(self) -> int:
        """Number of stored steps (complete rows times envs), ignored rows included."""
        return self.complete * self.num_envs

    def can_sample(self, n_step: int | None = None) -> bool:
        """Whether some transition's n-window is known (the oldest row's, or one that ends)."""
        n = n_step or self.n_step
        # Of the two rows aged complete - k + 1 and complete - k, one is not ignored, and
        # both have a known window and a stack within reach.
        if self.complete >= n + self.frame_stack:
            return True
        ages = np.arange(1, self.complete + 1)
        rows = (self.head - ages) % self.rows
        for e in range(self.num_envs):
            if self._valid(rows, np.full_like(rows, e), ages, n).any():
                return True
        return False

    def _valid(self, rows: np.ndarray, envs: np.ndarray, ages: np.ndarray, n: int) -> np.ndarray:
        """Which ``(row, env)`` transitions of the given ages have a known n-window (and,
        with frame stacks, a stack that can be rebuilt from rows still in the buffer)."""
        ok = ~self.ignored[rows, envs]
        if self.frame_stack > 1:
            depth = self.depth[rows, envs]
            known = (depth == self.frame_stack - 1) | (self.padding[rows, envs] != PAD_UNKNOWN)
            ok &= known & (ages + depth <= self.complete)
        short = ok & (ages < n)
        if short.any():
            r, e, a = rows[short], envs[short], ages[short]
            window = (r[:, None] + np.arange(n)) % self.rows
            done = self.terminated[window, e[:, None]] | self.truncated[window, e[:, None]]
            done &= np.arange(n) < a[:, None]
            ok[short] = done.any(axis=1)
        return ok

    def _draw(self, batch_size: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Uniform ``(rows, envs)`` over sampleable transitions (rejection sampling).

        Each round draws an eighth more candidates than still needed and keeps the first
        valid ones in draw order (still i.i.d. uniform over the valid transitions): the few
        rows that are never valid, such as the ignored row after every episode, then rarely
        cost a second round.
        """
        rows = np.empty(batch_size, dtype=np.int64)
        envs = np.empty(batch_size, dtype=np.int64)
        filled = 0
        for _ in range(1000):
            m = (batch_size - filled) * 9 // 8 + 4
            ages = self.rng.integers(1, self.complete + 1, size=m)
            e = (
                self.rng.integers(0, self.num_envs, size=m)
                if self.num_envs > 1
                else np.zeros(m, dtype=np.int64)
            )
            r = (self.head - ages) % self.rows
            keep = np.flatnonzero(self._valid(r, e, ages, n))[: batch_size - filled]
            rows[filled : filled + keep.size], envs[filled : filled + keep.size] = r[keep], e[keep]
            filled += keep.size
            if filled == batch_size:
                return rows, envs
        raise RuntimeError("replay buffer holds too few sampleable transitions")

    def gather(self, rows: np.ndarray, envs: np.ndarray, *, n_step: int, gamma: float) -> Batch:
        """n-step transitions starting at ``(rows[i], envs[i])``; all arrays have batch dim B.

        Returns:
            ``obs (B, *obs)``, ``action (B, *act)``, ``reward (B,)`` discounted n-step sum,
            ``next_obs (B, *obs)`` bootstrap observation, ``discount (B,)`` = ``gamma**L``
            or 0 after termination, ``steps (B,)`` = L.
        """
        if n_step == 1:  # the common case, without window arithmetic (same values)
            return self._gather_one_step(rows, envs, gamma=gamma)
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
        step_rewards = self.reward[window, e]
        if self.clip_rewards:
            step_rewards = np.clip(step_rewards, -1.0, 1.0)
        rewards = np.where(alive, step_rewards, 0.0)
        last = window[np.arange(rows.size), steps - 1]
        boot = (rows + steps) % self.rows
        discount = gamma ** steps.astype(np.float64) * ~self.terminated[last, envs]
        return {
            "obs": self._observations(rows, envs),
            "action": self.action[rows, envs],
            "reward": (rewards @ powers).astype(np.float32),
            "next_obs": self._observations(boot, envs),
            "discount": discount.astype(np.float32),
            "steps": steps,
        }

    def _gather_one_step(self, rows: np.ndarray, envs: np.ndarray, *, gamma: float) -> Batch:
        # flat slots and np.take: a quarter of the cost of (rows, envs) fancy indexing
        slots = rows * self.num_envs + envs
        boot = slots + self.num_envs  # the next row of the same env, wrapping at the end
        boot[boot >= self.rows * self.num_envs] -= self.rows * self.num_envs
        flat = self._flat
        reward = flat["reward"].take(slots, axis=0)
        if self.clip_rewards:
            reward = np.clip(reward, -1.0, 1.0)
        if self.frame_stack == 1:
            obs, next_obs = flat["obs"].take(slots, axis=0), flat["obs"].take(boot, axis=0)
        else:
            obs = self._observations(rows, envs)
            next_obs = self._observations(boot // self.num_envs, envs)
        alive = ~flat["terminated"].take(slots, axis=0)
        return {
            "obs": obs,
            "action": flat["action"].take(slots, axis=0),
            "reward": reward,
            "next_obs": next_obs,
            "discount": alive * np.float32(gamma),  # float32: gamma, or 0 after termination
            "steps": np.ones(rows.size, dtype=np.int64),
        }

    def _observations(self, rows: np.ndarray, envs: np.ndarray) -> np.ndarray:
        """Observations ``(B, *obs_shape)`` stored at ``(rows, envs)`` (stacks rebuilt)."""
        if self.frame_stack == 1:
            return self.obs[rows, envs]
        return rebuild_stacks(
            self.obs,
            rows,
            envs,
            depth=self.depth[rows, envs],
            padding=self.padding[rows, envs],
            k=self.frame_stack,
        )

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

    # ------------------------------------------------------------------ sequences
    def _check_length(self, length: int) -> None:
        if not 1 <= length <= self.rows - 1:
            raise ValueError(
                f"sequence length {length}: must be in [1, {self.rows - 1}] for a buffer of "
                f"{self.rows} rows per env"
            )

    def _valid_windows(
        self, rows: np.ndarray, envs: np.ndarray, ages: np.ndarray, length: int, within: bool
    ) -> np.ndarray:
        """Which windows of ``length`` steps starting at ``(rows, envs)`` (of the given
        ``ages``) can be served: all ``L + 1`` observations stored (and rebuildable, with
        frame stacks), the first step real, and with ``within`` all steps real and no episode
        end before the last step."""
        L = length
        ok = (ages >= L) & (ages <= self.complete)
        e = envs[:, None]
        if within:
            # all L steps real; then no step before the last ends the episode, since the row
            # after an episode end is always an ignored one
            steps = (rows[:, None] + np.arange(L)) % self.rows
            ok &= ~self.ignored[steps, e].any(axis=1)
        else:
            ok &= ~self.ignored[rows, envs]
        if self.frame_stack > 1:
            obs_rows = (rows[:, None] + np.arange(L + 1)) % self.rows
            depth = self.depth[obs_rows, e]
            known = (depth == self.frame_stack - 1) | (self.padding[obs_rows, e] != PAD_UNKNOWN)
            reach = ages[:, None] - np.arange(L + 1) + depth <= self.complete
            ok &= (known & reach).all(axis=1)
        return ok

    def _all_windows(
        self, length: int, within: bool, *, limit: int | None = None, chunk: int = 1 << 14
    ) -> tuple[np.ndarray, np.ndarray]:
        """Every valid window as ``(ages, envs)``, oldest first (the first ``limit`` found).

        Scans all ``complete - L + 1`` start ages of every env: ``O(rows * envs * L)``, for
        ``can_sample_sequences`` and for batches that rejection sampling cannot fill.
        """
        found_ages, found_envs, count = [], [], 0
        n = self.num_envs
        for lo in range(0, max(self.complete - length + 1, 0) * n, chunk):
            flat = np.arange(lo, min(lo + chunk, (self.complete - length + 1) * n))
            ages, envs = self.complete - flat // n, flat % n
            ok = self._valid_windows((self.head - ages) % self.rows, envs, ages, length, within)
            found_ages.append(ages[ok])
            found_envs.append(envs[ok])
            count += int(ok.sum())
            if limit is not None and count >= limit:
                break
        if not found_ages:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        return np.concatenate(found_ages)[:limit], np.concatenate(found_envs)[:limit]

    def can_sample_sequences(self, length: int, within_episode: bool) -> bool:
        """Whether some window of ``length`` steps can be served (see ``sample_sequences``).

        Probes up to 64 evenly spaced start ages of every env, then scans all windows.
        """
        self._check_length(length)
        if self.complete < length:
            return False
        ages = np.unique(np.linspace(length, self.complete, num=64).astype(np.int64))
        envs = np.tile(np.arange(self.num_envs), ages.size)
        ages = np.repeat(ages, self.num_envs)
        rows = (self.head - ages) % self.rows
        if self._valid_windows(rows, envs, ages, length, within_episode).any():
            return True
        return self._all_windows(length, within_episode, limit=1)[0].size > 0

    def _draw_windows(
        self, batch_size: int, length: int, within: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """Uniform ``(rows, envs)`` over valid window starts.

        Rejection sampling as in ``_draw``, each round sized by the acceptance rate seen so
        far; when a few rounds leave the batch short (valid windows are rare), the rest is
        drawn uniformly from the list of all valid windows. Either way every start is an
        i.i.d. uniform draw over the valid windows.
        """
        rows = np.empty(batch_size, dtype=np.int64)
        envs = np.empty(batch_size, dtype=np.int64)
        filled = drawn = 0
        if self.complete >= length:
            for _ in range(4):
                need = batch_size - filled
                rate = max(filled, 1) / drawn if drawn else 1.0
                m = min(int(need / rate * 9 / 8) + 4, 1 << 15)
                ages = self.rng.integers(length, self.complete + 1, size=m)
                e = (
                    self.rng.integers(0, self.num_envs, size=m)
                    if self.num_envs > 1
                    else np.zeros(m, dtype=np.int64)
                )
                r = (self.head - ages) % self.rows
                keep = np.flatnonzero(self._valid_windows(r, e, ages, length, within))[:need]
                rows[filled : filled + keep.size], envs[filled : filled + keep.size] = (
                    r[keep],
                    e[keep],
                )
                filled += keep.size
                drawn += m
                if filled == batch_size:
                    return rows, envs
        all_ages, all_envs = self._all_windows(length, within)
        if all_ages.size == 0:
            kind = "inside one episode" if within else "starting with a real step"
            raise RuntimeError(
                f"replay buffer has {len(self)} steps: no window of {length} steps {kind} "
                "to sample yet (check can_sample_sequences first)"
            )
        pick = self.rng.integers(0, all_ages.size, size=batch_size - filled)
        rows[filled:] = (self.head - all_ages[pick]) % self.rows
        envs[filled:] = all_envs[pick]
        return rows, envs

    def gather_sequences(self, rows: np.ndarray, envs: np.ndarray, *, length: int) -> Batch:
        """Windows of ``length`` steps starting at ``(rows[i], envs[i])``; see
        ``sample_sequences`` for the returned arrays (all but ``indices``)."""
        B, L = rows.size, length
        obs_rows = (rows[:, None] + np.arange(L + 1)) % self.rows  # (B, L + 1)
        steps = obs_rows[:, :-1]  # (B, L): step t goes from o_t to o_{t+1}
        e = envs[:, None]
        obs = self._observations(obs_rows.ravel(), np.repeat(envs, L + 1))
        reward = self.reward[steps, e]
        if self.clip_rewards:
            reward = np.clip(reward, -1.0, 1.0)
        terminated = self.terminated[steps, e]
        mask = ~self.ignored[steps, e]
        is_terminal = np.empty((B, L + 1), dtype=np.bool_)
        is_terminal[:, 1:] = terminated & mask
        # o_0 is terminal when the stored step into it (the row before) terminated
        prev = (rows - 1) % self.rows
        prev_stored = (self.head - rows) % self.rows < self.complete
        is_terminal[:, 0] = prev_stored & self.terminated[prev, envs] & ~self.ignored[prev, envs]
        return {
            "obs": obs.reshape(B, L + 1, *obs.shape[1:]),
            "action": self.action[steps, e],
            "reward": reward,
            "terminated": terminated,
            "truncated": self.truncated[steps, e],
            "is_first": self.first[obs_rows, e],
            "is_terminal": is_terminal,
            "mask": mask,
        }

    def sample_sequences(self, batch_size: int, *, length: int, within_episode: bool) -> Batch:
        """A uniform batch of windows of ``length`` consecutive steps of one env.

        ``within_episode=True`` (TD-MPC2): every window lies inside one episode: its ``L``
        steps are real and only the last may terminate or truncate (``o_L`` is then the true
        final observation); ``mask`` is all True. ``within_episode=False`` (DreamerV3):
        windows may cross episode boundaries (marked by ``is_first``; ignored autoreset rows
        have ``mask`` False); only the first step must be real. In both, all ``L + 1``
        observations are stored and, with frame stacks, rebuilt exactly; windows wrap around
        the ring. Raises ``RuntimeError`` when no valid window exists yet.

        Returns:
            ``obs (B, L+1, *obs)``; ``action (B, L, *act)``; ``reward (B, L)`` float32 (per
            step, clipped with ``clip_rewards``); ``terminated``, ``truncated (B, L)``;
            ``is_first (B, L+1)`` (a reset observation), ``is_terminal (B, L+1)`` (the final
            observation of a terminated episode); ``mask (B, L)`` (a real step, not an
            ignored row); ``indices (B,)`` flat slots ``row * num_envs + env`` of each
            window's first step.
        """
        self._check_length(length)
        rows, envs = self._draw_windows(batch_size, length, within_episode)
        batch = self.gather_sequences(rows, envs, length=length)
        batch["indices"] = rows * self.num_envs + envs
        return batch

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
            for name in self._row_arrays():
                state[name] = torch.from_numpy(np.ascontiguousarray(getattr(self, name)[:used]))
            if self.frame_stack > 1:
                state["last_stack"] = torch.from_numpy(self._last_stack.copy())
        return state

    def _row_arrays(self) -> tuple[str, ...]:
        names = ("obs", "action", "reward", "terminated", "truncated", "ignored", "first")
        return (*names, "depth", "padding") if self.frame_stack > 1 else names

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
        for name in self._row_arrays():
            if name == "first" and name not in state:  # saved before rows kept `first`
                self._derive_first(len(state["ignored"]))
                continue
            data = state[name].numpy()
            getattr(self, name)[: len(data)] = data
        if self.frame_stack > 1:
            self._last_stack[...] = state["last_stack"].numpy()

    def _derive_first(self, used: int) -> None:
        """``first`` of checkpoints saved without it: the row after an ignored row, and row 0
        of a ring not yet full (the start); the oldest row of a full ring is taken as not
        first."""
        self.first[:] = False
        self.first[1:used] = self.ignored[: used - 1]
        if self.complete == self.rows - 1:
            self.first[0] = self.ignored[self.rows - 1]
            self.first[(self.head + 1) % self.rows] = False
        else:
            self.first[0] = True
