"""TD-MPC composed through Hydra with ``trainer=debug``, a tiny TOLD and planner: DeepMind
Control cartpole-swingup (one force) and HalfCheetah (6 torques), episodes cut to 100 steps:
the files a run writes, the metrics it logs (finite losses, the planner's schedules), the
update schedule, prioritized replay over sequences and the planner's state in the
checkpoint."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.conftest import train_in_process

SMALL = [
    "algo=tdmpc",
    "trainer=debug",
    "logger=csv",
    "algo.batch_size=32",
    "algo.learning_starts=200",
    "algo.initial_updates=50",
    "algo.enc_dim=32",
    "algo.mlp_dim=32",
    "algo.latent_dim=16",
    "algo.iterations=2",
    "algo.num_samples=64",
    "algo.num_elites=8",
    "algo.std_schedule_steps=400",
    "algo.horizon_schedule_steps=400",
    "algo.train_every=2",
    "buffer.capacity=10000",
    "total_env_steps=600",
    "trainer.eval_every=300",
    "trainer.checkpoint_every=300",
]
# env -> (action dim, extra overrides, module to skip without)
ENVS: dict[str, tuple[int, list[str], list[str]]] = {
    "dmc": (
        1,
        ["env.task=cartpole-swingup", "env.max_episode_steps=100"],
        ["dm_control", "shimmy"],
    ),
    "halfcheetah": (6, ["env.max_episode_steps=100"], ["mujoco"]),
}
LOSSES = {
    "train/consistency_loss",
    "train/reward_loss",
    "train/value_loss",
    "train/model_loss",
    "train/pi_loss",
}
METRICS = LOSSES | {"train/q_mean", "train/plan_std", "train/plan_horizon", "eval/return_mean"}


def read_metrics(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "metrics.csv").open(newline="") as f:
        return [
            {k: v for k, v in r.items() if not k.startswith("perf/")} for r in csv.DictReader(f)
        ]


@pytest.fixture(scope="module", params=list(ENVS))
def run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    env = request.param
    for name in ENVS[env][2]:
        pytest.importorskip(name)
    d = tmp_path_factory.mktemp(f"tdmpc_{env}")
    return env, d, train_in_process(d, [*SMALL, f"env={env}", *ENVS[env][1]])


def test_debug_run_writes_files_and_finite_metrics(run: Any) -> None:
    _, run_dir, results = run
    assert results["status"] == "completed" and results["env_steps"] == 600, results
    assert math.isfinite(float(results["eval_return_mean"]))
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert (run_dir / "metrics.csv").is_file()
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    rows = read_metrics(run_dir)
    assert set(rows[0]) >= METRICS, METRICS - set(rows[0])
    for name in METRICS:
        values = [float(r[name]) for r in rows if r.get(name)]
        assert values and all(math.isfinite(v) for v in values), (name, values)
    assert [int(r["env_step"]) for r in rows if r["eval/return_mean"]] == [300, 600]
    horizons = [float(r["train/plan_horizon"]) for r in rows if r.get("train/plan_horizon")]
    assert horizons == sorted(horizons) and horizons[-1] == 5.0  # reached by step 400


def test_schedule_per_and_planner_state_in_the_checkpoint(run: Any) -> None:
    env, run_dir, _ = run
    dim = ENVS[env][0]
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    # random actions for 200 env steps, a burst of 50 updates, then one per 2 env steps
    updates = ckpt["rlbench_module"]["metric_totals"]["train/model_loss"]
    assert updates == 50 + (600 - 200) // 2
    state = ckpt["state_dict"]
    assert int(state["updates"]) == updates and int(state["clock"]) > 200
    assert state["model.qs.weights.0"].shape == (2, 16 + dim, 32)  # two Q heads
    assert "model.target_encoder.0.weight" in state
    data = ckpt["ReplayDataModule"]
    priorities = data["buffer"]["priorities"].numpy()
    assert (priorities > 0).any() and len(set(priorities[priorities > 0].round(6))) > 1
    actor = data["actor"]
    assert actor["prev_mean"].shape == (1, 5, dim)  # the scheduled horizon reached 5
