"""Multirun sweeps through Hydra launchers (joblib, submitit_local), the end-of-sweep table,
and ``rlbench-report`` over the sweep dir.

Each sweep is a 2-seed debug sweep on an env whose reward turns NaN after ``nan_after`` steps,
set to the seed: seed 300 sees NaN rewards mid-run and fails with a non-finite loss (after
logging, so its ``metrics.csv`` exists), seed 100000 never does and completes.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from omegaconf import OmegaConf

from conftest import DEBUG, run_cli
from rlbench.analysis.report import main as report_main
from rlbench.sweep import (
    SUMMARY_FILE,
    JobStatus,
    SweepSummary,
    collect_jobs,
    common_overrides,
    format_table,
    status_counts,
)

FAILING, COMPLETING = 300, 100_000
NAN_SWEEP = [
    "env.id=rlbench_test_envs:NaNReward-v0",
    "+env.kwargs.nan_after=${seed}",
    f"seed={FAILING},{COMPLETING}",
    "total_env_steps=600",
]
LAUNCHERS = {
    "joblib": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
    "submitit_local": ["hydra/launcher=submitit_local", "hydra.launcher.timeout_min=5"],
}
Sweep = tuple[Path, str, dict[int, dict[str, Any]]]


def sweep(sweep_dir: Path, launcher: str) -> Sweep:
    """Run the sweep; returns the sweep dir, stdout and ``{seed: results.json}``."""
    proc = run_cli(
        ["-m", *DEBUG, *NAN_SWEEP, *LAUNCHERS[launcher], f"hydra.sweep.dir={sweep_dir}"],
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    results = {}
    for job in sorted(p for p in sweep_dir.iterdir() if (p / ".hydra").is_dir()):
        for name in (".hydra/config.yaml", "metrics.csv", "results.json"):
            assert (job / name).is_file(), f"{job.name}: no {name}"
        seed = OmegaConf.load(job / ".hydra" / "config.yaml").seed
        results[seed] = json.loads((job / "results.json").read_text())
    return sweep_dir, proc.stdout, results


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Sweep]:
    return {
        launcher: sweep(tmp_path_factory.mktemp(launcher) / "sweep", launcher)
        for launcher in LAUNCHERS
    }


@pytest.mark.parametrize("launcher", list(LAUNCHERS))
def test_sweep_runs_every_job_and_a_failure_does_not_stop_it(
    sweeps: dict[str, Sweep], launcher: str
) -> None:
    sweep_dir, stdout, results = sweeps[launcher]
    assert sorted(results) == [FAILING, COMPLETING]
    failed, completed = results[FAILING], results[COMPLETING]
    assert failed["status"] == "failed" and "non-finite loss" in failed["error"]
    assert completed["status"] == "completed" and completed["env_steps"] == 600
    assert completed["eval_return_mean"] is not None
    # the end-of-sweep table, on stdout and in the sweep dir
    assert f"sweep {sweep_dir}: 2 runs: 1 completed, 1 failed" in stdout
    lines = stdout[stdout.index(f"sweep {sweep_dir}") :].splitlines()
    header = next(line for line in lines if line.startswith("#"))
    assert header.split() == ["#", "overrides", "status", "env", "steps", "eval", "return",
                              "time", "(s)", "error"]  # fmt: skip
    first, second = lines[lines.index(header) + 1 : lines.index(header) + 3]
    assert first.split()[:3] == ["0", f"seed={FAILING}", "failed"]
    assert "non-finite loss" in first
    assert second.split()[:5] == ["1", f"seed={COMPLETING}", "completed", "600",
                                  f"{completed['eval_return_mean']:.1f}"]  # fmt: skip
    assert "common overrides: trainer=debug" in stdout
    assert (sweep_dir / SUMMARY_FILE).read_text().startswith(f"sweep {sweep_dir}: 2 runs")


def test_launchers_agree(sweeps: dict[str, Sweep]) -> None:
    """Same seed, same outcome, whichever launcher and process ran it."""

    def outcome(results: dict[int, dict[str, Any]]) -> dict[int, list[Any]]:
        keys = ("status", "env_steps", "eval_return_mean", "eval_return_std", "error")
        return {seed: [res.get(k) for k in keys] for seed, res in results.items()}

    assert outcome(sweeps["joblib"][2]) == outcome(sweeps["submitit_local"][2])


def test_report_over_sweep_dir(sweeps: dict[str, Sweep], tmp_path: Path) -> None:
    sweep_dir, _, results = sweeps["joblib"]
    out = tmp_path / "report"
    assert report_main([str(sweep_dir), "--reps", "100", "--out", str(out)]) == 0
    with (out / "summary.csv").open(newline="") as handle:
        (row,) = list(csv.DictReader(handle))
    assert (row["algo.name"], row["n_runs"], row["normalization"]) == ("dqn", "1", "minmax")
    low, high = 0.0, 500.0  # env.score_range of conf/env/cartpole.yaml (env.id overridden)
    final = results[COMPLETING]["eval_return_mean"]
    assert float(row["iqm"]) == pytest.approx((final - low) / (high - low))
    with (out / "runs.csv").open(newline="") as handle:
        runs = {r["seed"]: r for r in csv.DictReader(handle)}
    assert runs[str(FAILING)]["used"] == "no" and "non-finite loss" in runs[str(FAILING)]["note"]
    assert runs[str(COMPLETING)]["used"] == "yes"
    assert (out / "index.html").is_file() and (out / "learning_curves.png").is_file()


# ---------------------------------------------------------------- the table, without Hydra
def make_job(
    sweep_dir: Path, num: int, overrides: list[str], results: dict[str, Any] | None
) -> Path:
    job = sweep_dir / f"{num}_job"
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"job": {"num": num}}}))
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if results is not None:
        (job / "results.json").write_text(json.dumps(results))
    return job


def test_format_table_hand_case() -> None:
    jobs = [
        JobStatus(Path("a"), 0, ("x=1", "seed=0"), "completed", 100, 12.345, 1.25),
        JobStatus(Path("b"), 10, ("x=1", "seed=10"), "failed", 0, None, 0.5, "E" * 90),
    ]
    assert common_overrides(jobs) == ("x=1",)
    assert common_overrides(jobs[:1]) == ()
    assert format_table(jobs, max_error=10).splitlines() == [
        " #  overrides  status     env steps  eval return  time (s)  error",
        " 0  seed=0     completed        100         12.3       1.2",
        "10  seed=10    failed             0                    0.5  EEEEEEE...",
    ]
    assert status_counts(jobs) == "2 runs: 1 completed, 1 failed"
    assert format_table([]).split() == ["#", "overrides", "status", "env", "steps", "eval",
                                        "return", "time", "(s)", "error"]  # fmt: skip
    assert status_counts([]) == "0 runs"


def test_collect_jobs_orders_by_job_number_and_flags_missing(tmp_path: Path) -> None:
    make_job(tmp_path, 10, ["seed=10"], {"status": "completed", "env_steps": 5})
    make_job(tmp_path, 2, ["seed=2"], None)  # killed before results.json
    make_job(tmp_path, 1, ["seed=1"], {"status": "failed", "error": "boom\n  at line 3"})
    (tmp_path / ".submitit" / "x" / ".hydra").mkdir(parents=True)  # never a job
    jobs = collect_jobs(tmp_path)
    assert [(j.num, j.status) for j in jobs] == [(1, "failed"), (2, "missing"), (10, "completed")]
    assert jobs[0].error == "boom at line 3"


def test_summary_printed_once_at_end_or_at_exit(tmp_path: Path) -> None:
    make_job(tmp_path, 0, ["seed=0"], {"status": "completed"})
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}})
    stream = io.StringIO()
    callback = SweepSummary(stream=stream)
    callback.on_multirun_start(config)
    callback.on_multirun_end(config)
    callback._at_exit()  # registered with atexit: no second table after a normal end
    assert stream.getvalue().count("1 run: 1 completed") == 1
    # a launcher that re-raises a job's error skips on_multirun_end: the table comes at exit
    aborted = io.StringIO()
    callback = SweepSummary(stream=aborted, write_file=False)
    callback.on_multirun_start(config)
    callback._at_exit()
    callback._at_exit()
    assert aborted.getvalue().count("1 run: 1 completed") == 1
    assert os.path.isfile(tmp_path / SUMMARY_FILE)
