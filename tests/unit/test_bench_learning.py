"""The learning benchmark (``scripts/bench_learning.py``) on fabricated runs: what it reads
from each run dir, its IQM and bootstrap CI, and its table (no training)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import bench_learning


def fabricate(
    run_dir: Path, *, final: float, evals: list[float], status: str = "completed"
) -> None:
    run_dir.mkdir(parents=True)
    lines = ["env_step,train/loss,eval/return_mean"]
    for i, ret in enumerate(evals, start=1):
        lines += [f"{1000 * i - 500},0.1,", f"{1000 * i},,{ret}"]
    (run_dir / "metrics.csv").write_text("\n".join(lines) + "\n")
    results = {
        "status": status,
        "env_steps": 1000 * len(evals),
        "eval_return_mean": final,
        "eval_return_std": 0.0,
        "eval_episodes": 10,
        "wall_time_s": 12.0,
    }
    (run_dir / "results.json").write_text(json.dumps(results))


def test_every_cartpole_preset_and_only_those() -> None:
    presets = bench_learning.cartpole_presets()
    assert {"dqn_cartpole", "ppo_cartpole", "rainbow_cartpole"} <= set(presets)
    assert all("cartpole" in p for p in presets) and presets == sorted(presets)


def test_read_run_takes_the_final_eval_from_results_and_the_best_from_metrics(
    tmp_path: Path,
) -> None:
    fabricate(tmp_path / "a", final=210.0, evals=[50.0, 480.0, 210.0])
    run = bench_learning.read_run(tmp_path / "a", preset="p", seed=3, wall_s=7.5)
    assert run == bench_learning.Run("p", 3, "completed", 210.0, 480.0, 3000, 7.5)
    fabricate(tmp_path / "b", final=1.0, evals=[1.0], status="failed")
    failed = bench_learning.read_run(tmp_path / "b", preset="p", seed=4, wall_s=1.0)
    assert failed.status == "failed" and math.isnan(failed.final_eval)
    missing = bench_learning.read_run(tmp_path / "c", preset="p", seed=5, wall_s=1.0)
    assert missing.status == "missing" and math.isnan(missing.final_eval)


def test_iqm_ci_and_table_over_seeds(tmp_path: Path) -> None:
    finals = [100.0, 500.0, 200.0, 400.0, 300.0]
    runs = []
    for seed, final in enumerate(finals):
        fabricate(tmp_path / f"seed{seed}", final=final, evals=[10.0, final])
        runs.append(
            bench_learning.read_run(
                tmp_path / f"seed{seed}", preset="dqn_cartpole", seed=seed, wall_s=10.0 + seed
            )
        )
    fabricate(tmp_path / "seed5", final=0.0, evals=[0.0], status="failed")
    runs.append(
        bench_learning.read_run(tmp_path / "seed5", preset="dqn_cartpole", seed=5, wall_s=2.0)
    )
    summary = bench_learning.summarize(runs)
    # IQM of 5 values: drop the lowest and the highest (25% each, rounded down), mean the rest
    assert summary.runs == 5 and summary.iqm == pytest.approx(300.0)
    assert 100.0 <= summary.lo < 300.0 < summary.hi <= 500.0
    assert summary.wall_mean_s == pytest.approx((10 + 11 + 12 + 13 + 14 + 2) / 6)
    table = bench_learning.format_table("dqn_cartpole", runs, summary)
    lines = table.splitlines()
    assert lines[1] == "dqn_cartpole"
    rows = {int(line.split()[0]): line.split() for line in lines[3:9]}
    assert sorted(rows) == [0, 1, 2, 3, 4, 5]
    assert rows[1][1:] == ["completed", "500.0", "500.0", "2000", "11.0"]
    assert rows[5][1:3] == ["failed", "nan"]
    assert "IQM of final eval over 5 of 6 runs: 300.0" in lines[-1]
    assert f"[{summary.lo:.1f}, {summary.hi:.1f}]" in lines[-1]


def test_ci_matches_a_plain_bootstrap_of_the_iqm() -> None:
    """16 runs (a bootstrap distribution smooth enough for percentiles to settle): rliable's
    CI against resampling the runs by hand, 20,000 times."""
    finals = np.random.default_rng(1).uniform(0, 500, 16).round(1)
    runs = [
        bench_learning.Run("p", i, "completed", float(f), 500.0, 1, 1.0)
        for i, f in enumerate(finals)
    ]
    summary = bench_learning.summarize(runs)

    def iqm(x: np.ndarray) -> float:  # the middle half of 16 sorted values
        return float(np.sort(x)[4:12].mean())

    assert summary.iqm == pytest.approx(iqm(finals))
    rng = np.random.default_rng(0)
    boot = [iqm(rng.choice(finals, size=16)) for _ in range(20_000)]
    lo, hi = np.percentile(boot, [2.5, 97.5])
    assert summary.lo == pytest.approx(lo, abs=8.0) and summary.hi == pytest.approx(hi, abs=8.0)
    assert hi - lo > 100.0  # the tolerance is small against the interval


def test_seeds_and_presets_flags(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert bench_learning.parse_ints("0-4") == (0, 1, 2, 3, 4)
    assert bench_learning.parse_ints("3,1") == (3, 1)
    calls: list[tuple[str, int, list[str]]] = []

    def fake_train(preset: str, seed: int, run_dir: Path, extra: list[str]) -> bench_learning.Run:
        calls.append((preset, seed, extra))
        return bench_learning.Run(preset, seed, "completed", 100.0 * (seed + 1), 500.0, 3000, 1.0)

    monkeypatch.setattr(bench_learning, "train", fake_train)
    bench_learning.main(["--quick", "--presets", "ppo_cartpole"])
    assert [(p, s) for p, s, _ in calls] == [("ppo_cartpole", 0), ("ppo_cartpole", 1)]
    assert "total_env_steps=3000" in calls[0][2]
    out = capsys.readouterr().out
    assert "ppo_cartpole" in out and "IQM of final eval over 2 of 2 runs: 150.0" in out
    calls.clear()
    bench_learning.main(["--seeds", "0-4"])  # the default presets: every CartPole one
    assert len(calls) == 5 * len(bench_learning.cartpole_presets()) and calls[0][2] == []
    with pytest.raises(SystemExit, match="unknown presets"):
        bench_learning.main(["--presets", "dqn_pong"])
