"""The replay DataModule: collection schedule, autoreset handling, episode statistics."""

from __future__ import annotations

import functools
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

import rlbench_test_envs  # noqa: F401
from rlbench.algos.base import MetricAccumulator, ReplaySpec
from rlbench.buffers import TrajectoryReplayBuffer
from rlbench.data import ReplayDataModule
from rlbench.envs import EnvFactory


class StubModule:
    """A training actor that records the clock and ``first`` flags it is called with."""

    def __init__(self, spec: ReplaySpec) -> None:
        self.spec = spec
        self.metrics = MetricAccumulator()
        self.calls: list[int] = []
        self.firsts: list[np.ndarray] = []
        self.env_step = 0

    def act(self, obs: np.ndarray, *, first: np.ndarray) -> np.ndarray:
        self.calls.append(self.env_step)
        self.firsts.append(first.copy())
        return np.zeros(len(obs), dtype=np.int64)

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def make_dm(
    env_id: str, *, num_envs: int, spec: ReplaySpec, total: int, n_step: int = 1
) -> tuple[ReplayDataModule, StubModule]:
    module = StubModule(spec)
    dm = ReplayDataModule(
        env=EnvFactory(id=env_id, num_envs=num_envs),
        buffer=functools.partial(TrajectoryReplayBuffer, capacity=10_000, n_step=n_step),
        spec=spec,
        actor=module,
        metrics=module.metrics,
        seed=0,
        total_env_steps=total,
    )
    dm.trainer = SimpleNamespace(should_stop=False)  # type: ignore[assignment]
    dm.setup("fit")
    return dm, module


def batches(dm: ReplayDataModule) -> list[dict[str, Any]]:
    return list(iter(dm.train_dataloader()))


def test_no_transition_crosses_an_episode_boundary() -> None:
    spec = ReplaySpec(
        batch_size=256, learning_starts=50, train_every=4, gradient_steps=2, gamma=0.9
    )
    dm, _ = make_dm("rlbench_test_envs:Counter-v0", num_envs=3, spec=spec, total=600, n_step=3)
    for batch in batches(dm):
        obs, nxt = batch["obs"].numpy(), batch["next_obs"].numpy()
        same_episode = obs[:, 0] == nxt[:, 0]
        assert same_episode.all(), "bootstrap observation from another episode"
        steps = nxt[:, 1] - obs[:, 1]
        np.testing.assert_array_equal(steps, batch["steps"].numpy())
        # Counter rewards are t+1, t+2, ...: check the n-step sum by hand
        expected = [
            sum(0.9**j * (t + 1 + j) for j in range(int(k)))
            for t, k in zip(obs[:, 1], steps, strict=True)
        ]
        np.testing.assert_allclose(batch["reward"].numpy(), expected, rtol=1e-5)


