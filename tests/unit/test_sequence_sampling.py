"""Sequence sampling from the trajectory buffer, pinned against a re-simulated env stream.

A scripted NEXT_STEP vector env plays episodes of random lengths per env, ending in
termination, truncation or both; the step after an episode end is the ignored autoreset step
(reward 0, reset observation). Observations encode ``(env, episode, t)`` and actions
``(step, env)``, so every returned array can be checked against the recorded stream, and
which windows are valid is recomputed here from the stream alone (plain Python loops).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from rlbench.buffers import TrajectoryReplayBuffer
from rlbench.buffers.prioritized import PrioritizedReplayBuffer

K = 4  # frames per stack in the frame-stacked tests
PADS = ("zero", "repeat", "junk")  # how a reset stack fills its older frames


def frame(env: int, episode: int, t: int) -> np.ndarray:
    """A 2x2 uint8 frame, never zero, encoding ``(env, episode, t)``."""
    return np.array([[env + 1, episode + 1], [t + 1, 9]], dtype=np.uint8)


@dataclass
class Stream:
    """The recorded stream: index ``s`` is the ``s``-th observation (``0..T``) or step."""

    num_envs: int
    frame_stack: int
    obs: list[np.ndarray] = field(default_factory=list)  # (E, *obs) per s
    reset: list[np.ndarray] = field(default_factory=list)  # obs s is a reset observation
    reset_at: list[np.ndarray] = field(default_factory=list)  # s of its episode's reset
    pad: list[list[str]] = field(default_factory=list)  # padding of its episode's reset
    action: list[np.ndarray] = field(default_factory=list)  # (E, *act) per step s
    reward: list[np.ndarray] = field(default_factory=list)
    term: list[np.ndarray] = field(default_factory=list)
    trunc: list[np.ndarray] = field(default_factory=list)
    ignored: list[np.ndarray] = field(default_factory=list)

    @property
    def T(self) -> int:
        return len(self.action)

    def oldest(self, rows: int) -> int:
        """Oldest observation still stored in a ring of ``rows`` rows."""
        return self.T - min(self.T, rows - 1)

    def rebuildable(self, s: int, e: int, oldest: int) -> bool:
        """Whether the stack of observation ``s`` can be rebuilt from stored frames: the
        frames it holds from its own episode are stored, and any older slots are padding of
        a known kind."""
        if self.frame_stack == 1:
            return True
        r = int(self.reset_at[s][e])
        first_needed = max(s - (self.frame_stack - 1), r)
        padded = s - (self.frame_stack - 1) < r
        return first_needed >= oldest and not (padded and self.pad[s][e] == "junk")

    def valid_starts(
        self, length: int, within: bool, rows: int, *, stacks: bool = True, history: bool = True
    ) -> set[tuple[int, int]]:
        """``(env, s0)`` of every window the buffer may serve; what-ifs: were every stored
        stack rebuildable (``stacks=False``), or were the frames the ring overwrote still
        there (``history=False``)."""
        oldest, out = self.oldest(rows), set()
        horizon = oldest if history else -1
        for e in range(self.num_envs):
            for s0 in range(oldest, self.T - length + 1):
                steps = range(s0, s0 + length)
                if within:
                    if any(self.ignored[s][e] for s in steps):
                        continue
                    if any(self.term[s][e] or self.trunc[s][e] for s in steps[:-1]):
                        continue
                elif self.ignored[s0][e]:
                    continue
                obs = range(s0, s0 + length + 1)
                if not stacks or all(self.rebuildable(s, e, horizon) for s in obs):
                    out.add((e, s0))
        return out


def drive(
    buf: TrajectoryReplayBuffer,
    *,
    seed: int,
    min_steps: int,
    max_len: int = 6,
    oldest_reset: bool = True,
) -> Stream:
    """Play the scripted env into ``buf`` for at least ``min_steps`` vector steps; with
    ``oldest_reset``, go on until some env's oldest stored observation is a reset one (so
    only the stored ``first`` flag can tell it starts an episode)."""
    rng = np.random.default_rng(seed)
    n, k = buf.num_envs, buf.frame_stack
    st = Stream(num_envs=n, frame_stack=k)
    episode = np.zeros(n, dtype=np.int64)
    t = np.zeros(n, dtype=np.int64)
    length = rng.integers(1, max_len + 1, size=n)
    pad = [str(rng.choice(PADS)) for _ in range(n)]
    stacks = np.zeros((n, k, 2, 2), dtype=np.uint8)
    reset_at = np.zeros(n, dtype=np.int64)
    prev_done = np.zeros(n, dtype=np.bool_)

    def reset_stack(e: int) -> None:
        f = frame(e, int(episode[e]), 0)
        if pad[e] == "zero":
            stacks[e] = 0
        elif pad[e] == "repeat":
            stacks[e] = f
        else:  # neither zeros nor repeats: the buffer cannot know these frames
            stacks[e] = 200 + np.arange(k, dtype=np.uint8)[:, None, None]
        stacks[e, -1] = f

    def observe(reset: np.ndarray) -> np.ndarray:
        st.reset.append(reset.copy())
        st.reset_at.append(reset_at.copy())
        st.pad.append(list(pad))
        if k > 1:
            out = stacks.copy()
        else:
            out = np.stack([np.arange(n), episode, t], axis=1).astype(np.float32)
        st.obs.append(out)
        return out

    for e in range(n):
        reset_stack(e)
    buf.start(observe(np.ones(n, dtype=np.bool_)))
    s = 0
    while True:
        if k > 1:
            action = np.arange(n, dtype=np.int64) + s * n
        else:
            action = np.stack([np.full(n, s), np.arange(n)], axis=1).astype(np.float32)
        reward = np.zeros(n, dtype=np.float32)
        term = np.zeros(n, dtype=np.bool_)
        trunc = np.zeros(n, dtype=np.bool_)
        reset = prev_done.copy()
        for e in range(n):
            if prev_done[e]:  # autoreset: no step, the reset observation of a new episode
                episode[e] += 1
                t[e] = 0
                length[e] = rng.integers(1, max_len + 1)
                pad[e] = str(rng.choice(PADS))
                reset_at[e] = s + 1
                reset_stack(e)
                continue
            t[e] += 1
            reward[e] = 0.75 * t[e] - 1.5 + e  # some beyond [-1, 1], for clip_rewards
            if t[e] == length[e]:
                kind = rng.random()
                term[e], trunc[e] = kind < 0.45 or kind > 0.9, kind >= 0.45
            stacks[e] = np.roll(stacks[e], -1, axis=0)
            stacks[e, -1] = frame(e, int(episode[e]), int(t[e]))
        st.action.append(action)
        st.reward.append(reward)
        st.term.append(term)
        st.trunc.append(trunc)
        st.ignored.append(prev_done.copy())
        buf.add(
            action=action,
            reward=reward,
            terminated=term,
            truncated=trunc,
            next_obs=observe(reset),
            ignored=prev_done.copy(),
        )
        prev_done = term | trunc
        s += 1
        if s >= min_steps:
            oldest = st.oldest(buf.rows)
            if not oldest_reset or (oldest > 0 and st.reset[oldest].any()):
                return st


def make(
    *,
    rows: int,
    num_envs: int = 3,
    frame_stack: int = 1,
    seed: int = 0,
    cls: type[TrajectoryReplayBuffer] = TrajectoryReplayBuffer,
    **kw: Any,
) -> TrajectoryReplayBuffer:
    stacked = frame_stack > 1
    return cls(
        capacity=rows * num_envs,
        num_envs=num_envs,
        obs_shape=(frame_stack, 2, 2) if stacked else (3,),
        obs_dtype=np.uint8 if stacked else np.float32,
        action_shape=() if stacked else (2,),
        action_dtype=np.int64 if stacked else np.float32,
        frame_stack=frame_stack,
        seed=seed,
        **kw,
    )


def starts(buf: TrajectoryReplayBuffer, st: Stream, indices: np.ndarray) -> np.ndarray:
    """``(B, 2)`` of ``(env, s0)``: the stream step of each window's first slot."""
    rows, envs = np.divmod(indices, buf.num_envs)
    s0 = st.T - (st.T - rows) % buf.rows  # the stored step held by that row
    return np.stack([envs, s0], axis=1)


