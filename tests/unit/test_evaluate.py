"""``rlbench.callbacks.evaluation.evaluate``: per-episode returns when the episodes of one
batch have different lengths (NEXT_STEP autoreset keeps stepping finished envs), the
``first`` flags the actor sees, which evaluation actor it asks for, and that an evaluation
leaves the training actor's state alone."""

from __future__ import annotations

import copy
import functools
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlbench.algos.dqn import DQN
from rlbench.algos.ppo import PPO
from rlbench.callbacks.evaluation import evaluate
from rlbench.envs import EVAL_SEED_OFFSET, EnvFactory
from rlbench.networks.mlp import MLP
from rlbench.samplers import EpsilonGreedy, Greedy

ENV_ID = "RlbenchSeededEpisodes-v0"
TIME_LIMIT = 9


class SeededEpisodesEnv(gym.Env[np.ndarray, int]):
    """Episode length and per-step reward set by the reset seed.

    A seeded reset sets ``code = seed % 97``; the episode terminates after
    ``2 + 3 * (code % 4)`` steps (the time limit may truncate it first) and step ``t``
    (1-based) pays ``code / 2 + t + 10 * action``. Unseeded resets (autoreset) keep the
    code. obs = ``[t, code]``, so ``t == 0`` marks a first observation.
    """

    def __init__(self) -> None:
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(2,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.code = 0
        self.t = 0

    @property
    def length(self) -> int:
        return 2 + 3 * (self.code % 4)

    def _obs(self) -> np.ndarray:
        return np.array([self.t, self.code], dtype=np.float32)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        if seed is not None:
            self.code = seed % 97
        self.t = 0
        return self._obs(), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self.t += 1
        reward = self.code / 2 + self.t + 10 * int(action)
        return self._obs(), float(reward), self.t >= self.length, False, {}


if ENV_ID not in gym.registry:
    gym.register(ENV_ID, entry_point=SeededEpisodesEnv, max_episode_steps=TIME_LIMIT)

SEED = 7
EPISODES = 4
# Env j is reset with seed 7 + 1_000_000 + j; 1_000_007 = 97 * 10309 + 34: codes 34 ... 37.
#   j=0: code 34, length 2 + 3*2 = 8:                   sum_{t=1..8} (17.0 + t) = 136 + 36
#   j=1: code 35, length 2 + 3*3 = 11, truncated at 9:  sum_{t=1..9} (17.5 + t) = 157.5 + 45
#   j=2: code 36, length 2:                             sum_{t=1..2} (18.0 + t) = 36 + 3
#   j=3: code 37, length 2 + 3*1 = 5:                   sum_{t=1..5} (18.5 + t) = 92.5 + 15
EXPECTED_RETURNS = [172.0, 202.5, 39.0, 107.5]
EXPECTED_LENGTHS = [8, 9, 2, 5]
EXPECTED_CODES = [34, 35, 36, 37]


class RecordingActor:
    def __init__(self, num_envs: int) -> None:
        self.num_envs = num_envs
        self.env_step = 0
        self.calls: list[tuple[np.ndarray, np.ndarray]] = []

    def act(self, obs: np.ndarray, *, first: np.ndarray) -> np.ndarray:
        assert obs.shape == (self.num_envs, 2) and first.shape == (self.num_envs,)
        self.calls.append((obs.copy(), np.array(first, dtype=np.bool_)))
        return np.zeros(self.num_envs, dtype=np.int64)

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class StubModule:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.actors: list[RecordingActor] = []

    def make_actor(self, **kwargs: Any) -> RecordingActor:
        self.requests.append(kwargs)
        self.actors.append(RecordingActor(kwargs["num_envs"]))
        return self.actors[-1]


@pytest.fixture(params=["serial", "sync"])
def factory(request: pytest.FixtureRequest) -> EnvFactory:
    return EnvFactory(id=ENV_ID, vectorization=request.param)


def test_expected_returns_by_hand() -> None:
    """The table above, from the env's rules in a plain loop."""
    for j, (ret, length) in enumerate(zip(EXPECTED_RETURNS, EXPECTED_LENGTHS, strict=True)):
        code = (SEED + EVAL_SEED_OFFSET + j) % 97
        assert code == EXPECTED_CODES[j]
        steps = min(2 + 3 * (code % 4), TIME_LIMIT)
        assert steps == length
        assert sum(code / 2 + t for t in range(1, steps + 1)) == ret


def test_returns_of_episodes_of_different_lengths(factory: EnvFactory) -> None:
    module = StubModule()
    returns = evaluate(module, factory, episodes=EPISODES, seed=SEED, deterministic=True)
    assert returns.shape == (EPISODES,)
    np.testing.assert_allclose(returns, EXPECTED_RETURNS, rtol=0, atol=1e-12)
    # the evaluation stops with the last episode: one act per step of the longest
    (actor,) = module.actors
    assert len(actor.calls) == max(EXPECTED_LENGTHS)


def test_first_is_true_exactly_on_each_first_observation(factory: EnvFactory) -> None:
    module = StubModule()
    evaluate(module, factory, episodes=EPISODES, seed=SEED)
    (actor,) = module.actors
    obs, first = actor.calls[0]
    assert first.all()
    np.testing.assert_array_equal(obs[:, 1], EXPECTED_CODES)  # the reset seeds reached the envs
    for obs, first in actor.calls:
        np.testing.assert_array_equal(first, obs[:, 0] == 0)
    # the check saw autoreset first observations too (envs 2 and 3 restart before the end)
    later_firsts = [i for obs, first in actor.calls[1:] for i in np.flatnonzero(first)]
    assert 2 in later_firsts and 3 in later_firsts


@pytest.mark.parametrize("deterministic", [True, False])
def test_the_evaluation_actor_requested(factory: EnvFactory, deterministic: bool) -> None:
    module = StubModule()
    evaluate(module, factory, episodes=EPISODES, seed=SEED, deterministic=deterministic)
    assert module.requests == [
        {
            "num_envs": EPISODES,
            "mode": "eval",
            "deterministic": deterministic,
            "seed": SEED + EVAL_SEED_OFFSET,
        }
    ]


# ---------------------------------------------------------------- real modules
def make_dqn(*, noisy: bool = False) -> DQN:
    torch.manual_seed(0)
    net = (
        functools.partial(MLP, hidden=[8], noisy=True)
        if noisy
        else functools.partial(MLP, hidden=[8])
    )
    dqn = DQN(
        network=net,
        optimizer=functools.partial(torch.optim.Adam),
        sampler=Greedy() if noisy else EpsilonGreedy(start=1.0, end=0.3, decay_steps=10),
        seed=3,
    )
    dqn.build_for(*EnvFactory(id=ENV_ID).spaces())
    return dqn


def make_ppo() -> PPO:
    torch.manual_seed(0)
    ppo = PPO(
        network=functools.partial(MLP, hidden=[8]),
        optimizer=functools.partial(torch.optim.Adam),
        seed=3,
    )
    ppo.build_for(*EnvFactory(id=ENV_ID).spaces())
    return ppo


@pytest.mark.parametrize("deterministic", [True, False])
def test_dqn_evaluation_actor_is_greedy_only_when_deterministic(deterministic: bool) -> None:
    dqn = make_dqn()
    made: list[tuple[Any, dict[str, Any]]] = []
    make_actor = dqn.make_actor

    def spy(**kwargs: Any) -> Any:
        actor = make_actor(**kwargs)
        made.append((actor, copy.deepcopy(actor.state_dict())))
        return actor

    dqn.make_actor = spy  # type: ignore[method-assign]
    evaluate(dqn, EnvFactory(id=ENV_ID), episodes=EPISODES, seed=SEED, deterministic=deterministic)
    ((actor, state),) = made
    assert actor.explore is not deterministic
    # its generator comes from the evaluation seed (DQN's eval stream: [seed, 5])
    expected = np.random.default_rng([SEED + EVAL_SEED_OFFSET, 5]).bit_generator.state
    assert state["rng"] == expected


def obs_batch(n: int = 2) -> np.ndarray:
    return np.stack([np.arange(n, dtype=np.float32), np.full(n, 8.0, np.float32)], axis=1)


def play(module: Any, actor: Any, steps: int = 20) -> list[np.ndarray]:
    out = []
    first = np.ones(2, dtype=np.bool_)
    for i in range(steps):
        actor.env_step = i
        out.append(np.asarray(actor.act(obs_batch() + i, first=first)).copy())
        first = np.zeros(2, dtype=np.bool_)
    return out


@pytest.mark.parametrize("algo", ["dqn", "ppo"])
@pytest.mark.parametrize("deterministic", [True, False])
def test_evaluation_leaves_the_training_actor_alone(algo: str, deterministic: bool) -> None:
    make = make_dqn if algo == "dqn" else make_ppo
    module, twin_module = make(), make()  # the same weights: twins
    train = module.make_actor(num_envs=2, mode="train")
    twin = twin_module.make_actor(num_envs=2, mode="train")
    play(module, train, steps=5)  # move its RNG away from the start
    play(twin_module, twin, steps=5)
    state = copy.deepcopy(train.state_dict())
    assert state == twin.state_dict()

    evaluate(
        module, EnvFactory(id=ENV_ID), episodes=EPISODES, seed=SEED, deterministic=deterministic
    )

    assert train.state_dict() == state
    # and it acts on exactly as a twin that never saw the evaluation
    got, expected = play(module, train), play(twin_module, twin)
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a, b)
    assert len({tuple(a) for a in got}) > 1  # the actions are random: the check has teeth


