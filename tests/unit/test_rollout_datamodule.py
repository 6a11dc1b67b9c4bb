"""The rollout DataModule: on-policy freshness, autoreset rows, bootstrapping, episode groups,
minibatch epochs and checkpointed stream state."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlbench.algos.base import MetricAccumulator
from rlbench.data.rollout import RolloutDataModule, RolloutSpec
from rlbench.envs import EnvFactory
from rlbench.errors import ConfigError


class ChainEnv(gym.Env[np.ndarray, int]):
    """obs = [episode, t]; reward 1 a step; odd episodes terminate after 3 steps, even ones
    run into the registered time limit of 4 steps (truncation)."""

    def __init__(self) -> None:
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(2,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.episode = -1
        self.t = 0

    def _obs(self) -> np.ndarray:
        return np.array([self.episode, self.t], dtype=np.float32)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.episode += 1
        self.t = 0
        return self._obs(), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self.t += 1
        return self._obs(), 1.0, self.episode % 2 == 1 and self.t >= 3, False, {}


if "PGChain-v0" not in gym.registry:
    gym.register("PGChain-v0", entry_point=ChainEnv, max_episode_steps=4)


class StubModule:
    """Deterministic policy; ``version`` stands for the gradient steps taken so far."""

    def __init__(self, spec: RolloutSpec) -> None:
        self.rollout_spec = spec
        self.metrics = MetricAccumulator()
        self.version = 0
        self.acted_at: list[int] = []
        self.grids: list[dict[str, torch.Tensor]] = []

    def value(self, obs: np.ndarray) -> np.ndarray:
        return (obs[:, 1] + 100.0).astype(np.float32)  # Chain: 100 + t

    # the training actor: the stub is its own actor and learner
    env_step = 0

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def act(self, obs: np.ndarray, *, first: np.ndarray) -> np.ndarray:
        return self.act_with_log_prob(obs, first=first)[0]

    def act_with_log_prob(
        self, obs: np.ndarray, *, first: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        self.acted_at.append(self.version)
        actions = (obs[:, -1] > 0).astype(np.int64)  # CartPole: push towards the lean
        return actions, np.full(len(obs), -0.5, np.float32)

    def rollout_values(self, obs: np.ndarray) -> np.ndarray:
        return self.value(obs)

    def prepare_rollout(self, rollout: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        self.grids.append({k: v.clone() for k, v in rollout.items()})
        return rollout

    def finish_rollout(self, rollout: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return rollout


def make_dm(
    env_id: str, *, num_envs: int, spec: RolloutSpec, total: int, vectorization: str = "auto"
) -> tuple[RolloutDataModule, StubModule]:
    module = StubModule(spec)
    dm = RolloutDataModule(
        env=EnvFactory(id=env_id, num_envs=num_envs, vectorization=vectorization),
        spec=spec,
        actor=module,
        learner=module,
        metrics=module.metrics,
        seed=0,
        total_env_steps=total,
    )
    dm.trainer = SimpleNamespace(should_stop=False)  # type: ignore[assignment]
    dm.setup("fit")
    return dm, module


def train_on(dm: RolloutDataModule, module: StubModule) -> list[dict[str, Any]]:
    """Consume the stream like ``training_step``: one gradient step per batch."""
    out = []
    for batch in iter(dm.train_dataloader()):
        out.append(batch)
        module.version += 1
    return out


def pairs(obs: torch.Tensor) -> list[tuple[int, int]]:
    return [(int(e), int(t)) for e, t in obs.tolist()]


def test_steps_mode_drops_autoreset_rows_and_bootstraps_truncation_only() -> None:
    spec = RolloutSpec(mode="steps", num_steps=20, gamma=0.5, gae_lambda=0.0)
    dm, module = make_dm("PGChain-v0", num_envs=1, spec=spec, total=20)
    (batch,) = train_on(dm, module)
    assert dm.env_steps == 20 and batch["env_step"] == 20 and batch["progress"] == 0.0
    # the envs saw 0..3 (ep 0, truncated), final obs (0,4) [autoreset row], 0..2 (ep 1,
    # terminated), final obs (1,3) [autoreset row], ...: autoreset rows are not transitions
    grid_obs = pairs(module.grids[0]["obs"][:, 0])
    finals = {grid_obs[i] for i in range(len(grid_obs) - 1) if grid_obs[i + 1][1] == 0}
    assert finals and pairs(batch["obs"]) == [p for p in grid_obs if p not in finals]
    for (episode, t), ret in zip(pairs(batch["obs"]), batch["return"].tolist(), strict=True):
        if episode % 2 == 1 and t == 2:
            assert ret == 1.0  # terminated: no bootstrap
        else:  # continuing, or truncated at t=3: bootstrap from V(final obs) = 100 + t + 1
            assert ret == pytest.approx(1.0 + 0.5 * (100 + t + 1))
    torch.testing.assert_close(batch["advantage"], batch["return"] - batch["value"])
    assert set(batch) >= {"obs", "action", "log_prob", "value", "advantage", "return"}
    assert not set(batch) & {"valid", "reward", "dones", "next_value"}


def test_episode_statistics_span_rollouts_and_skip_autoreset_rows() -> None:
    spec = RolloutSpec(mode="steps", num_steps=7)
    dm, module = make_dm("PGChain-v0", num_envs=2, spec=spec, total=70)
    train_on(dm, module)
    lengths = module.metrics.pending("rollout/episode_length")
    # episodes alternate 4 steps (truncated) and 3 steps (terminated) in each env, each
    # followed by one autoreset row; rollouts of 7 rows cut through episodes
    assert lengths[:6] == [4.0, 4.0, 3.0, 3.0, 4.0, 4.0]
    assert module.metrics.pending("rollout/episode_return") == lengths  # reward 1 a step
    # 35 rows per env hold 8 episodes (4 + 1 + 3 + 1 rows per pair, the last one ending at
    # row 35)
    assert dm.episodes == len(lengths) == 16


def test_each_rollout_is_collected_after_all_updates_of_the_previous_one() -> None:
    spec = RolloutSpec(mode="steps", num_steps=16, epochs=3, minibatches=4)
    dm, module = make_dm("CartPole-v1", num_envs=2, spec=spec, total=96)
    batches = train_on(dm, module)
    assert dm.env_steps == 96 and len(batches) == 3 * 12
    # rollout k was acted with the weights after k * epochs * minibatches gradient steps
    assert [b["last"] for b in batches] == [i % 12 == 11 for i in range(36)]
    assert module.acted_at == [k * 12 for k in range(3) for _ in range(16)]
    assert dm.trainer.should_stop
    for k in range(3):
        grid = module.grids[k]
        full = sorted(map(tuple, grid["obs"].flatten(0, 1)[grid["valid"].reshape(-1)].tolist()))
        for epoch in range(3):
            parts = batches[k * 12 + epoch * 4 : k * 12 + epoch * 4 + 4]
            assert {b["env_step"] for b in parts} == {32 * (k + 1)}
            sizes = [len(b["obs"]) for b in parts]
            assert max(sizes) - min(sizes) <= 1
            rows = sorted(tuple(r) for b in parts for r in b["obs"].tolist())
            assert rows == full  # every epoch is a partition of the rollout
        first, second = (
            torch.cat([b["obs"] for b in batches[k * 12 + e * 4 :][:4]]) for e in (0, 1)
        )
        assert not torch.equal(first, second)  # reshuffled between epochs


@pytest.mark.parametrize("group_size", [1, 4])
def test_episode_mode_yields_whole_episodes_grouped_by_reset_seed(group_size: int) -> None:
    spec = RolloutSpec(mode="episodes", episodes=8, group_size=group_size, gamma=0.9)
    dm, module = make_dm("CartPole-v1", num_envs=4, spec=spec, total=1)
    (batch,) = train_on(dm, module)
    grid = module.grids[0]
    valid, dones = grid["valid"], grid["dones"]
    assert valid.shape[1] == 8
    lengths = valid.sum(0)
    for j in range(8):  # each column is one whole episode from t = 0
        n = int(lengths[j])
        assert valid[:n, j].all() and not valid[n:, j].any()
        assert dones[n - 1, j] == 1 and dones[: n - 1, j].sum() == 0
    assert dm.env_steps == int(lengths.sum()) == len(batch["obs"])
    starts = grid["obs"][0]
    for j in range(8):
        for i in range(8):
            same = torch.equal(starts[i], starts[j])
            assert same == (i // group_size == j // group_size), (i, j)
    episode_lengths = module.metrics.pending("rollout/episode_length")
    assert sorted(episode_lengths) == sorted(float(n) for n in lengths)
    expected = torch.zeros_like(grid["reward"])  # Monte-Carlo returns-to-go
    for j in range(8):
        g = 0.0
        for t in range(int(lengths[j]) - 1, -1, -1):
            g = float(grid["reward"][t, j]) + 0.9 * g
            expected[t, j] = g
    torch.testing.assert_close(batch["return"], expected[valid])


def test_episode_mode_bootstraps_truncated_episodes_only() -> None:
    spec = RolloutSpec(mode="episodes", episodes=4, gamma=0.5)
    dm, module = make_dm("PGChain-v0", num_envs=2, spec=spec, total=1)
    (batch,) = train_on(dm, module)
    last = {}
    for (episode, t), ret in zip(pairs(batch["obs"]), batch["return"].tolist(), strict=True):
        last[episode] = (t, ret)
    assert sorted(last) == [1, 2]  # 2 waves, each env resets again: episodes 1 and 2
    assert last[2] == (3, pytest.approx(1.0 + 0.5 * 104))  # truncated: V(final obs)
    assert last[1] == (2, 1.0)  # terminated


def test_grouped_episodes_avoid_the_native_vector_env() -> None:
    spec = RolloutSpec(mode="episodes", episodes=16, group_size=4)
    dm, _ = make_dm("CartPole-v1", num_envs=16, spec=spec, total=1)
    assert dm.backend == "serial"
    with pytest.raises(ConfigError, match="vectorization=native cannot reset"):
        make_dm("CartPole-v1", num_envs=16, spec=spec, total=1, vectorization="native")
    ungrouped = RolloutSpec(mode="episodes", episodes=16)
    dm, module = make_dm("CartPole-v1", num_envs=16, spec=ungrouped, total=1)
    assert dm.backend == "native"
    train_on(dm, module)
    assert len(set(map(tuple, module.grids[0]["obs"][0].tolist()))) == 16


@pytest.mark.parametrize(
    ("spec", "num_envs", "message"),
    [
        (RolloutSpec(mode="steps", num_steps=0), 1, "algo.num_steps=0: must be > 0"),
        (RolloutSpec(mode="episodes", episodes=6, group_size=4), 2, "multiple of the group"),
        (RolloutSpec(mode="episodes", episodes=6), 4, "multiple of env.num_envs=4"),
        (RolloutSpec(mode="steps", num_steps=4, epochs=0), 1, "algo.epochs=0"),
        (RolloutSpec(mode="bogus"), 1, "allowed steps, episodes"),
    ],
)
def test_bad_specs_are_one_line_config_errors(
    spec: RolloutSpec, num_envs: int, message: str
) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        make_dm("CartPole-v1", num_envs=num_envs, spec=spec, total=10)


@pytest.mark.parametrize(
    "spec",
    [
        RolloutSpec(mode="steps", num_steps=32, epochs=2, minibatches=4),
        RolloutSpec(mode="episodes", episodes=4, group_size=2, epochs=2, minibatches=3),
    ],
)
def test_state_dict_round_trip_mid_rollout_continues_identically(spec: RolloutSpec) -> None:
    a, _ = make_dm("CartPole-v1", num_envs=2, spec=spec, total=3000)
    it = iter(a.train_dataloader())
    for _ in range(11):  # stop in the middle of a rollout's minibatches
        next(it)
    assert a.batch is not None and a.minibatch > 0
    state = a.state_dict()
    b, _ = make_dm("CartPole-v1", num_envs=2, spec=spec, total=3000)
    b.load_state_dict(state)
    assert b.loaded_state
    rest_a = list(it)
    rest_b = list(iter(b.train_dataloader()))
    assert len(rest_a) == len(rest_b) > 0
    for x, y in zip(rest_a, rest_b, strict=True):
        assert x.keys() == y.keys()
        for key, value in x.items():
            if isinstance(value, torch.Tensor):
                torch.testing.assert_close(value, y[key], rtol=0, atol=0)
            else:
                assert value == y[key]
