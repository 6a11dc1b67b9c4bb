"""``scripts/bench_sac_learning.py`` without training: the rlbench side composes through Hydra
with the settings it claims, SB3 and rlbench share the same maths, and reruns skip finished
runs (the benchmark itself is `make bench`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import bench_sac  # noqa: E402
import bench_sac_learning  # noqa: E402


def args(tmp_path: Path) -> argparse.Namespace:
    return argparse.Namespace(
        steps=100_000, learning_starts=5_000, eval_every=10_000, eval_episodes=10, out=tmp_path
    )


def test_rlbench_side_composes_with_sb3s_maths(tmp_path: Path) -> None:
    from rlbench.cli import CONF_DIR

    command = bench_sac_learning.rlbench_command(args(tmp_path), 3, tmp_path / "run")
    assert Path(command[0]).name == "rlbench"
    overrides = [o for o in command[1:] if not o.startswith("hydra.")]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    assert cfg.env.id == bench_sac.ENV_ID == "HalfCheetah-v5"
    assert cfg.seed == 3 and cfg.total_env_steps == 100_000
    assert cfg.trainer.eval_every == 10_000 and cfg.trainer.eval_episodes == 10
    assert cfg.trainer.eval_deterministic is True
    algo = cfg.algo
    # SB3 has one learning rate and no policy delay: rlbench runs the same
    assert algo.actor_optimizer.lr == algo.critic_optimizer.lr == algo.alpha_optimizer.lr
    assert algo.actor_optimizer.lr == bench_sac.LR
    assert algo.policy_frequency == 1
    assert (algo.batch_size, algo.learning_starts, algo.tau, algo.gamma) == (
        bench_sac.BATCH,
        5_000,
        bench_sac.TAU,
        bench_sac.GAMMA,
    )
    assert list(cfg.network.hidden) == list(bench_sac.HIDDEN)


def test_finished_runs_are_skipped(tmp_path: Path) -> None:
    run_dir = tmp_path / "sb3" / "seed0"
    run_dir.mkdir(parents=True)
    assert not bench_sac_learning.completed(run_dir)
    (run_dir / "results.json").write_text(json.dumps({"status": "interrupted"}))
    assert not bench_sac_learning.completed(run_dir)
    (run_dir / "results.json").write_text(json.dumps({"status": "completed"}))
    assert bench_sac_learning.completed(run_dir)
    message = bench_sac_learning.run_one(args(tmp_path), "sb3", 0)
    assert "skipped" in message