def noisy_training_q(dqn: DQN, actor: Any, steps: int = 3) -> list[np.ndarray]:
    """The Q-values the training actor acts on (exploring: fresh noise per act)."""
    seen: list[np.ndarray] = []
    sampler = dqn.sampler
    original = sampler.explore

    def record(scores: Any, *, step: int, rng: np.random.Generator) -> np.ndarray:
        seen.append(np.array(scores.values()))
        return original(scores, step=step, rng=rng)

    sampler.explore = record  # type: ignore[method-assign]
    try:
        for i in range(steps):
            actor.act(obs_batch() + i, first=np.zeros(2, dtype=np.bool_))
    finally:
        del sampler.explore
    return seen


def test_deterministic_evaluation_leaves_noisy_training_exploration_alone() -> None:
    dqn, twin_dqn = make_dqn(noisy=True), make_dqn(noisy=True)
    train = dqn.make_actor(num_envs=2, mode="train")
    twin = twin_dqn.make_actor(num_envs=2, mode="train")
    noisy_training_q(dqn, train)
    noisy_training_q(twin_dqn, twin)
    evaluate(dqn, EnvFactory(id=ENV_ID), episodes=EPISODES, seed=SEED, deterministic=True)
    got, expected = noisy_training_q(dqn, train), noisy_training_q(twin_dqn, twin)
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(got[0], got[1])  # fresh noise per act: the check has teeth