def check(
    buf: TrajectoryReplayBuffer, st: Stream, batch: dict[str, np.ndarray], L: int, within: bool
) -> np.ndarray:
    """Every field of every window against the stream; returns the windows' ``(env, s0)``."""
    B = len(batch["indices"])
    obs_shape = st.obs[0].shape[1:]
    act_shape = st.action[0].shape[1:]
    assert batch["obs"].shape == (B, L + 1, *obs_shape)
    assert batch["action"].shape == (B, L, *act_shape)
    for key in ("reward", "terminated", "truncated", "mask"):
        assert batch[key].shape == (B, L), key
    for key in ("is_first", "is_terminal"):
        assert batch[key].shape == (B, L + 1), key
    assert batch["reward"].dtype == np.float32
    for key in ("terminated", "truncated", "mask", "is_first", "is_terminal"):
        assert batch[key].dtype == np.bool_, key
    ws = starts(buf, st, batch["indices"])
    valid = st.valid_starts(L, within, buf.rows)
    bad = [tuple(w) for w in ws.tolist() if tuple(w) not in valid]
    assert not bad, f"invalid windows sampled: {bad[:5]}"
    obs = np.stack([np.stack(st.obs)[:, e] for e in range(st.num_envs)])  # (E, T+1, ...)
    act = np.stack([np.stack(st.action)[:, e] for e in range(st.num_envs)])
    per_env = {
        name: np.stack(getattr(st, name), axis=1)  # (E, T) or (E, T+1)
        for name in ("reward", "term", "trunc", "ignored", "reset")
    }
    e = ws[:, :1]
    s_obs = ws[:, 1:] + np.arange(L + 1)  # (B, L+1)
    s_step = s_obs[:, :-1]
    np.testing.assert_array_equal(batch["obs"], obs[e, s_obs])
    np.testing.assert_array_equal(batch["action"], act[e, s_step])
    reward = per_env["reward"][e, s_step]
    if buf.clip_rewards:
        reward = np.clip(reward, -1.0, 1.0)
    np.testing.assert_array_equal(batch["reward"], reward)
    np.testing.assert_array_equal(batch["terminated"], per_env["term"][e, s_step])
    np.testing.assert_array_equal(batch["truncated"], per_env["trunc"][e, s_step])
    np.testing.assert_array_equal(batch["mask"], ~per_env["ignored"][e, s_step])
    np.testing.assert_array_equal(batch["is_first"], per_env["reset"][e, s_obs])
    terminal = np.zeros_like(batch["is_terminal"])
    prev = s_obs - 1
    real_term = per_env["term"] & ~per_env["ignored"]
    terminal[prev >= 0] = real_term[np.broadcast_to(e, prev.shape)[prev >= 0], prev[prev >= 0]]
    np.testing.assert_array_equal(batch["is_terminal"], terminal)
    return ws


