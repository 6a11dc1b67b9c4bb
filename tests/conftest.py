"""Shared test helpers: compose configs through Hydra and run the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"

# Overrides that make a debug run actually learn something in a few hundred steps.
DEBUG = ["trainer=debug", "logger=csv", "algo.learning_starts=200", "algo.batch_size=32"]


def compose_cfg(overrides: list[str]) -> DictConfig:
    """The config ``rlbench <overrides>`` would run, composed through Hydra."""
    import rlbench.cli  # noqa: F401  (registers schemas and resolvers)

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


def run_cli(
    args: list[str], *, timeout: float = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``rlbench ARGS`` in a subprocess from the repository root."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT / "tests"), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "rlbench.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )


@pytest.fixture
def run_dir(tmp_path: Path) -> Iterator[Path]:
    d = tmp_path / "run"
    d.mkdir()
    yield d


def train_in_process(run_dir: Path, overrides: list[str]) -> dict[str, object]:
    """``rlbench <overrides>`` into ``run_dir`` without a subprocess (saves ~8 s of imports).

    Writes ``.hydra/config.yaml`` as Hydra would, so the run can be resumed through the CLI.
    """
    from omegaconf import OmegaConf

    from rlbench.cli import train

    cfg = compose_cfg(overrides)
    (run_dir / ".hydra").mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, run_dir / ".hydra" / "config.yaml")
    return train(cfg, run_dir=run_dir)


def resume_in_process(run_dir: Path, overrides: list[str]) -> dict[str, object]:
    """``rlbench resume=<run_dir> <overrides>`` without a subprocess."""
    from rlbench.cli import resume_config, train

    cfg = resume_config(compose_cfg([]), run_dir, overrides)
    return train(cfg, run_dir=run_dir)


def assert_learns(run_dir: Path, overrides: list[str], *, threshold: float, within: int) -> None:
    """Train ``overrides`` for at most ``within`` env steps, stopping at the first evaluation
    whose mean return reaches ``threshold``; assert that it did, and within the budget."""
    import csv

    results = train_in_process(
        run_dir,
        [
            *overrides,
            f"total_env_steps={within}",
            "trainer.progress_bar=false",
            "logger=csv",
            f"trainer.stop_at_eval_return={threshold}",
        ],
    )
    with (run_dir / "metrics.csv").open(newline="") as f:
        evals = [
            (int(r["env_step"]), float(r["eval/return_mean"]))
            for r in csv.DictReader(f)
            if r.get("eval/return_mean")
        ]
    best_step, best = max(evals, key=lambda e: (e[1], -e[0]))
    assert best >= threshold, evals
    assert best_step <= within
    assert results["status"] == "completed"
    assert float(results["eval_return_mean"]) >= threshold  # type: ignore[arg-type]