def test_sampled_evaluation_leaves_noisy_training_exploration_alone() -> None:
    dqn, twin_dqn = make_dqn(noisy=True), make_dqn(noisy=True)
    train = dqn.make_actor(num_envs=2, mode="train")
    twin = twin_dqn.make_actor(num_envs=2, mode="train")
    noisy_training_q(dqn, train)
    noisy_training_q(twin_dqn, twin)
    evaluate(dqn, EnvFactory(id=ENV_ID), episodes=EPISODES, seed=SEED, deterministic=False)
    for a, b in zip(noisy_training_q(dqn, train), noisy_training_q(twin_dqn, twin), strict=True):
        np.testing.assert_array_equal(a, b)


def test_sampled_noisy_evaluation_is_a_function_of_weights_and_seed() -> None:
    dqn = make_dqn(noisy=True)
    seen: list[np.ndarray] = []
    sampler = dqn.sampler
    original = sampler.explore

    def record(scores: Any, *, step: int, rng: np.random.Generator) -> np.ndarray:
        seen.append(np.array(scores.values()))
        return original(scores, step=step, rng=rng)

    sampler.explore = record  # type: ignore[method-assign]
    runs = []
    for _ in range(2):
        seen.clear()
        evaluate(dqn, EnvFactory(id=ENV_ID), episodes=EPISODES, seed=SEED, deterministic=False)
        runs.append(list(seen))
    assert len(runs[0]) == len(runs[1]) > 0
    for a, b in zip(*runs, strict=True):
        np.testing.assert_array_equal(a, b)
