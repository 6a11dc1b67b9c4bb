"""``logger=csv``, ``logger=tensorboard`` and ``logger=wandb`` (offline) on tiny debug runs.

Every logger receives the same metrics keyed on env steps; ``metrics.csv`` is always written.
"""

from __future__ import annotations

import csv
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import DEBUG, run_cli, train_in_process

STEPS = "total_env_steps=600"


def eval_rows(run_dir: Path) -> dict[int, float]:
    """``{env_step: eval/return_mean}`` from ``metrics.csv``."""
    with (run_dir / "metrics.csv").open(newline="") as handle:
        return {
            int(row["env_step"]): float(row["eval/return_mean"])
            for row in csv.DictReader(handle)
            if row.get("eval/return_mean")
        }


def test_csv_logger_writes_only_metrics_csv(run_dir: Path) -> None:
    results = train_in_process(run_dir, [*DEBUG, "logger=csv", STEPS])
    evals = eval_rows(run_dir)
    assert max(evals) == results["env_steps"] == 600
    assert evals[600] == results["eval_return_mean"]
    assert not (run_dir / "tensorboard").exists() and not (run_dir / "wandb").exists()


def test_tensorboard_logger_matches_metrics_csv(run_dir: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    overrides = [o for o in DEBUG if not o.startswith("logger=")]
    train_in_process(run_dir, [*overrides, "logger=tensorboard", STEPS])
    events = list((run_dir / "tensorboard").rglob("events.out.tfevents.*"))
    assert len(events) == 1
    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    assert {"eval/return_mean", "train/loss", "perf/env_steps_per_s"} <= set(acc.Tags()["scalars"])
    logged = {e.step: e.value for e in acc.Scalars("eval/return_mean")}
    expected = eval_rows(run_dir)
    assert sorted(logged) == sorted(expected)  # x-axis: env steps, same points as the CSV
    for step, value in expected.items():
        assert logged[step] == pytest.approx(value, rel=1e-6)


@pytest.fixture
def wandb_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Offline W&B with a fake API key in the environment; all W&B dirs under tmp_path."""
    wandb = pytest.importorskip("wandb")
    secret = f"rlbench-test-key-{uuid.uuid4().hex}"
    monkeypatch.setenv("WANDB_API_KEY", secret)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    for name in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        path = tmp_path / name.lower()
        path.mkdir()
        monkeypatch.setenv(name, str(path))
    yield secret
    if wandb.run is not None:
        wandb.finish()
    wandb.teardown()


def files_containing(root: Path, needle: str) -> list[Path]:
    data = needle.encode()
    return [p for p in root.rglob("*") if p.is_file() and data in p.read_bytes()]


def test_wandb_logger_offline(run_dir: Path, tmp_path: Path, wandb_offline: str) -> None:
    import wandb

    from rlbench.cli import finish_wandb

    overrides = [o for o in DEBUG if not o.startswith("logger=")]
    results = train_in_process(run_dir, [*overrides, "logger=wandb", STEPS, "tags=[smoke]"])
    run = wandb.run
    assert run is not None and run.offline
    assert (run.project, run.group, run.name) == (
        "rlbench",
        "dqn-CartPole-v1",
        "dqn-CartPole-v1-seed0",
    )
    assert tuple(run.tags) == ("smoke",)
    summary = dict(run.summary)
    assert summary["eval/return_mean"] == results["eval_return_mean"]
    assert summary["trainer/global_step"] == results["env_steps"]  # W&B x-axis: env steps
    assert {"train/loss", "rollout/episode_return", "perf/env_steps_per_s"} <= set(summary)
    finish_wandb(exit_code=0)
    assert wandb.run is None
    (offline,) = (run_dir / "wandb").glob("offline-run-*")
    assert len(list(offline.glob("run-*.wandb"))) == 1
    # the key came from the environment only and was written nowhere
    assert files_containing(tmp_path, wandb_offline) == []


def test_wandb_runs_do_not_leak_between_sweep_jobs(tmp_path: Path, wandb_offline: str) -> None:
    """joblib reuses worker processes: each job must still get its own W&B run."""
    sweep = tmp_path / "sweep"
    overrides = [o for o in DEBUG if not o.startswith("logger=")]
    proc = run_cli(
        [
            "-m",
            *overrides,
            "logger=wandb",
            "total_env_steps=300",
            "seed=0,1",
            "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=1",
            f"hydra.sweep.dir={sweep}",
        ]
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = sorted(p for p in sweep.iterdir() if (p / ".hydra").is_dir())
    assert len(jobs) == 2
    for job in jobs:
        assert json.loads((job / "results.json").read_text())["status"] == "completed"
        assert len(list((job / "wandb").glob("offline-run-*"))) == 1, job
    assert "reuse this run" not in proc.stderr
    assert files_containing(tmp_path, wandb_offline) == []