@pytest.mark.parametrize("clip_rewards", [False, True])
def test_within_episode_windows_match_the_stream(clip_rewards: bool) -> None:
    buf = make(rows=40, clip_rewards=clip_rewards)
    st = drive(buf, seed=1, min_steps=100)
    L = 3
    batch = buf.sample_sequences(3000, length=L, within_episode=True)
    ws = check(buf, st, batch, L, within=True)
    assert batch["mask"].all()
    assert not batch["is_first"][:, 1:].any()  # never crosses into a new episode
    done = batch["terminated"] | batch["truncated"]
    assert not done[:, :-1].any()
    last_term = batch["terminated"][:, -1] & ~batch["truncated"][:, -1]
    last_trunc = batch["truncated"][:, -1] & ~batch["terminated"][:, -1]
    assert last_term.any() and last_trunc.any()  # windows end in both kinds of episode end
    np.testing.assert_array_equal(batch["is_terminal"][:, -1], batch["terminated"][:, -1])
    # wrapped around the ring, and every valid start was reached
    assert buf.rows < st.T
    assert {tuple(w) for w in ws.tolist()} == st.valid_starts(L, True, buf.rows)


def test_spanning_windows_mark_boundaries_and_ignored_rows() -> None:
    buf = make(rows=40, seed=3)
    st = drive(buf, seed=2, min_steps=100)
    L = 9
    batch = buf.sample_sequences(3000, length=L, within_episode=False)
    ws = check(buf, st, batch, L, within=False)
    assert batch["mask"][:, 0].all()  # the first step is real
    assert (~batch["mask"]).any() and batch["is_first"][:, 1:].any()
    # is_first exactly after ignored rows; is_terminal only at the final obs (an ignored row)
    np.testing.assert_array_equal(batch["is_first"][:, 1:], ~batch["mask"])
    assert not (batch["is_terminal"][:, :-1] & batch["mask"][:, :]).any()
    assert batch["is_terminal"].any()
    assert buf.rows < st.T
    assert {tuple(w) for w in ws.tolist()} == st.valid_starts(L, False, buf.rows)


