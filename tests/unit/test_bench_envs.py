"""The env benchmark harness (``scripts/bench_envs.py``): it times every contender in every
block and pairs the ratios, so the figures it prints mean what its report says."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import gymnasium as gym
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import bench_envs


def test_compare_times_every_contender_in_every_block() -> None:
    closed: list[str] = []

    class Tracked(gym.vector.VectorWrapper):
        def close(self, **kwargs: object) -> None:
            closed.append(self.name)
            super().close(**kwargs)

    def maker(name: str) -> bench_envs.Maker:
        def make() -> gym.vector.VectorEnv:
            env = Tracked(gym.make_vec("CartPole-v1", num_envs=2, vectorization_mode="sync"))
            env.name = name
            return env

        return make

    actions = bench_envs.discrete_actions(2, 2)
    rates = bench_envs.compare(
        {"x": maker("x"), "y": maker("y")}, steps=20, actions=actions, repeats=3, chunk=10
    )
    assert list(rates) == ["x", "y"]
    for rate in rates.values():
        assert len(rate) == 3
        assert all(math.isfinite(r) and r > 0 for r in rate)
    assert sorted(closed) == ["x", "y"]


def test_ratio_stats_pairs_blocks() -> None:
    # paired per block: 2/1, 4/2, 9/1 -> min 2, median 2 (not median(num) / median(den) = 4)
    assert bench_envs.ratio_stats([2.0, 4.0, 9.0], [1.0, 2.0, 1.0]) == "min 2.00  median 2.00"
    with pytest.raises(ValueError):
        bench_envs.ratio_stats([1.0], [1.0, 2.0])


def test_atari_bench_runs_every_contender(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("ale_py")
    bench_envs.bench_atari(2, 20, 1)
    out = capsys.readouterr().out
    for row in ("(a) rlbench", "(a') rlbench", "(b) raw", "(a)/(b)", "(a')/(a)"):
        assert row in out
    try:
        import cv2  # noqa: F401
    except ImportError:
        assert "(c) skipped" in out
    else:
        assert "(a)/(c)" in out and "(b)/(c)" in out
