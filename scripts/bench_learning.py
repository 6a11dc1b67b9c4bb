"""How well the tuned CartPole presets learn, over seeds: final evaluation per seed and the
IQM with a 95% bootstrap CI per preset.

Every ``conf/experiment/*cartpole*.yaml`` preset (``dqn_cartpole``, ``ppo_cartpole``,
``rainbow_cartpole``, ...) is trained on seeds 0-4 at its own budget, each run through the
real ``rlbench`` command in a fresh subprocess (``trainer.progress_bar=false``,
``logger=csv``), one after the other. Each run's ``results.json`` gives the final
evaluation (greedy, on the final weights) and its ``metrics.csv`` the evaluations on the
way; a table per preset lists, per seed, the final and the best evaluation, the env steps
and the wall time (start-up included), then the IQM of the final evaluations with a 95%
stratified-bootstrap CI (``rlbench.analysis.stats.interval_estimates``, rliable).

    python scripts/bench_learning.py [--seeds 0,1,2,3,4] [--presets dqn_cartpole,...] [--quick]

``--quick`` is a smoke run (3,000 env steps, seeds 0 and 1 unless ``--seeds`` is given): it
checks the pipeline, not learning. Runs land in ``outputs/bench_learning/<preset>/seed<k>``
(``--out``), replaced on every invocation. The full benchmark takes a while (PPO's preset
alone is 500k env steps a seed).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from benchlib import ROOT, parse_ints

CONF = ROOT / "conf"
SEEDS = (0, 1, 2, 3, 4)
QUICK = [
    "total_env_steps=3000",
    "trainer.eval_every=1000",
    "trainer.eval_episodes=3",
    "trainer.checkpoint_every=0",
]
QUICK_SEEDS = (0, 1)


@dataclass(frozen=True)
class Run:
    """One finished (or failed) run of a preset."""

    preset: str
    seed: int
    status: str
    final_eval: float  # results.json eval_return_mean (NaN when the run failed)
    best_eval: float  # the best eval/return_mean in metrics.csv (NaN when none)
    env_steps: int
    wall_s: float  # the subprocess, start-up included


def cartpole_presets(conf: Path = CONF) -> list[str]:
    """The tuned CartPole presets: ``conf/experiment/*cartpole*.yaml``, sorted."""
    return sorted(p.stem for p in (conf / "experiment").glob("*cartpole*.yaml"))


def read_run(run_dir: Path, *, preset: str, seed: int, wall_s: float) -> Run:
    """A ``Run`` from ``run_dir/results.json`` and ``run_dir/metrics.csv``."""
    nan = float("nan")
    results_path = run_dir / "results.json"
    if not results_path.is_file():
        return Run(preset, seed, "missing", nan, nan, 0, wall_s)
    results = json.loads(results_path.read_text())
    status = str(results.get("status", "unknown"))
    final = results.get("eval_return_mean")
    evals: list[float] = []
    metrics_path = run_dir / "metrics.csv"
    if metrics_path.is_file():
        with metrics_path.open(newline="") as f:
            evals = [
                float(r["eval/return_mean"]) for r in csv.DictReader(f) if r.get("eval/return_mean")
            ]
    return Run(
        preset=preset,
        seed=seed,
        status=status,
        final_eval=float(final) if status == "completed" and final is not None else nan,
        best_eval=max(evals) if evals else nan,
        env_steps=int(results.get("env_steps") or 0),
        wall_s=wall_s,
    )


def train(preset: str, seed: int, run_dir: Path, extra: list[str]) -> Run:
    """``rlbench experiment=<preset> seed=<seed>`` into ``run_dir`` in a subprocess."""
    shutil.rmtree(run_dir, ignore_errors=True)
    args = [
        f"experiment={preset}",
        f"seed={seed}",
        "trainer.progress_bar=false",
        "logger=csv",
        f"hydra.run.dir={run_dir}",
        *extra,
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "rlbench.cli", *args], cwd=ROOT, capture_output=True, text=True
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        print(
            f"  {preset} seed {seed} exited {proc.returncode}:\n{proc.stderr[-2000:]}", flush=True
        )
    return read_run(run_dir, preset=preset, seed=seed, wall_s=wall)


@dataclass(frozen=True)
class Summary:
    """IQM of a preset's final evaluations with its 95% bootstrap CI, over finished runs."""

    runs: int
    iqm: float
    lo: float
    hi: float
    wall_mean_s: float


def summarize(runs: list[Run], *, reps: int = 2000, seed: int = 0) -> Summary:
    """IQM [95% CI] of the final evaluations of the completed runs (NaN without any)."""
    from rlbench.analysis.stats import interval_estimates

    finals = [r.final_eval for r in runs if r.status == "completed" and math.isfinite(r.final_eval)]
    wall = statistics.fmean(r.wall_s for r in runs) if runs else float("nan")
    if not finals:
        nan = float("nan")
        return Summary(0, nan, nan, nan, wall)
    est = interval_estimates({"final": [[v] for v in finals]}, reps=reps, seed=seed)["final"]["iqm"]
    return Summary(len(finals), est.point, est.lo, est.hi, wall)


def format_table(preset: str, runs: list[Run], summary: Summary) -> str:
    """A preset's table: one row per seed, then the IQM line."""
    lines = [
        f"\n{preset}",
        f"  {'seed':>4}  {'status':>10}  {'final eval':>10}  {'best eval':>10}"
        f"  {'env steps':>9}  {'wall s':>8}",
    ]
    for r in sorted(runs, key=lambda r: r.seed):
        lines.append(
            f"  {r.seed:>4}  {r.status:>10}  {r.final_eval:>10.1f}  {r.best_eval:>10.1f}"
            f"  {r.env_steps:>9}  {r.wall_s:>8.1f}"
        )
    lines.append(
        f"  IQM of final eval over {summary.runs} of {len(runs)} runs: {summary.iqm:.1f}"
        f"  95% CI [{summary.lo:.1f}, {summary.hi:.1f}]   mean wall {summary.wall_mean_s:.1f} s"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=parse_ints, default=None, help="e.g. 0,1,2 or 0-4")
    parser.add_argument(
        "--presets", default=None, help="comma-separated (default: every *cartpole* preset)"
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run: 3,000 env steps")
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "bench_learning")
    args = parser.parse_args(argv)
    available = cartpole_presets()
    presets = args.presets.split(",") if args.presets else available
    unknown = sorted(set(presets) - set(available))
    if unknown:
        raise SystemExit(f"unknown presets {unknown}; the CartPole presets are {available}")
    seeds = args.seeds if args.seeds is not None else (QUICK_SEEDS if args.quick else SEEDS)
    extra = QUICK if args.quick else []

    tables = []
    for preset in presets:
        runs = []
        for seed in seeds:
            run = train(preset, seed, args.out / preset / f"seed{seed}", extra)
            print(
                f"[{preset} seed {seed}] {run.status}  final eval {run.final_eval:.1f}"
                f"  wall {run.wall_s:.1f} s",
                flush=True,
            )
            runs.append(run)
        tables.append(format_table(preset, runs, summarize(runs)))
    mode = "quick smoke run, " if args.quick else ""
    print(f"\nCartPole presets ({mode}seeds {', '.join(map(str, seeds))})")
    print("\n".join(tables))


if __name__ == "__main__":
    main()