def test_schedule_random_warmup_then_phases_of_collecting_and_learning() -> None:
    spec = ReplaySpec(
        batch_size=8, learning_starts=100, train_every=10, gradient_steps=3, gamma=0.99
    )
    dm, module = make_dm("CartPole-v1", num_envs=2, spec=spec, total=300)
    out = batches(dm)
    assert dm.env_steps == 300
    # from env step 100 on: collect 10 env steps (5 vector steps of 2 envs), then 3 gradient
    # steps together (SB3's train_freq 10 / gradient_steps 3): 20 phases, 60 steps
    assert len(out) == 60
    assert min(module.calls) >= 100  # the policy is not consulted during warm-up
    assert [b["env_step"] for b in out] == [110 + 10 * (k // 3) for k in range(60)]
    # the policy is consulted at every vector step, while no gradient step is taken
    assert module.calls[:6] == [100, 102, 104, 106, 108, 110]
    assert dm.trainer.should_stop


@pytest.mark.parametrize(
    ("num_envs", "expected"),
    [
        # 3 envs, train_every 4, gradient_steps 2: the warm-up ends at 102 (whole vector
        # steps), whose 2 env steps past 100 earn 1 gradient step; then each phase is 2
        # vector steps (6 env steps), which earn 3: 1 per 2 env steps, 10 for 20
        (3, [102] + [108] * 3 + [114] * 3 + [120] * 3),
        # 1 env: 4 env steps, then 2 gradient steps
        (1, [104] * 2 + [108] * 2 + [112] * 2 + [116] * 2 + [120] * 2),
    ],
)
def test_phases_with_several_envs_keep_the_replay_ratio(num_envs: int, expected: list[int]) -> None:
    spec = ReplaySpec(batch_size=8, learning_starts=100, train_every=4, gradient_steps=2, gamma=0.9)
    dm, _ = make_dm("CartPole-v1", num_envs=num_envs, spec=spec, total=120)
    assert [b["env_step"] for b in batches(dm)] == expected


@pytest.mark.parametrize("num_envs", [1, 4, 8])
def test_replay_ratio_holds_whatever_the_env_count(num_envs: int) -> None:
    """One gradient step per env step stays one per env step with 8 envs: each vector step
    then owes 8 (``train_every`` counts env steps, not vector steps)."""
    spec = ReplaySpec(batch_size=8, learning_starts=64, train_every=1, gradient_steps=1, gamma=0.9)
    dm, _ = make_dm("CartPole-v1", num_envs=num_envs, spec=spec, total=64 + 256)
    assert len(batches(dm)) == 256


def test_initial_updates_are_owed_when_learning_starts() -> None:
    spec = ReplaySpec(
        batch_size=8,
        learning_starts=50,
        train_every=1,
        gradient_steps=1,
        initial_updates=50,
        gamma=0.9,
    )
    dm, _ = make_dm("CartPole-v1", num_envs=1, spec=spec, total=60)
    out = batches(dm)
    assert len(out) == 50 + 10
    assert all(b["env_step"] == 50 for b in out[:50])  # the burst over the seed data
    assert [b["env_step"] for b in out[50:]] == list(range(51, 61))  # then one per step


def test_first_flags_mark_reset_observations() -> None:
    spec = ReplaySpec(batch_size=8, learning_starts=0, train_every=1, gradient_steps=1, gamma=0.9)
    dm, module = make_dm("rlbench_test_envs:Counter-v0", num_envs=2, spec=spec, total=60)
    obs_seen = []
    original = module.act

    def act(obs: np.ndarray, *, first: np.ndarray) -> np.ndarray:
        obs_seen.append(obs.copy())
        return original(obs, first=first)

    module.act = act  # type: ignore[method-assign]
    batches(dm)
    for obs, first in zip(obs_seen, module.firsts, strict=True):
        # Counter observations are (episode, t): t == 0 exactly on a reset observation
        np.testing.assert_array_equal(first, obs[:, 1] == 0)


def test_episode_statistics_exclude_the_autoreset_step() -> None:
    spec = ReplaySpec(
        batch_size=8, learning_starts=10, train_every=10, gradient_steps=1, gamma=0.99
    )
    dm, module = make_dm("rlbench_test_envs:Counter-v0", num_envs=1, spec=spec, total=200)
    batches(dm)
    lengths = module.metrics.pending("rollout/episode_length")
    returns = module.metrics.pending("rollout/episode_return")
    assert lengths and all(1 <= v <= 5 for v in lengths)
    # return of an episode of length L is 1 + 2 + ... + L
    for length, ret in zip(lengths, returns, strict=True):
        assert ret == pytest.approx(length * (length + 1) / 2)


def test_episode_returns_are_logged_raw_when_the_env_normalizes_rewards() -> None:
    spec = ReplaySpec(
        batch_size=8, learning_starts=10, train_every=10, gradient_steps=1, gamma=0.99
    )
    module = StubModule(spec)
    dm = ReplayDataModule(
        env=EnvFactory(id="rlbench_test_envs:Counter-v0", num_envs=2, normalize_reward=True),
        buffer=functools.partial(TrajectoryReplayBuffer, capacity=10_000, n_step=1),
        spec=spec,
        actor=module,
        metrics=module.metrics,
        seed=0,
        total_env_steps=200,
    )
    dm.trainer = SimpleNamespace(should_stop=False)  # type: ignore[assignment]
    dm.setup("fit")
    out = batches(dm)
    lengths = module.metrics.pending("rollout/episode_length")
    returns = module.metrics.pending("rollout/episode_return")
    assert lengths
    for length, ret in zip(lengths, returns, strict=True):
        assert ret == pytest.approx(length * (length + 1) / 2)  # raw Counter rewards
    # while the buffer learns from the normalized ones
    obs, reward = out[-1]["obs"].numpy(), out[-1]["reward"].numpy()
    assert not np.allclose(reward, obs[:, 1] + 1)


def test_state_dict_round_trip_continues_identically() -> None:
    spec = ReplaySpec(batch_size=16, learning_starts=20, train_every=5, gradient_steps=1, gamma=0.9)
    a, _ = make_dm("CartPole-v1", num_envs=2, spec=spec, total=400)
    it = iter(a.train_dataloader())
    for _ in range(10):
        next(it)
    state = a.state_dict()
    b, _ = make_dm("CartPole-v1", num_envs=2, spec=spec, total=400)
    b.load_state_dict(state)
    rest_a, rest_b = list(it), batches(b)
    assert len(rest_a) == len(rest_b) > 0
    for x, y in zip(rest_a, rest_b, strict=True):
        for key in ("obs", "action", "reward", "next_obs", "discount"):
            np.testing.assert_array_equal(x[key].numpy(), y[key].numpy())
