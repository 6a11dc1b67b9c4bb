"""Shared test helpers: compose configs through Hydra and run the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


class StopWhenLearned:
    """Stop training once the last ``last`` evaluations all reached ``threshold``
    (``trainer.stop_at_eval_return`` stops at the first one, which says nothing about the
    policy after it). The logic only: ``stop_when_learned`` makes it a Lightning callback
    (importing Lightning here would slow every test's start). Appended after rlbench's own
    callbacks, it sees an evaluation in the batch-end hook that ran it."""

    def __init__(self, threshold: float, *, last: int = 2) -> None:
        self.threshold, self.last = threshold, last
        self.seen: list[tuple[int, float]] = []

    def on_train_batch_end(self, trainer: Any, *args: Any) -> None:
        evaluator = next(cb for cb in trainer.callbacks if type(cb).__name__ == "EvalCallback")
        if evaluator.last is None or evaluator.last_eval_step < 0:
            return
        step = int(evaluator.last_eval_step)
        if self.seen and self.seen[-1][0] == step:
            return
        self.seen.append((step, float(evaluator.last["eval/return_mean"])))
        tail = self.seen[-self.last :]
        if len(tail) == self.last and all(r >= self.threshold for _, r in tail):
            trainer.should_stop = True


def stop_when_learned(threshold: float, *, last: int = 2) -> Any:
    """A ``StopWhenLearned`` that is a ``lightning.Callback``."""
    import lightning as L

    cls = type("StopWhenLearnedCallback", (StopWhenLearned, L.Callback), {})
    return cls(threshold, last=last)


def read_evals(run_dir: Path) -> list[tuple[int, float]]:
    """``(env_step, eval/return_mean)`` of every evaluation in ``run_dir/metrics.csv``."""
    import csv

    with (run_dir / "metrics.csv").open(newline="") as f:
        return [
            (int(r["env_step"]), float(r["eval/return_mean"]))
            for r in csv.DictReader(f)
            if r.get("eval/return_mean")
        ]


def judge_learning(
    evals: list[tuple[int, float]],
    results: dict[str, object],
    *,
    threshold: float,
    last: int = 2,
) -> None:
    """The policy at the end learned: the last ``last`` evaluations (the final one is the
    final weights') reached ``threshold``, and the run completed with that final one as
    its result. The best evaluation on the way counts for nothing."""
    assert results["status"] == "completed", results
    assert len(evals) >= last, f"{len(evals)} evaluations, need at least {last}: {evals}"
    steps = [s for s, _ in evals]
    assert steps == sorted(set(steps)), f"evaluation steps not increasing: {evals}"
    tail = evals[-last:]
    assert all(r >= threshold for _, r in tail), (
        f"last {last} evaluations {tail} not all >= {threshold}; all: {evals}"
    )
    assert results["eval_return_mean"] == pytest.approx(evals[-1][1], rel=1e-6), (results, evals)


def assert_learns(run_dir: Path, overrides: list[str], *, threshold: float, within: int) -> None:
    """Train ``overrides`` for at most ``within`` env steps, stopping early once two
    evaluations in a row reach ``threshold``; assert that the run ends with two such
    evaluations (``judge_learning``)."""
    import rlbench.cli

    build = rlbench.cli.build

    def build_stopping_when_learned(*args: Any, **kwargs: Any) -> tuple[Any, Any, Any]:
        module, datamodule, trainer = build(*args, **kwargs)
        trainer.callbacks.append(stop_when_learned(threshold))
        return module, datamodule, trainer

    rlbench.cli.build = build_stopping_when_learned  # type: ignore[assignment]
    try:
        results = train_in_process(
            run_dir,
            [
                *overrides,
                f"total_env_steps={within}",
                "trainer.progress_bar=false",
                "logger=csv",
            ],
        )
    finally:
        rlbench.cli.build = build  # type: ignore[assignment]
    judge_learning(read_evals(run_dir), results, threshold=threshold)