@pytest.mark.parametrize("within", [True, False])
def test_frame_stacked_sequences_return_the_emitted_stacks(within: bool) -> None:
    buf = make(rows=48, num_envs=2, frame_stack=K, seed=4)
    st = drive(buf, seed=7, min_steps=150, max_len=9)
    L = 4
    batch = buf.sample_sequences(3000, length=L, within_episode=within)
    ws = check(buf, st, batch, L, within)
    valid = st.valid_starts(L, within, buf.rows)
    assert {tuple(w) for w in ws.tolist()} == valid
    # some stored windows are excluded for their stacks alone: stacks that reach frames the
    # ring overwrote, and fresh stacks of junk padding
    with_history = st.valid_starts(L, within, buf.rows, history=False)
    assert valid < with_history < st.valid_starts(L, within, buf.rows, stacks=False)


@pytest.mark.parametrize("within", [True, False])
def test_state_dict_round_trip_preserves_sampling(within: bool) -> None:
    a = make(rows=30, seed=6)
    st = drive(a, seed=7, min_steps=80)
    oldest_row = st.oldest(a.rows) % a.rows
    assert a.first[oldest_row].any()  # only the stored flag knows (the row before is gone)
    b = make(rows=30, seed=123)
    b.load_state_dict(a.state_dict())
    L = 5
    x = a.sample_sequences(256, length=L, within_episode=within)
    y = b.sample_sequences(256, length=L, within_episode=within)
    for key in x:
        np.testing.assert_array_equal(x[key], y[key], err_msg=key)
    check(b, st, y, L, within)
    # windows starting at the oldest row, whose first obs starts an episode
    env = int(np.flatnonzero(a.first[oldest_row])[0])
    out = b.gather_sequences(np.array([oldest_row]), np.array([env]), length=L)
    assert out["is_first"][0, 0]


def test_checkpoint_without_first_derives_it_from_ignored_rows() -> None:
    a = make(rows=30, seed=6)
    st = drive(a, seed=7, min_steps=80)
    state = a.state_dict()
    del state["first"]  # saved before rows kept `first`
    b = make(rows=30)
    b.load_state_dict(state)
    oldest_row = st.oldest(a.rows) % a.rows
    expected = a.first.copy()
    expected[oldest_row] = False  # unknowable without the stored flag
    np.testing.assert_array_equal(b.first, expected)
    # a ring not yet full starts with the start() row
    c = make(rows=100)
    drive(c, seed=8, min_steps=40, oldest_reset=False)
    state = c.state_dict()
    del state["first"]
    d = make(rows=100)
    d.load_state_dict(state)
    np.testing.assert_array_equal(d.first, c.first)


def test_prioritized_buffer_checkpoints_first_too() -> None:
    a = make(rows=30, cls=PrioritizedReplayBuffer, beta_steps=100)
    st = drive(a, seed=9, min_steps=80)
    b = make(rows=30, cls=PrioritizedReplayBuffer, beta_steps=100)
    b.load_state_dict(a.state_dict())
    np.testing.assert_array_equal(a.first, b.first)
    check(b, st, b.sample_sequences(64, length=4, within_episode=False), 4, within=False)


