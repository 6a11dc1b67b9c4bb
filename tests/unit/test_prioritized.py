"""Prioritized replay over the trajectory buffer: membership, weights, schedule, state."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
import torch

from rlbench.buffers.prioritized import PrioritizedReplayBuffer
from rlbench.errors import ConfigError

GAMMA = 0.9


def make(
    *, capacity: int = 100, num_envs: int = 1, n_step: int = 1, frame_stack: int = 1, **kw: Any
) -> PrioritizedReplayBuffer:
    obs_shape = (frame_stack, 2) if frame_stack > 1 else (2,)
    return PrioritizedReplayBuffer(
        capacity=capacity,
        num_envs=num_envs,
        obs_shape=obs_shape,
        obs_dtype=np.float32,
        n_step=n_step,
        frame_stack=frame_stack,
        **{"beta_steps": 1000, **kw},
    )


class Stream:
    """Feeds a buffer a NEXT_STEP vector stream; episode ends drawn at random or scripted.

    Frames count up (never zero), so stacked observations link to their predecessors and a
    fresh stack after a reset is zero-padded, as ale-py pads it.
    """

    def __init__(self, buf: PrioritizedReplayBuffer, seed: int = 0) -> None:
        self.buf, self.rng = buf, np.random.default_rng(seed)
        self.n = buf.num_envs
        self.frame = 0.0
        self.prev_done = np.zeros(self.n, dtype=np.bool_)
        self.stack = np.zeros((self.n, max(buf.frame_stack, 1), 2), dtype=np.float32)
        buf.start(self._obs(np.ones(self.n, dtype=np.bool_)))

    def _obs(self, reset: np.ndarray) -> np.ndarray:
        self.frame += 1.0
        self.stack = np.roll(self.stack, -1, axis=1)
        self.stack[reset] = 0.0
        self.stack[:, -1] = self.frame + np.arange(self.n)[:, None] * 1e4
        return self.stack.copy() if self.buf.frame_stack > 1 else self.stack[:, -1].copy()

    def step(
        self, terminated: np.ndarray | None = None, truncated: np.ndarray | None = None
    ) -> None:
        if terminated is None:
            terminated = self.rng.random(self.n) < 0.1
        if truncated is None:
            truncated = self.rng.random(self.n) < 0.05
        ignored = self.prev_done.copy()
        terminated, truncated = terminated & ~ignored, truncated & ~ignored & ~terminated
        self.buf.add(
            action=np.zeros(self.n, dtype=np.int64),
            reward=self.rng.random(self.n).astype(np.float32),
            terminated=terminated,
            truncated=truncated,
            next_obs=self._obs(ignored),
            ignored=ignored,
        )
        self.prev_done = terminated | truncated


def in_tree(buf: PrioritizedReplayBuffer) -> set[int]:
    return set(np.flatnonzero(buf.tree.leaves).tolist())


def known_windows(buf: PrioritizedReplayBuffer) -> set[int]:
    """Brute force: every stored slot whose n-step window the trajectory buffer calls known."""
    ages = np.repeat(np.arange(1, buf.complete + 1), buf.num_envs)
    envs = np.tile(np.arange(buf.num_envs), buf.complete)
    rows = (buf.head - ages) % buf.rows
    ok = buf._valid(rows, envs, ages, buf.n_step)
    return set((rows * buf.num_envs + envs)[ok].tolist())


@pytest.mark.parametrize(
    ("n_step", "num_envs", "frame_stack"), [(1, 1, 1), (3, 1, 1), (2, 3, 1), (4, 2, 1), (3, 2, 3)]
)
def test_tree_holds_exactly_the_slots_with_known_windows(
    n_step: int, num_envs: int, frame_stack: int
) -> None:
    """Checked after every step of a long random stream that wraps the ring three times."""
    buf = make(capacity=24 * num_envs, num_envs=num_envs, n_step=n_step, frame_stack=frame_stack)
    stream = Stream(buf, seed=n_step)
    for _ in range(3 * buf.rows):
        stream.step()
        assert in_tree(buf) == known_windows(buf)
        if in_tree(buf):
            batch = buf.sample(16, n_step=n_step, gamma=GAMMA)
            assert set(batch["indices"].tolist()) <= known_windows(buf)
            buf.update(batch["indices"], stream.rng.random(16) * 5)


def test_slots_enter_only_once_their_window_is_known() -> None:
    buf = make(n_step=3)
    stream = Stream(buf)
    no = np.zeros(1, dtype=np.bool_)
    for _ in range(2):
        stream.step(no, no)
        assert not buf.can_sample() and buf.num_sampleable() == 0
    stream.step(no, no)
    assert buf.can_sample() and in_tree(buf) == {0}
    with pytest.raises(RuntimeError, match="too few"):
        make().sample(4, n_step=1, gamma=GAMMA)


def test_an_episode_end_makes_the_young_rows_known_and_autoreset_rows_never_enter() -> None:
    buf = make(n_step=3)
    stream = Stream(buf)
    no, yes = np.zeros(1, dtype=np.bool_), np.ones(1, dtype=np.bool_)
    stream.step(no, no)
    assert in_tree(buf) == set()
    stream.step(yes, no)  # rows 0 and 1: windows end in the termination
    assert in_tree(buf) == {0, 1}
    stream.step(no, no)  # row 2 is the ignored autoreset step
    stream.step(no, no)
    stream.step(no, no)
    assert in_tree(buf) == {0, 1}
    stream.step(no, no)  # row 3's window (rows 3, 4, 5) is known now
    assert in_tree(buf) == {0, 1, 3}


def test_new_slots_enter_at_the_largest_priority_seen() -> None:
    buf = make(alpha=0.5)
    stream = Stream(buf)
    stream.step()
    assert buf.tree.get(np.array([0]))[0] == 1.0  # the initial maximum
    buf.update(np.array([0]), np.array([16.0]))
    expected = (16.0 + buf.priority_eps) ** 0.5
    assert buf.max_priority == pytest.approx(expected)
    buf.update(np.array([0]), np.array([1.0]))  # lower priorities keep the maximum
    stream.step(np.zeros(1, dtype=np.bool_), np.zeros(1, dtype=np.bool_))
    assert buf.tree.get(np.array([1]))[0] == pytest.approx(expected)


def test_importance_weights_hand_case() -> None:
    buf = make(alpha=1.0, beta0=0.5, beta_steps=10**9)
    stream = Stream(buf)
    no = np.zeros(1, dtype=np.bool_)
    stream.step(no, no)
    stream.step(no, no)
    buf.update(np.array([0, 1]), np.array([1.0, 4.0]))
    p = np.array([1.0, 4.0]) + buf.priority_eps
    batch = buf.sample(8, n_step=1, gamma=GAMMA)  # stratified: the first of 8 slices hits 0
    idx = batch["indices"]
    assert idx[0] == 0 and idx[-1] == 1
    # w_i = (N P_i)^-beta / max_j w_j with N = 2 slots, P_i = p_i / sum p, beta = 0.5
    w = (2 * p[idx] / p.sum()) ** -0.5
    np.testing.assert_allclose(batch["weights"], w / w.max(), rtol=1e-6)
    assert batch["weights"].dtype == np.float32


def test_importance_weights_are_normalized_by_the_batch_maximum_not_the_global_one() -> None:
    """Six slots, the one with the smallest priority (the largest weight in the buffer) not
    drawn: the batch's largest weight gets 1, not (N P_min)^-beta."""
    buf = make(alpha=0.6, beta0=0.4, beta_steps=10, seed=0)
    stream = Stream(buf)
    no = np.zeros(1, dtype=np.bool_)
    for _ in range(6):
        stream.step(no, no)
    deltas = np.array([0.01, 1.0, 2.0, 3.0, 5.0, 8.0])
    buf.update(np.arange(6), deltas)
    p = (deltas + buf.priority_eps) ** 0.6  # by hand, and what the sum tree holds
    np.testing.assert_allclose(buf.tree.leaves[:6], p, rtol=1e-12)
    assert buf.tree.total == pytest.approx(p.sum(), rel=1e-12)
    beta = 0.4 + 0.6 * 6 / 10  # 6 env steps of 10
    assert buf.beta() == pytest.approx(beta)
    batch = buf.sample(4, n_step=1, gamma=GAMMA)
    idx = batch["indices"]
    assert 0 not in idx and len(set(idx.tolist())) > 1  # the case this test is about
    n = buf.num_sampleable()
    assert n == 6
    w_all = (n * p / p.sum()) ** -beta  # (N P(i))^-beta of every slot
    expected = w_all[idx] / w_all[idx].max()
    np.testing.assert_allclose(batch["weights"], expected, rtol=1e-6)
    assert batch["weights"].max() == 1.0
    # normalized by the global maximum (slot 0's weight) every weight would be far below
    assert (w_all[idx] / w_all.max()).max() < 0.2


