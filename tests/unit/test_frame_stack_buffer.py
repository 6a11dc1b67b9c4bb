"""Frame-stack replay: single frames stored, stacks rebuilt bit-identically at sample time."""

from __future__ import annotations

import numpy as np
import pytest

from rlbench.buffers import TrajectoryReplayBuffer
from rlbench.buffers.replay import (
    PAD_REPEAT,
    PAD_UNKNOWN,
    PAD_ZERO,
    rebuild_stacks,
    stack_padding,
)

K = 3  # frames per stack in the synthetic tests


def frame(value: int) -> np.ndarray:
    """A 2x2 frame filled with ``value``."""
    return np.full((2, 2), value, dtype=np.uint8)


def stack(*values: int) -> np.ndarray:
    return np.stack([frame(v) for v in values])


def make(capacity: int = 50, num_envs: int = 1, **kwargs: object) -> TrajectoryReplayBuffer:
    return TrajectoryReplayBuffer(
        capacity=capacity,
        num_envs=num_envs,
        obs_shape=(K, 2, 2),
        obs_dtype=np.uint8,
        frame_stack=K,
        **kwargs,  # type: ignore[arg-type]
    )


class Stream:
    """Feeds one env a NEXT_STEP stream of stacks (like a frame-stacking env would) and
    remembers the stack stored at each row."""

    def __init__(self, buf: TrajectoryReplayBuffer, first: np.ndarray) -> None:
        self.buf = buf
        self.stacks = [first]
        self.prev_done = False
        buf.start(first[None])

    def step(self, obs: np.ndarray, *, reward: float = 1.0, term: bool = False) -> None:
        self.buf.add(
            action=np.array([0]),
            reward=np.array([reward]),
            terminated=np.array([term]),
            truncated=np.array([False]),
            next_obs=obs[None],
            ignored=np.array([self.prev_done]),
        )
        self.stacks.append(obs)
        self.prev_done = term


def test_padding_kinds() -> None:
    stacks = np.stack([stack(0, 0, 5), stack(5, 5, 5), stack(1, 2, 5), stack(0, 0, 0)])
    assert stack_padding(stacks).tolist() == [PAD_ZERO, PAD_REPEAT, PAD_UNKNOWN, PAD_ZERO]


def test_rebuild_hand_case() -> None:
    # ring of 5 rows, 1 env; frames 10..14
    frames = np.stack([frame(10 + r) for r in range(5)])[:, None]
    rows, envs = np.array([3, 3, 3, 0]), np.zeros(4, dtype=np.int64)
    out = rebuild_stacks(
        frames,
        rows,
        envs,
        depth=np.array([2, 1, 0, 2]),
        padding=np.array([PAD_ZERO, PAD_ZERO, PAD_REPEAT, PAD_ZERO]),
        k=K,
    )
    assert out[:, :, 0, 0].tolist() == [
        [11, 12, 13],  # full depth
        [0, 12, 13],  # one predecessor, zero padding
        [13, 13, 13],  # fresh, repeat padding
        [13, 14, 10],  # wraps around the ring: rows 3, 4, 0
    ]


def test_episode_starts_reset_the_stack_and_samples_match_what_was_stored() -> None:
    buf = make()
    s = Stream(buf, stack(0, 0, 1))  # zero-padded reset
    s.step(stack(0, 1, 2))
    s.step(stack(1, 2, 3), term=True)
    s.step(stack(4, 4, 4))  # ignored autoreset step; repeat-padded reset
    s.step(stack(4, 4, 5))
    s.step(stack(4, 5, 6))
    s.step(stack(5, 6, 7))
    assert buf.depth[:7, 0].tolist() == [0, 1, 2, 0, 1, 2, 2]
    assert buf.padding[:4, 0].tolist() == [PAD_ZERO, PAD_ZERO, PAD_ZERO, PAD_REPEAT]
    for row in (0, 1, 3, 4):
        out = buf.gather(np.array([row]), np.array([0]), n_step=1, gamma=0.9)
        np.testing.assert_array_equal(out["obs"][0], s.stacks[row])
        np.testing.assert_array_equal(out["next_obs"][0], s.stacks[row + 1])


def test_unknown_start_is_not_sampled_until_its_frames_are_stored() -> None:
    buf = make()
    s = Stream(buf, stack(7, 8, 9))  # mid-episode start (resume without buffer contents)
    ages_ok = []
    for t in range(4):
        s.step(stack(8 + t, 9 + t, 10 + t))
    rows = np.arange(5)
    ages = buf.head - rows
    ages_ok = buf._valid(rows, np.zeros(5, dtype=np.int64), ages, 1).tolist()
    # rows 0 and 1 miss frames from before the start; row 2 reaches back to row 0 only
    assert ages_ok == [False, False, True, True, False]  # row 4 is the head (no step yet)
    out = buf.sample(64, n_step=1, gamma=0.9)
    np.testing.assert_array_equal(np.unique(out["indices"]), [2, 3])


