"""Learning check: PPO with CleanRL's CartPole defaults really learns (slow)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from tests.conftest import train_in_process


@pytest.mark.slow
def test_ppo_cartpole_preset_reaches_475_within_100k_steps(tmp_path: Path) -> None:
    results = train_in_process(
        tmp_path,
        [
            "experiment=ppo_cartpole",
            "seed=0",
            "total_env_steps=100000",
            "trainer.eval_every=5000",
            "trainer.checkpoint_every=0",
            "trainer.progress_bar=false",
            "logger=csv",
            "trainer.stop_at_eval_return=475",
        ],
    )
    with (tmp_path / "metrics.csv").open(newline="") as f:
        evals = [
            (int(r["env_step"]), float(r["eval/return_mean"]))
            for r in csv.DictReader(f)
            if r.get("eval/return_mean")
        ]
    best_step, best = max(evals, key=lambda e: (e[1], -e[0]))
    assert best >= 475, evals
    assert best_step <= 100_000
    assert results["status"] == "completed" and results["eval_return_mean"] >= 475
