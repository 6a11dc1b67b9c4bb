"""Trajectory replay: n-step sampling against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from rlbench.buffers import TrajectoryReplayBuffer

GAMMA = 0.9


def make(capacity: int = 100, num_envs: int = 1, seed: int = 0) -> TrajectoryReplayBuffer:
    return TrajectoryReplayBuffer(
        capacity=capacity, num_envs=num_envs, obs_shape=(1,), obs_dtype=np.float32, seed=seed
    )


def feed(
    buf: TrajectoryReplayBuffer, steps: list[tuple[float, bool, bool]], start_obs: float = 0.0
):
    """Feed one env a NEXT_STEP stream: (reward, terminated, truncated) per env step.

    Observations count up from ``start_obs`` (``obs == row number``), so a sample's
    ``next_obs`` tells which row it bootstrapped from. After an episode end the next call
    is the ignored autoreset step (reward 0).
    """
    obs = start_obs
    if not buf.started:
        buf.start(np.array([[obs]], dtype=np.float32))
    prev_done = False
    for reward, term, trunc in steps:
        obs += 1
        buf.add(
            action=np.array([0]),
            reward=np.array([reward]),
            terminated=np.array([term]),
            truncated=np.array([trunc]),
            next_obs=np.array([[obs]], dtype=np.float32),
            ignored=np.array([prev_done]),
        )
        prev_done = term or trunc


def at(buf: TrajectoryReplayBuffer, row: int, n: int) -> dict[str, np.ndarray]:
    return buf.gather(np.array([row]), np.array([0]), n_step=n, gamma=GAMMA)


def test_n_step_plain_window() -> None:
    buf = make()
    feed(buf, [(1.0, False, False), (2.0, False, False), (3.0, False, False), (4.0, False, False)])
    out = at(buf, 0, 3)
    assert out["reward"][0] == pytest.approx(1 + GAMMA * 2 + GAMMA**2 * 3)
    assert out["discount"][0] == pytest.approx(GAMMA**3)
    assert out["next_obs"][0, 0] == 3.0  # obs of row 3
    assert out["obs"][0, 0] == 0.0
    assert out["steps"][0] == 3


def test_termination_inside_window_zeroes_discount() -> None:
    buf = make()
    # rows: 0 r1, 1 r2 terminated, 2 ignored (final obs), 3 new episode r5
    feed(buf, [(1.0, False, False), (2.0, True, False), (0.0, False, False), (5.0, False, False)])
    out = at(buf, 0, 3)
    assert out["reward"][0] == pytest.approx(1 + GAMMA * 2)  # stops at the episode end
    assert out["discount"][0] == 0.0
    assert out["steps"][0] == 2


def test_truncation_bootstraps_from_final_observation() -> None:
    buf = make()
    feed(buf, [(1.0, False, False), (2.0, False, True), (0.0, False, False), (5.0, False, False)])
    out = at(buf, 0, 3)
    assert out["reward"][0] == pytest.approx(1 + GAMMA * 2)
    assert out["discount"][0] == pytest.approx(GAMMA**2)
    assert out["next_obs"][0, 0] == 2.0  # the truncated episode's final observation (row 2)


def test_terminated_and_truncated_together_is_terminal() -> None:
    buf = make()
    feed(buf, [(1.0, True, True), (0.0, False, False)])
    out = at(buf, 0, 1)
    assert out["discount"][0] == 0.0


def test_ignored_rows_are_never_sampled_and_windows_never_cross_episodes() -> None:
    buf = make(capacity=200, seed=1)
    rng = np.random.default_rng(0)
    steps = []
    for _ in range(150):
        end = rng.random() < 0.2
        steps.append((1.0, end and rng.random() < 0.5, end))
    feed(buf, steps)
    batch = buf.sample(2000, n_step=3, gamma=GAMMA)
    rows = batch["obs"][:, 0].astype(int)
    assert not buf.ignored[rows, 0].any()
    # next_obs is at most 3 rows ahead and never beyond the row after the episode's end
    gap = batch["next_obs"][:, 0] - batch["obs"][:, 0]
    assert ((gap >= 1) & (gap <= 3)).all()
    np.testing.assert_array_equal(gap, batch["steps"])


def test_transition_sampleable_as_soon_as_window_known() -> None:
    buf = make()
    feed(buf, [(1.0, False, False), (1.0, False, False)])
    assert not buf.can_sample(3)
    feed(buf, [(1.0, True, False)], start_obs=2.0)
    # the episode ended: all three transitions have known windows even though n=3 > 2
    batch = buf.sample(300, n_step=3, gamma=GAMMA)
    assert set(batch["obs"][:, 0].tolist()) == {0.0, 1.0, 2.0}
    # at n=3 with no end, the youngest two rows must wait
    buf2 = make()
    feed(buf2, [(1.0, False, False)] * 5)
    batch = buf2.sample(500, n_step=3, gamma=GAMMA)
    assert set(batch["obs"][:, 0].tolist()) == {0.0, 1.0, 2.0}


def test_wrap_around_keeps_order_and_drops_oldest() -> None:
    buf = make(capacity=5)  # 5 rows: 4 complete + the pending head
    feed(buf, [(float(i), False, False) for i in range(1, 9)])
    assert buf.complete == 4
    batch = buf.sample(400, n_step=2, gamma=GAMMA)
    obs = batch["obs"][:, 0]
    assert set(obs.tolist()) == {4.0, 5.0, 6.0}  # rows 4..7 complete; 7 needs row 9 for n=2
    # reward of the transition starting at obs 5 (row 5 stores reward 6, row 6 reward 7)
    i = int(np.flatnonzero(obs == 5.0)[0])
    assert batch["reward"][i] == pytest.approx(6 + GAMMA * 7)
    assert batch["next_obs"][i, 0] == 7.0


def test_several_envs_keep_separate_streams() -> None:
    buf = TrajectoryReplayBuffer(
        capacity=40, num_envs=2, obs_shape=(1,), obs_dtype=np.float32, seed=0
    )
    buf.start(np.array([[0.0], [100.0]], dtype=np.float32))
    done = np.array([False, False])
    for t in range(1, 10):
        term = np.array([t == 3, False])
        buf.add(
            action=np.zeros(2, dtype=np.int64),
            reward=np.array([1.0, 10.0]),
            terminated=term,
            truncated=np.zeros(2, dtype=bool),
            next_obs=np.array([[t], [100.0 + t]], dtype=np.float32),
            ignored=done,
        )
        done = term
    batch = buf.sample(500, n_step=2, gamma=GAMMA)
    env1 = batch["obs"][:, 0] >= 100
    assert np.allclose(batch["reward"][env1], 10 + GAMMA * 10)
    assert (batch["next_obs"][env1, 0] - batch["obs"][env1, 0] == 2).all()
    assert (batch["next_obs"][~env1, 0] < 100).all()
    # env 0: the transition from obs 2 ends the episode after one step
    i = np.flatnonzero(batch["obs"][:, 0] == 2.0)
    assert len(i) and np.allclose(batch["discount"][i], 0.0)


def test_uniform_over_valid_transitions() -> None:
    buf = make(capacity=64, seed=3)
    feed(buf, [(1.0, False, False)] * 20)
    batch = buf.sample(40_000, n_step=1, gamma=GAMMA)
    counts = np.bincount(batch["obs"][:, 0].astype(int), minlength=20)
    assert counts.min() > 0
    expected = 40_000 / 20
    assert np.abs(counts - expected).max() < 5 * np.sqrt(expected)


def test_state_dict_round_trip_continues_identically() -> None:
    a = make(capacity=30, seed=5)
    feed(a, [(float(i), i % 7 == 6, False) for i in range(20)])
    b = make(capacity=30, seed=99)
    b.load_state_dict(a.state_dict())
    for key in ("obs", "reward", "discount", "next_obs"):
        np.testing.assert_array_equal(
            a.sample(16, n_step=3, gamma=GAMMA)[key], b.sample(16, n_step=3, gamma=GAMMA)[key]
        )


def test_too_small_capacity_is_rejected() -> None:
    with pytest.raises(ValueError, match="capacity"):
        make(capacity=3, num_envs=2)


def test_one_step_fast_path_equals_the_general_window() -> None:
    buf = make(capacity=50, seed=2)
    feed(buf, [(float(i), i % 5 == 4, i % 7 == 6) for i in range(40)])
    rows = np.arange(buf.complete - 1)
    envs = np.zeros_like(rows)
    fast = buf.gather(rows, envs, n_step=1, gamma=GAMMA)
    for i, r in enumerate(rows):  # against the stored rows, read by hand
        assert fast["reward"][i] == buf.reward[r, 0]
        assert fast["discount"][i] == pytest.approx(0.0 if buf.terminated[r, 0] else GAMMA)
        assert fast["next_obs"][i, 0] == buf.obs[(r + 1) % buf.rows, 0, 0]