def test_wrapped_ring_never_rebuilds_from_overwritten_frames() -> None:
    buf = make(capacity=6)
    s = Stream(buf, stack(0, 0, 1))
    for t in range(2, 20):
        s.step(stack(max(t - 2, 0), t - 1, t))
    batch_rows = np.arange(buf.rows)
    ages = (buf.head - batch_rows) % buf.rows
    valid = buf._valid(batch_rows, np.zeros(buf.rows, dtype=np.int64), ages, 1)
    for row in batch_rows[valid]:
        age = (buf.head - row) % buf.rows
        assert age + buf.depth[row, 0] <= buf.complete
        out = buf.gather(np.array([row]), np.array([0]), n_step=1, gamma=0.9)
        np.testing.assert_array_equal(out["obs"][0], s.stacks[-1 - age])
    assert valid.sum() == buf.complete - (K - 1)  # the oldest K-1 rows lost their history


def test_atari_rollout_rebuilds_every_sampleable_stack_exactly() -> None:
    """Native Breakout with episodic life and sticky actions: every sampled obs/next_obs
    equals the stack the env returned, across resets, life losses and ring wrap-around."""
    from rlbench.envs.atari import AtariFactory

    envs = AtariFactory(
        game="breakout", num_envs=2, episodic_life=True, max_episode_frames=1200
    ).make()
    buf = TrajectoryReplayBuffer(
        capacity=400, num_envs=2, obs_shape=(4, 84, 84), obs_dtype=np.uint8, frame_stack=4
    )
    obs, _ = envs.reset(seed=3)
    buf.start(obs)
    seen = {0: obs}
    rng = np.random.default_rng(0)
    prev_done = np.zeros(2, dtype=np.bool_)
    ended = 0
    for t in range(1, 700):
        obs, reward, term, trunc, _ = envs.step(rng.integers(4, size=2))
        buf.add(
            action=np.zeros(2, dtype=np.int64),
            reward=reward,
            terminated=term,
            truncated=trunc,
            next_obs=obs,
            ignored=prev_done,
        )
        seen[t] = obs
        prev_done = term | trunc
        ended += int(prev_done.sum())
    envs.close()
    assert ended >= 4  # the rollout crossed life losses and resets
    rows = np.repeat(np.arange(buf.rows), 2)
    env_ids = np.tile(np.arange(2), buf.rows)
    ages = (buf.head - rows) % buf.rows
    valid = buf._valid(rows, env_ids, ages, 1) & (ages >= 1)
    out = buf.gather(rows[valid], env_ids[valid], n_step=1, gamma=0.99)
    t_of = 699 - ages[valid]
    expected = np.stack([seen[t][e] for t, e in zip(t_of, env_ids[valid], strict=True)])
    np.testing.assert_array_equal(out["obs"], expected)
    assert valid.sum() > 0.9 * len(valid)


def test_bytes_per_atari_transition() -> None:
    buf = TrajectoryReplayBuffer(
        capacity=1000, num_envs=8, obs_shape=(4, 84, 84), obs_dtype=np.uint8, frame_stack=4
    )
    arrays = ("obs", "action", "reward", "terminated", "truncated", "ignored", "depth", "padding")
    per_transition = sum(getattr(buf, a).nbytes for a in arrays) / (buf.rows * buf.num_envs)
    assert per_transition == 84 * 84 + 8 + 4 + 1 + 1 + 1 + 1 + 1  # 7073 B: 7.07 GB per 1M


def test_state_dict_round_trip_keeps_stacks() -> None:
    buf = make()
    s = Stream(buf, stack(0, 0, 1))
    for t in range(2, 9):
        s.step(stack(t - 2, t - 1, t))
    copy = make()
    copy.load_state_dict(buf.state_dict())
    s2 = Stream.__new__(Stream)
    s2.buf, s2.stacks, s2.prev_done = copy, list(s.stacks), False
    for stream in (s, s2):
        stream.step(stack(7, 8, 9))
    a = buf.sample(16, n_step=2, gamma=0.9)
    b = copy.sample(16, n_step=2, gamma=0.9)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert copy.depth[buf.head, 0] == K - 1  # the new stack linked to the restored one


def test_clip_rewards_clips_each_step_before_the_n_step_sum() -> None:
    buf = TrajectoryReplayBuffer(
        capacity=20, num_envs=1, obs_shape=(1,), obs_dtype=np.float32, clip_rewards=True
    )
    buf.start(np.zeros((1, 1), dtype=np.float32))
    for r in (5.0, -3.0, 0.5):
        buf.add(
            action=np.array([0]),
            reward=np.array([r]),
            terminated=np.array([False]),
            truncated=np.array([False]),
            next_obs=np.zeros((1, 1), dtype=np.float32),
            ignored=np.array([False]),
        )
    out = buf.gather(np.array([0]), np.array([0]), n_step=3, gamma=0.5)
    assert out["reward"][0] == pytest.approx(1.0 - 0.5 * 1.0 + 0.25 * 0.5)
    assert buf.reward[:3, 0].tolist() == [5.0, -3.0, 0.5]  # stored raw


def test_frame_stack_must_match_observation_shape() -> None:
    with pytest.raises(ValueError, match="not stacks of 4 frames"):
        TrajectoryReplayBuffer(
            capacity=10, num_envs=1, obs_shape=(3,), obs_dtype=np.float32, frame_stack=4
        )