def test_beta_anneals_linearly_to_one_over_env_steps() -> None:
    buf = make(num_envs=2, capacity=40, beta0=0.4, beta_steps=10)
    stream = Stream(buf)
    assert buf.beta() == pytest.approx(0.4)
    stream.step()
    stream.step()  # 4 env steps
    assert buf.beta() == pytest.approx(0.4 + 0.6 * 0.4)
    for _ in range(4):
        stream.step()
    assert buf.beta() == 1.0


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
def test_sampling_frequencies_follow_priorities_to_the_alpha(alpha: float) -> None:
    """Chi-square goodness of fit at a fixed seed (critical value for 4 dof, p = 0.001)."""
    buf = make(alpha=alpha, seed=3)
    stream = Stream(buf)
    no = np.zeros(1, dtype=np.bool_)
    for _ in range(5):
        stream.step(no, no)
    deltas = np.array([0.5, 1.0, 2.0, 4.0, 8.0])
    buf.update(np.arange(5), deltas)
    counts = np.zeros(5)
    for _ in range(2000):
        batch = buf.sample(32, n_step=1, gamma=GAMMA)
        counts += np.bincount(batch["indices"], minlength=5)
        if alpha == 0.0:
            np.testing.assert_array_equal(batch["weights"], 1.0)
    p = (deltas + buf.priority_eps) ** alpha
    expected = counts.sum() * p / p.sum()
    chi2 = (((counts - expected) ** 2) / expected).sum()
    assert chi2 < 18.47, (counts, expected)


