"""Action samplers and schedules."""

from __future__ import annotations

import numpy as np
import pytest

from rlbench.errors import ConfigError
from rlbench.samplers import (
    Boltzmann,
    EpsilonGreedy,
    Greedy,
    LazyScores,
    LinearSchedule,
    decay_duration,
)


def test_linear_schedule_hand_values() -> None:
    s = LinearSchedule(start=1.0, end=0.1, duration=100)
    assert s(0) == 1.0
    assert s(50) == pytest.approx(0.55)
    assert s(100) == pytest.approx(0.1)
    assert s(10_000) == pytest.approx(0.1)
    assert LinearSchedule(start=1.0, end=0.2, duration=0)(0) == 0.2


def test_greedy_picks_argmax_per_row() -> None:
    q = np.array([[0.0, 2.0, 1.0], [5.0, -1.0, 0.0]])
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(Greedy()(q, step=0, rng=rng), [1, 0])


def test_epsilon_greedy_follows_schedule() -> None:
    sampler = EpsilonGreedy(start=1.0, end=0.0, decay_steps=1000)
    q = np.tile([[0.0, 0.0, 0.0, 1.0]], (20_000, 1))
    rng = np.random.default_rng(0)
    # epsilon 0.5 at step 500: greedy action 3 with prob 0.5 + 0.5/4
    frac = (sampler(q, step=500, rng=rng) == 3).mean()
    assert frac == pytest.approx(0.625, abs=0.02)
    assert (sampler(q, step=1000, rng=rng) == 3).all()
    assert sampler.stats(500)["epsilon"] == pytest.approx(0.5)


def test_epsilon_greedy_skips_forward_when_all_explore_and_is_deterministic() -> None:
    calls = []

    def forward(obs: np.ndarray) -> np.ndarray:
        calls.append(1)
        return np.array([[0.0, 1.0]])

    sampler = EpsilonGreedy(start=1.0, end=1.0, decay_steps=1)
    a = sampler(LazyScores(forward, np.zeros((1, 4)), 2), step=0, rng=np.random.default_rng(7))
    assert calls == []
    # the same draws are made with eager scores: results do not depend on the skip
    b = sampler(np.array([[0.0, 1.0]]), step=0, rng=np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)


def test_epsilon_greedy_one_env_path_equals_batched_path() -> None:
    """The python-scalar path for one env picks what the batched path picks for that env."""
    sampler = EpsilonGreedy(start=1.0, end=0.0, decay_steps=100)
    q = np.array([[0.0, 0.5, 2.0]])
    for seed in range(200):
        step = seed % 120  # epsilon from 1 down to 0
        one = sampler(q, step=step, rng=np.random.default_rng(seed))
        u = np.random.default_rng(seed).random(2)
        expect = int(u[1] * 3) if u[0] < sampler.epsilon(step) else 2
        assert one.dtype == np.int64 and one.shape == (1,)
        assert int(one[0]) == expect


def test_explore_false_is_greedy_for_every_sampler() -> None:
    q = np.array([[0.0, 3.0], [2.0, 1.0]])
    for sampler in (EpsilonGreedy(start=1.0, end=1.0, decay_steps=1), Boltzmann(temperature=5.0)):
        out = sampler(q, step=0, rng=np.random.default_rng(0), explore=False)
        np.testing.assert_array_equal(out, [1, 0])


def test_boltzmann_matches_softmax_frequencies() -> None:
    q = np.tile([[0.0, np.log(3.0)]], (40_000, 1))  # softmax = [0.25, 0.75]
    out = Boltzmann(temperature=1.0)(q, step=0, rng=np.random.default_rng(1))
    assert (out == 1).mean() == pytest.approx(0.75, abs=0.01)
    hot = Boltzmann(temperature=1e6)(q, step=0, rng=np.random.default_rng(1))
    assert (hot == 1).mean() == pytest.approx(0.5, abs=0.02)


@pytest.mark.parametrize(
    "make",
    [
        lambda: EpsilonGreedy(start=1.5),
        lambda: EpsilonGreedy(decay_steps=-1),
        lambda: Boltzmann(temperature=0.0),
    ],
)
def test_bad_parameters_raise_config_error(make) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError):
        make()


def test_decay_fraction_sets_the_schedule_length_from_the_run_length() -> None:
    """``decay_fraction`` wins over ``decay_steps``: 0.25 of 2,000 env steps is 500."""
    sampler = EpsilonGreedy(
        start=1.0, end=0.1, decay_steps=50, decay_fraction=0.25, total_env_steps=2000
    )
    assert sampler.epsilon.duration == 500
    assert sampler.stats(0)["epsilon"] == 1.0
    assert sampler.stats(250)["epsilon"] == pytest.approx(0.55)  # 1 - 250/500 * 0.9
    assert sampler.stats(500)["epsilon"] == pytest.approx(0.1)
    assert sampler.stats(1999)["epsilon"] == pytest.approx(0.1)
    # the same fraction of a longer run decays over proportionally more steps
    longer = EpsilonGreedy(start=1.0, end=0.1, decay_fraction=0.25, total_env_steps=10_000)
    assert longer.stats(1250)["epsilon"] == pytest.approx(0.55)
    # rounding to whole env steps: 0.12 x 1,001 = 120.12 -> 120
    assert decay_duration(decay_steps=7, decay_fraction=0.12, total_env_steps=1001) == 120


def test_decay_fraction_null_keeps_decay_steps() -> None:
    sampler = EpsilonGreedy(start=1.0, end=0.0, decay_steps=100, total_env_steps=10_000)
    assert sampler.epsilon.duration == 100
    assert sampler.stats(50)["epsilon"] == pytest.approx(0.5)
    assert decay_duration(decay_steps=100, decay_fraction=None, total_env_steps=None) == 100
    # zero: epsilon is at its end from the first step
    zero = EpsilonGreedy(start=1.0, end=0.2, decay_fraction=0.0, total_env_steps=1000)
    assert zero.stats(0)["epsilon"] == pytest.approx(0.2)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"decay_fraction": 1.5, "total_env_steps": 100}, "sampler.decay_fraction=1.5"),
        ({"decay_fraction": -0.1, "total_env_steps": 100}, "sampler.decay_fraction=-0.1"),
        ({"decay_fraction": 0.1}, "needs total_env_steps > 0"),
        ({"decay_steps": -1}, "sampler.decay_steps=-1"),
    ],
)
def test_bad_decay_settings_are_one_line_errors(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")) as e:
        EpsilonGreedy(**kwargs)
    assert "\n" not in str(e.value)


def test_cli_passes_the_run_length_to_the_sampler() -> None:
    """``rlbench sampler.decay_fraction=0.2 total_env_steps=3000``: epsilon ends at 600."""
    from rlbench.algos.dqn import DQN
    from rlbench.cli import algo_parts
    from tests.conftest import compose_cfg

    cfg = compose_cfg(["sampler.decay_fraction=0.2", "total_env_steps=3000"])
    assert algo_parts(DQN, cfg)["sampler"].epsilon.duration == 600
    cfg = compose_cfg(["total_env_steps=3000"])  # the default: decay_steps
    assert algo_parts(DQN, cfg)["sampler"].epsilon.duration == cfg.sampler.decay_steps
    cfg = compose_cfg(["sampler=boltzmann"])  # a sampler without the parameter gets none
    assert isinstance(algo_parts(DQN, cfg)["sampler"], Boltzmann)
