"""Proportional prioritized replay (Schaul et al. 2016) over the trajectory buffer.

Slot ``row * num_envs + env`` of the trajectory buffer is a leaf of a sum tree holding its
priority ``p = (|delta| + eps)**alpha``; a batch draws slot ``i`` with probability
``p_i / sum(p)`` and carries importance weights ``w_i = (N * P(i))**-beta`` divided by the
batch's largest weight (as Dopamine and CleanRL do), with ``beta`` annealed linearly from
``beta0`` to 1 over ``beta_steps`` env steps.

Which slots are in the tree follows the trajectory buffer's rule (``_valid``): a slot enters,
at the largest priority seen so far, once its n-step window is known (``n`` later steps
stored, or an episode end inside the window); autoreset rows never enter; a slot leaves when
the ring overwrites it. Priorities come from the learner through ``update`` after each
gradient step.

Sequences (``sequence_length=L``, TD-MPC 2022): the same rule over windows instead of
n-step transitions. Slot ``row * num_envs + env`` then stands for the window of ``L`` steps
starting at that row, keyed by its start as in the authors' buffer; it enters the tree, at
the largest priority seen, once all ``L`` of its steps are stored inside one episode (the
storage's ``_valid_windows`` with ``within_episode=True``), and ``sample_sequences``
draws windows in proportion to their priorities, with the same importance weights.
``beta_end`` below 1 caps the annealing (TD-MPC keeps beta at 0.4: ``beta_end=beta0``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from rlbench.buffers.replay import Batch, TrajectoryReplayBuffer
from rlbench.errors import ConfigError

__all__ = ["PrioritizedReplayBuffer", "SumTree"]


class SumTree:
    """A complete binary tree of sums over ``size`` non-negative leaves, in one numpy array.

    ``nodes[1]`` is the root, node ``i`` has children ``2i`` and ``2i + 1``, leaf ``j`` is
    node ``capacity + j`` (``capacity`` = ``size`` rounded up to a power of two). Updates
    and searches take a whole batch at once: one vectorized numpy step per tree level, no
    Python loop over the batch. Every internal node always equals the float sum of its two
    children, so rebuilding from the leaves reproduces the tree bit for bit.

    Args:
        size: number of leaves.
    """

    #: Updates of at most this many leaves walk their distinct ancestors in Python: cheaper
    #: than one vectorized pass (several numpy calls per level) for a few leaves, and much
    #: cheaper for the adjacent leaves of one vector step (8 envs: ~30 vs ~190 us, 1M leaves).
    SCALAR_UPDATES = 16

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"sum tree size {size}: must be >= 1")
        self.size = size
        self.depth = max(size - 1, 0).bit_length()
        self.capacity = 1 << self.depth
        self.nodes = np.zeros(2 * self.capacity, dtype=np.float64)
        self._pairs = self.nodes.reshape(-1, 2)  # row i: children (2i, 2i + 1) of node i

    @property
    def total(self) -> float:
        """Sum of all leaves."""
        return float(self.nodes[1])

    @property
    def leaves(self) -> np.ndarray:
        """``(size,)`` view of the leaf values (read-only use; write through ``update``)."""
        return self.nodes[self.capacity : self.capacity + self.size]

    def get(self, indices: np.ndarray) -> np.ndarray:
        """Leaf values ``(B,)`` at ``indices (B,)``."""
        return self.nodes[indices + self.capacity]

    def update(self, indices: np.ndarray, values: np.ndarray) -> None:
        """Set leaves ``indices (B,)`` to ``values (B,)`` (``>= 0``) and refresh their sums.

        With repeated indices the last value wins.
        """
        if indices.size == 0:
            return
        nodes = self.nodes
        if indices.size == 1:  # one walk up with Python ints (a new slot, most often)
            node = int(indices[0]) + self.capacity
            nodes[node] = values[0]
            while node > 1:
                node >>= 1
                nodes[node] = nodes[2 * node] + nodes[2 * node + 1]
            return
        if indices.size <= self.SCALAR_UPDATES:  # walk the distinct ancestors in Python
            leaves = dict(  # the last value of a repeated index wins
                zip(
                    (indices + self.capacity).tolist(),
                    np.asarray(values, dtype=np.float64).tolist(),
                    strict=True,
                )
            )
            for node, v in leaves.items():
                nodes[node] = v
            parents = set(leaves)
            for _ in range(self.depth):
                parents = {node >> 1 for node in parents}
                for node in parents:
                    nodes[node] = nodes[2 * node] + nodes[2 * node + 1]
            return
        pos = np.asarray(indices, dtype=np.int64) + self.capacity
        nodes[pos] = values
        for _ in range(self.depth):
            pos >>= 1
            left = pos << 1
            nodes[pos] = nodes[left] + nodes[left + 1]

    def rebuild(self) -> None:
        """Recompute every internal node from the leaves (after loading leaves directly)."""
        lo = self.capacity
        while lo > 1:
            lo >>= 1
            nodes = self.nodes
            nodes[lo : 2 * lo] = nodes[2 * lo : 4 * lo : 2] + nodes[2 * lo + 1 : 4 * lo : 2]

    def find(self, targets: np.ndarray) -> np.ndarray:
        """Leaf indices ``(B,)`` whose prefix-sum interval holds each of ``targets (B,)``.

        For ``0 <= t < total`` that is the leaf ``j`` with ``sum(leaves[:j]) <= t <
        sum(leaves[:j + 1])``. Never returns a zero leaf while ``total > 0``: float rounding
        can carry a search past the end of a subtree into zero leaves; those few searches are
        redone descending only into subtrees with a positive sum.
        """
        t = np.array(targets, dtype=np.float64)
        node = np.ones(t.shape, dtype=np.int64)
        nodes = self.nodes
        for _ in range(self.depth):
            node <<= 1  # left child
            left = nodes[node]
            go_right = t >= left
            t -= left * go_right
            node += go_right
        zero = nodes[node] == 0.0
        if zero.any():
            node[zero] = self._find_positive(np.asarray(targets, dtype=np.float64)[zero])
        return node - self.capacity

    def _find_positive(self, targets: np.ndarray) -> np.ndarray:
        """``find`` that never enters a zero subtree (slower: two lookups per level)."""
        t = targets.copy()
        node = np.ones(t.shape, dtype=np.int64)
        for _ in range(self.depth):
            children = self._pairs[node]  # (B, 2)
            left, right = children[:, 0], children[:, 1]
            go_right = ((t >= left) & (right > 0.0)) | (left <= 0.0)
            t -= np.where(go_right, left, 0.0)
            node = 2 * node + go_right
        return node


class PrioritizedReplayBuffer(TrajectoryReplayBuffer):
    """Proportional prioritized replay over ordered per-env trajectories.

    Args:
        alpha: priority exponent (0 is uniform replay, 1 fully proportional).
        beta0: importance-sampling exponent at env step 0.
        beta_steps: env steps over which beta rises linearly to ``beta_end`` (the run's
            length).
        beta_end: importance-sampling exponent after ``beta_steps`` (Schaul et al.: 1).
        priority_eps: added to ``|delta|`` so no slot's priority is 0.
        sequence_length: ``None``: slots are n-step transitions (``sample``); ``L``: slots
            are windows of ``L`` steps inside one episode (``sample_sequences`` with
            ``length=L``), keyed by their first step.
        **kwargs: ``TrajectoryReplayBuffer`` arguments (``capacity``, ``num_envs``, ...).
    """

    def __init__(
        self,
        *,
        alpha: float = 0.5,
        beta0: float = 0.4,
        beta_steps: int = 1,
        beta_end: float = 1.0,
        priority_eps: float = 1e-6,
        sequence_length: int | None = None,
        **kwargs: Any,
    ) -> None:
        if alpha < 0:
            raise ConfigError(f"buffer.alpha={alpha}: must be >= 0")
        if not 0.0 <= beta0 <= 1.0:
            raise ConfigError(f"buffer.beta0={beta0}: must be in [0, 1]")
        if not 0.0 <= beta_end <= 1.0:
            raise ConfigError(f"buffer.beta_end={beta_end}: must be in [0, 1]")
        if beta_steps < 1:
            raise ConfigError(f"buffer.beta_steps={beta_steps}: must be >= 1")
        if priority_eps <= 0:
            raise ConfigError(f"buffer.priority_eps={priority_eps}: must be > 0")
        if sequence_length is not None and sequence_length < 1:
            raise ConfigError(
                f"buffer.sequence_length={sequence_length}: must be >= 1 or null (transitions)"
            )
        if sequence_length is not None and kwargs.get("frame_stack", 1) > 1:
            raise ConfigError(
                f"buffer.sequence_length={sequence_length} with buffer.frame_stack="
                f"{kwargs['frame_stack']}: prioritized sequences take unstacked observations"
            )
        super().__init__(**kwargs)
        if sequence_length is not None:
            self._check_length(sequence_length)
        self.sequence_length = sequence_length
        self.alpha, self.beta0, self.beta_steps = alpha, beta0, beta_steps
        self.beta_end = beta_end
        self.priority_eps = priority_eps
        self.tree = SumTree(self.rows * self.num_envs)
        self.max_priority = 1.0  # in tree units, p = (|delta| + eps)**alpha
        self.env_steps = 0  # steps added so far (keys the beta schedule)

    # ------------------------------------------------------------------ schedule
    def beta(self) -> float:
        """Importance-sampling exponent at the current env step."""
        frac = min(self.env_steps / self.beta_steps, 1.0)
        return self.beta0 + frac * (self.beta_end - self.beta0)

    # ------------------------------------------------------------------ writing
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
        """``TrajectoryReplayBuffer.add``, then insert the slots whose window became known."""
        super().add(
            action=action,
            reward=reward,
            terminated=terminated,
            truncated=truncated,
            next_obs=next_obs,
            ignored=ignored,
        )
        self.env_steps += self.num_envs
        envs = np.arange(self.num_envs)
        head_slots = self.head * self.num_envs + envs
        if self.complete == self.rows - 1:  # full: the ring overwrote the oldest row
            if self.tree.get(head_slots).any():
                self.tree.update(head_slots, np.zeros(self.num_envs))
            if self.frame_stack > 1:
                self._evict_unreachable_stacks()
        if self.sequence_length is not None:
            self._insert_windows(self.sequence_length)
            return
        n = self.n_step
        # In the common case only the row n steps old becomes known; after an episode end
        # also that env's younger rows (their windows now end inside the episode).
        ages = np.full(self.num_envs, n)
        cand_envs = envs
        newest = (self.head - 1) % self.rows
        ended = self.terminated[newest] | self.truncated[newest]
        if n > 1 and ended.any():
            ended_envs = np.flatnonzero(ended)
            young = np.arange(1, n)
            ages = np.concatenate([ages, np.repeat(young, ended_envs.size)])
            cand_envs = np.concatenate([envs, np.tile(ended_envs, young.size)])
        keep = ages <= self.complete
        ages, cand_envs = ages[keep], cand_envs[keep]
        rows = (self.head - ages) % self.rows
        slots = rows * self.num_envs + cand_envs
        new = self._valid(rows, cand_envs, ages, n) & (self.tree.get(slots) == 0.0)
        if new.any():
            self.tree.update(slots[new], np.full(int(new.sum()), self.max_priority))

    def _insert_windows(self, length: int) -> None:
        """Insert the windows whose ``length`` steps just became known: each env's row
        ``length`` rows old (a window is complete once its last step is stored, and stays
        valid until the ring overwrites its first row, the oldest of its rows)."""
        if self.complete < length:
            return
        envs = np.arange(self.num_envs)
        ages = np.full(self.num_envs, length)
        rows = (self.head - ages) % self.rows
        slots = rows * self.num_envs + envs
        new = self._valid_windows(rows, envs, ages, length, True) & (self.tree.get(slots) == 0.0)
        if new.any():
            self.tree.update(slots[new], np.full(int(new.sum()), self.max_priority))

    def _evict_unreachable_stacks(self) -> None:
        """With frame stacks, the oldest ``k - 1`` rows may need frames of rows the ring just
        overwrote; drop those slots (``_valid`` checks the reach)."""
        oldest = np.arange(max(self.complete - self.frame_stack + 2, 1), self.complete + 1)
        ages = np.repeat(oldest, self.num_envs)
        envs = np.tile(np.arange(self.num_envs), oldest.size)
        rows = (self.head - ages) % self.rows
        slots = rows * self.num_envs + envs
        stale = (self.tree.get(slots) > 0.0) & ~self._valid(rows, envs, ages, self.n_step)
        if stale.any():
            self.tree.update(slots[stale], np.zeros(int(stale.sum())))

    # ------------------------------------------------------------------ reading
    def num_sampleable(self) -> int:
        """Slots currently in the tree (transitions with a known n-step window)."""
        return int(np.count_nonzero(self.tree.leaves))

    def can_sample(self, n_step: int | None = None) -> bool:
        if self.sequence_length is not None:
            raise ValueError(self._sequences_only())
        return self.tree.total > 0.0

    def _sequences_only(self) -> str:
        return (
            f"this buffer prioritizes windows of buffer.sequence_length={self.sequence_length} "
            "steps: sample them with sample_sequences, not n-step transitions"
        )

    def _check_sequences(self, length: int, within_episode: bool) -> None:
        if self.sequence_length is None:
            raise ValueError(
                "prioritized replay over n-step transitions cannot sample sequences; "
                "set buffer.sequence_length to the sequence length"
            )
        if length != self.sequence_length or not within_episode:
            raise ValueError(
                f"sequences of length={length} (within_episode={within_episode}): this "
                f"buffer prioritizes windows of buffer.sequence_length={self.sequence_length} "
                "steps inside one episode"
            )

    def can_sample_sequences(self, length: int, within_episode: bool) -> bool:
        """Whether some window is in the tree (``length`` must be ``sequence_length``)."""
        if self.sequence_length is None:
            return super().can_sample_sequences(length, within_episode)
        self._check_sequences(length, within_episode)
        return self.tree.total > 0.0

    def _draw_prioritized(self, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """``(slots (B,), importance weights (B,) float32)``: stratified, one draw from
        each of ``batch_size`` equal slices of the total priority; weights ``(N P_i)^-beta``
        over the batch's largest."""
        total = self.tree.total
        if total <= 0.0:
            raise RuntimeError(f"replay buffer has {len(self)} steps: too few to sample")
        targets = (np.arange(batch_size) + self.rng.random(batch_size)) * (total / batch_size)
        slots = self.tree.find(targets)
        priorities = self.tree.get(slots)
        # (N P_i)^-beta / max_j (N P_j)^-beta = (p_i / min_j p_j)^-beta: N and the total cancel
        weights = ((priorities / priorities.min()) ** -self.beta()).astype(np.float32)
        return slots, weights

    def sample_sequences(self, batch_size: int, *, length: int, within_episode: bool) -> Batch:
        """A prioritized batch of windows (see ``TrajectoryReplayBuffer.sample_sequences``)
        with ``indices (B,)`` (the windows' start slots, for ``update``) and importance
        ``weights (B,)``; uniform windows when ``sequence_length`` is ``None``."""
        if self.sequence_length is None:
            return super().sample_sequences(
                batch_size, length=length, within_episode=within_episode
            )
        self._check_sequences(length, within_episode)
        slots, weights = self._draw_prioritized(batch_size)
        rows, envs = np.divmod(slots, self.num_envs)
        batch = self.gather_sequences(rows, envs, length=length)
        batch["indices"] = slots
        batch["weights"] = weights
        return batch

    def sample(self, batch_size: int, *, n_step: int, gamma: float) -> Batch:
        """A prioritized batch (see ``TrajectoryReplayBuffer.gather``) plus ``indices (B,)``
        and importance ``weights (B,)`` (float32, largest 1).

        Stratified: one draw from each of ``batch_size`` equal slices of the total priority.
        """
        if self.sequence_length is not None:
            raise ValueError(self._sequences_only())
        if n_step != self.n_step:
            raise ValueError(
                f"prioritized replay tracks windows of buffer.n_step={self.n_step}; "
                f"cannot sample n_step={n_step}"
            )
        slots, weights = self._draw_prioritized(batch_size)
        rows, envs = np.divmod(slots, self.num_envs)
        batch = self.gather(rows, envs, n_step=n_step, gamma=gamma)
        batch["indices"] = slots
        batch["weights"] = weights
        return batch

    def update(self, indices: np.ndarray, priorities: np.ndarray) -> None:
        """Set the priorities of sampled slots from ``|delta|`` or per-sample losses ``(B,)``.

        Slots overwritten since they were sampled are skipped. Non-finite values (a diverged
        loss, which the learner reports itself) become the current maximum priority.
        """
        indices = np.asarray(indices, dtype=np.int64)
        live = self.tree.get(indices) > 0.0
        indices = indices[live]
        p = (
            np.abs(np.asarray(priorities, dtype=np.float64)[live]) + self.priority_eps
        ) ** self.alpha
        finite = np.isfinite(p)
        if finite.any():
            self.max_priority = max(self.max_priority, float(p[finite].max()))
        p[~finite] = self.max_priority
        self.tree.update(indices, p)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["max_priority"] = self.max_priority
        state["env_steps"] = self.env_steps
        if self.checkpoint:
            used = self._used_rows() * self.num_envs
            state["priorities"] = torch.from_numpy(self.tree.leaves[:used].copy())
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.max_priority = state["max_priority"]
        self.env_steps = state["env_steps"]
        self.tree.nodes[:] = 0.0
        if "priorities" in state:
            data = state["priorities"].numpy()
            self.tree.leaves[: len(data)] = data
            self.tree.rebuild()