@pytest.mark.parametrize("within", [True, False])
def test_uniform_over_valid_windows(within: bool) -> None:
    buf = make(rows=24, num_envs=2, seed=10)
    st = drive(buf, seed=11, min_steps=50)
    L = 3
    valid = sorted(st.valid_starts(L, within, buf.rows))
    n = 40_000
    ws = starts(buf, st, buf.sample_sequences(n, length=L, within_episode=within)["indices"])
    index = {w: i for i, w in enumerate(valid)}
    counts = np.bincount([index[tuple(w)] for w in ws.tolist()], minlength=len(valid))
    expected = n / len(valid)
    assert counts.min() > 0
    assert np.abs(counts - expected).max() < 5 * np.sqrt(expected)


def test_rare_windows_are_found_and_still_drawn_uniformly(monkeypatch: pytest.MonkeyPatch) -> None:
    """Windows so rare that rejection sampling cannot fill the batch: the rest comes from
    the list of all valid windows, still uniform; ``can_sample_sequences`` finds them."""
    buf = make(rows=4000, num_envs=2)
    buf.start(np.zeros((2, 3), dtype=np.float32))
    lo, hi = 2000, 2100  # env 1 plays one episode of 100 steps there, else one-step ones
    for i in range(3000):
        short_end = (i - (i > lo) * (hi + 1)) % 2 == 0  # one-step episode, then autoreset
        env1_end = i == hi - 1 if lo <= i < hi else short_end
        env1_ignored = i == hi or (not lo <= i < hi and not short_end)
        buf.add(
            action=np.zeros((2, 2), dtype=np.float32),
            reward=np.zeros(2, dtype=np.float32),
            terminated=np.array([i % 2 == 0, env1_end]),
            truncated=np.array([False, False]),
            next_obs=np.full((2, 3), i + 1, dtype=np.float32),
            ignored=np.array([i % 2 == 1, env1_ignored]),
        )
    assert buf.can_sample_sequences(100, within_episode=True)
    scans: list[int] = []
    all_windows = buf._all_windows
    monkeypatch.setattr(
        buf, "_all_windows", lambda *a, **k: scans.append(1) or all_windows(*a, **k)
    )
    # two windows of 99 steps lie inside the long episode: its steps 0..98 and 1..99
    out = buf.sample_sequences(2000, length=99, within_episode=True)
    assert scans  # rejection sampling alone did not fill the batch
    rows, envs = np.divmod(out["indices"], 2)
    assert (envs == 1).all() and set(rows.tolist()) == {lo, lo + 1}
    assert abs((rows == lo).sum() - 1000) < 5 * np.sqrt(500)
    assert out["mask"].all() and not out["is_first"][:, 1:].any()
    np.testing.assert_array_equal(out["terminated"][:, -1], rows == lo + 1)
    # one window of 100 steps
    out = buf.sample_sequences(64, length=100, within_episode=True)
    np.testing.assert_array_equal(out["indices"], np.full(64, 2 * lo + 1))
    # none of 101 steps inside one episode, but windows spanning episodes exist
    assert not buf.can_sample_sequences(101, within_episode=True)
    assert buf.can_sample_sequences(101, within_episode=False)
    with pytest.raises(RuntimeError, match="no window of 101 steps inside one episode"):
        buf.sample_sequences(8, length=101, within_episode=True)


def test_no_window_yet_raises_and_length_is_checked() -> None:
    buf = make(rows=20)
    buf.start(np.zeros((3, 3), dtype=np.float32))
    for within in (True, False):
        assert not buf.can_sample_sequences(1, within)
        with pytest.raises(RuntimeError, match="no window of 1 steps"):
            buf.sample_sequences(4, length=1, within_episode=within)
    with pytest.raises(ValueError, match="sequence length 20"):
        buf.sample_sequences(4, length=20, within_episode=False)
    with pytest.raises(ValueError, match="sequence length 0"):
        buf.can_sample_sequences(0, within_episode=False)