def test_overwritten_slots_leave_the_tree_and_stale_updates_are_skipped() -> None:
    buf = make(capacity=4)
    stream = Stream(buf)
    no = np.zeros(1, dtype=np.bool_)
    for _ in range(3):
        stream.step(no, no)
    assert in_tree(buf) == {0, 1, 2}
    stream.step(no, no)  # row 0 becomes the head: its transition is gone
    assert in_tree(buf) == {1, 2, 3}
    buf.update(np.array([0]), np.array([100.0]))
    assert buf.tree.get(np.array([0]))[0] == 0.0 and buf.max_priority == 1.0


def test_non_finite_priorities_do_not_poison_the_tree() -> None:
    buf = make()
    stream = Stream(buf)
    stream.step()
    stream.step()
    buf.update(np.array([0, 1]), np.array([np.nan, 3.0]))
    leaves = buf.tree.get(np.array([0, 1]))
    assert np.isfinite(buf.tree.total) and leaves[0] == leaves[1] == buf.max_priority


def test_sampling_another_n_than_tracked_is_refused() -> None:
    buf = make(n_step=3)
    stream = Stream(buf)
    for _ in range(5):
        stream.step()
    with pytest.raises(ValueError, match=r"buffer.n_step=3; cannot sample n_step=1"):
        buf.sample(4, n_step=1, gamma=GAMMA)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("alpha", -0.1, "buffer.alpha=-0.1: must be >= 0"),
        ("beta0", 1.5, "buffer.beta0=1.5: must be in [0, 1]"),
        ("beta_steps", 0, "buffer.beta_steps=0: must be >= 1"),
        ("priority_eps", 0.0, "buffer.priority_eps=0.0: must be > 0"),
    ],
)
def test_bad_values_raise_one_line_config_errors(key: str, value: float, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        make(**{key: value})
    assert str(info.value) == message


def roundtrip(state: dict[str, Any]) -> dict[str, Any]:
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def test_state_dict_resumes_sampling_bit_identically() -> None:
    a = make(capacity=30, num_envs=2, n_step=3, seed=5)
    stream = Stream(a, seed=1)
    for _ in range(40):  # wraps the 15-row ring
        stream.step()
        if a.can_sample():
            batch = a.sample(8, n_step=3, gamma=GAMMA)
            a.update(batch["indices"], stream.rng.random(8))
    b = make(capacity=30, num_envs=2, n_step=3, seed=99)
    b.load_state_dict(roundtrip(a.state_dict()))
    assert np.array_equal(a.tree.nodes, b.tree.nodes)
    assert (a.max_priority, a.env_steps, a.beta()) == (b.max_priority, b.env_steps, b.beta())
    for _ in range(3):
        x, y = a.sample(8, n_step=3, gamma=GAMMA), b.sample(8, n_step=3, gamma=GAMMA)
        for key in x:
            np.testing.assert_array_equal(x[key], y[key])


def test_state_without_contents_starts_empty_and_keeps_the_schedule() -> None:
    a = make(checkpoint=False)
    stream = Stream(a)
    for _ in range(10):
        stream.step()
    b = make(checkpoint=False)
    b.load_state_dict(roundtrip(a.state_dict()))
    assert b.tree.total == 0.0 and not b.started and b.env_steps == 10
