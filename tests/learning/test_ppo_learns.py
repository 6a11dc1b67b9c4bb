"""Learning check: PPO with rl-baselines3-zoo's tuned CartPole hyperparameters really learns
(slow)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import assert_learns


@pytest.mark.slow
def test_ppo_cartpole_preset_reaches_475_within_100k_steps(tmp_path: Path) -> None:
    assert_learns(
        tmp_path,
        [
            "experiment=ppo_cartpole",
            "seed=0",
            "trainer.eval_every=5000",
            "trainer.checkpoint_every=0",
        ],
        threshold=475,
        within=100_000,
    )
