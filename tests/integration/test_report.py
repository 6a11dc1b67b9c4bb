"""End-to-end tests of ``rlbench-report`` on synthetic run directories."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from rlbench.analysis.report import analyze, main
from rlbench.analysis.runs import (
    AnalysisError,
    config_value,
    discover_runs,
    filter_runs,
    group_runs,
    resolve_group_keys,
    resolve_grouping,
)

REPS = "200"
EVIL = '<script>alert("x")</script>'
EVAL_STEPS = (0, 2500, 5000, 7500, 10000)
# final eval return per (algo, env) for seeds 0, 1, 2
FINALS: dict[tuple[str, str], tuple[float, float, float]] = {
    ("dqn", "CartPole-v1"): (400.0, 450.0, 500.0),
    (EVIL, "CartPole-v1"): (100.0, 150.0, 200.0),
    ("dqn", "Acrobot-v1"): (-100.0, -90.0, -80.0),
    (EVIL, "Acrobot-v1"): (-300.0, -250.0, -200.0),
}
RANGES = {"CartPole-v1": (0.0, 500.0), "Acrobot-v1": (-500.0, 0.0)}
FIGURES = (
    "learning_curves",
    "interval_estimates",
    "performance_profiles",
    "probability_of_improvement",
)


def make_run(
    run_dir: Path,
    *,
    algo: str,
    env_id: str,
    seed: int,
    final: float | None,
    status: str = "completed",
    result_score: bool = True,
    variant: str | None = None,
    algo_keys: dict[str, Any] | None = None,
    eval_deterministic: bool | None = None,
) -> Path:
    """Write a synthetic run dir: config, sparse metrics.csv, results.json.

    ``algo_keys`` adds keys to the config's ``algo``; ``eval_deterministic`` (unless ``None``)
    goes into results.json, as newer runs write it.
    """
    (run_dir / ".hydra").mkdir(parents=True)
    config: dict[str, Any] = {
        "seed": seed,
        "total_env_steps": EVAL_STEPS[-1],
        "algo": {"name": algo, **(algo_keys or {})},
        "env": {"id": env_id, "name": env_id.split("-")[0].lower()},
        "buffer": {"n_step": 3},
        # differs between runs of one algo/env, but says how often a run checkpoints, not
        # what it learns: default groupings leave it out, --group-by can still name it
        "trainer": {"checkpoint_every": 500 if seed % 2 else 1000},
        "tags": ["synthetic", f"seed{seed}"],
        "logger": {"name": "${algo.name}-${env.id}-seed${seed}"},
    }
    if variant is not None:
        config["variant"] = variant
    (run_dir / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    start = -500.0 if env_id.startswith("Acrobot") else 10.0
    lines = ["env_step,train/loss,eval/return_mean,eval/return_std,perf/env_steps_per_s"]
    for k, step in enumerate(EVAL_STEPS):
        lines.append(f"{step + 100},{1.0 / (k + 1):.3f},,,1000")  # training-only row
        if final is not None:
            value = start + (final - start) * k / (len(EVAL_STEPS) - 1)
            lines.append(f"{step},,{value},1.0,")
    (run_dir / "metrics.csv").write_text("\n".join(lines) + "\n")
    results: dict[str, Any] = {
        "status": status,
        "env_steps": EVAL_STEPS[-1],
        "eval_return_mean": final if result_score else None,
        "eval_return_std": 1.0,
        "eval_episodes": 10,
        "wall_time_s": 12.5,
    }
    if eval_deterministic is not None:
        results["eval_deterministic"] = eval_deterministic
    if status == "failed":
        results["error"] = "RuntimeError: boom"
    (run_dir / "results.json").write_text(json.dumps(results))
    return run_dir


def make_sweep(root: Path) -> Path:
    """2 algos x 2 envs x 3 seeds in a Hydra-multirun-like layout, plus one failed run."""
    sweep = root / "multirun" / "2025-01-01" / "12-00-00"
    sweep.mkdir(parents=True)
    (sweep / "multirun.yaml").write_text("hydra:\n  mode: MULTIRUN\n")
    job = 0
    for (algo, env_id), finals in FINALS.items():
        for seed, final in enumerate(finals):
            name = f"{job}_algo={'evil' if algo == EVIL else algo},env={env_id},seed={seed}"
            # the fallback case: results.json without a score -> last eval in metrics.csv
            no_result = algo == "dqn" and env_id == "Acrobot-v1" and seed == 2
            make_run(
                sweep / name,
                algo=algo,
                env_id=env_id,
                seed=seed,
                final=final,
                result_score=not no_result,
            )
            job += 1
    make_run(
        sweep / f"{job}_<i>failed</i>",
        algo="dqn",
        env_id="CartPole-v1",
        seed=3,
        final=None,
        status="failed",
    )
    return sweep


def normalized(algo: str, env_id: str) -> np.ndarray:
    low, high = RANGES[env_id]
    return (np.array(FINALS[algo, env_id]) - low) / (high - low)


def hand_iqm(values: np.ndarray) -> float:
    """25% trimmed mean: drop floor(n/4) values from each end of the sorted scores."""
    flat = np.sort(values.ravel())
    cut = len(flat) // 4
    return float(flat[cut : len(flat) - cut].mean())


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def assert_figures(out: Path, names: Sequence[str]) -> None:
    for name in names:
        png, pdf = out / f"{name}.png", out / f"{name}.pdf"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert pdf.read_bytes()[:5] == b"%PDF-", name


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_sweep(tmp_path_factory.mktemp("runs"))


@pytest.fixture(scope="module")
def default_report(sweep: Path) -> tuple[Path, str]:
    """Report with default grouping (algo.name, env.id) written to <sweep>/report."""
    assert main([str(sweep), "--reps", REPS, "--seed", "0"]) == 0
    return sweep / "report", ""


# ------------------------------------------------------------------------- default report
def test_default_report_summary(default_report: tuple[Path, str]) -> None:
    out, _ = default_report
    rows = read_csv(out / "summary.csv")
    assert len(rows) == 4
    # algo and env differ; trainer.checkpoint_every, tags and logger.name (seed-dependent)
    # differ too, but never make groups
    assert list(rows[0])[:4] == ["group", "algo.name", "env.id", "eval_policy"]
    by_group = {(r["algo.name"], r["env.id"]): r for r in rows}
    assert set(by_group) == set(FINALS)
    for (algo, env_id), row in by_group.items():
        assert row["group"] == f"{algo}, {env_id}"
        assert row["eval_policy"] == "greedy"  # no eval_deterministic in results.json
        expected = normalized(algo, env_id)
        assert int(row["n_runs"]) == 3  # the failed run is excluded
        assert row["normalization"] == "minmax"
        assert float(row["iqm"]) == pytest.approx(hand_iqm(expected))
        assert float(row["mean"]) == pytest.approx(expected.mean())
        assert float(row["median"]) == pytest.approx(np.median(expected))
        gap = 1.0 - np.minimum(expected, 1.0).mean()
        assert float(row["optimality_gap"]) == pytest.approx(gap, abs=1e-12)
        assert float(row["raw_iqm"]) == pytest.approx(np.mean(FINALS[algo, env_id]))
        for metric in ("iqm", "median", "mean", "optimality_gap"):
            lo, point, hi = (float(row[f"{metric}{s}"]) for s in ("_lo", "", "_hi"))
            assert lo <= point + 1e-12 and point <= hi + 1e-12
    # probability of improvement: dqn beats EVIL on every run of both envs
    poi = read_csv(out / "probability_of_improvement.csv")
    assert len(poi) == 4  # 2 ordered pairs per env; groups on different envs are not compared
    for row in poi:
        dqn_first = row["x"].startswith("dqn")
        assert float(row["p_x_better"]) == pytest.approx(1.0 if dqn_first else 0.0)


def test_default_report_files_and_html(default_report: tuple[Path, str]) -> None:
    out, _ = default_report
    assert_figures(out, FIGURES)
    assert not (out / "learning_curves_normalized.png").exists()  # no multi-env group
    page = (out / "index.html").read_text(encoding="utf-8")
    assert "data:image/png;base64," in page
    assert page.count("data:image/png;base64,") == len(FIGURES)
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "&lt;i&gt;failed&lt;/i&gt;" in page and "<i>failed" not in page
    assert not re.search(r"(src|href)=\"(https?:)?//", page)  # nothing external
    runs = read_csv(out / "runs.csv")
    assert len(runs) == 13
    failed = [r for r in runs if r["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["used"] == "no"
    assert failed[0]["note"] == "excluded: status failed (RuntimeError: boom)"
    fallback = [r for r in runs if r["score_source"] == "metrics.csv"]
    assert len(fallback) == 1 and float(fallback[0]["final_score"]) == pytest.approx(-80.0)


def test_analysis_is_deterministic(sweep: Path) -> None:
    runs = discover_runs([str(sweep)])
    first = analyze(runs, group_keys=["algo.name"], reps=50, seed=3)
    second = analyze(runs, group_keys=["algo.name"], reps=50, seed=3)
    assert [g.estimates for g in first.groups] == [g.estimates for g in second.groups]
    assert first.poi == second.poi
    for a, b in zip(first.env_panels, second.env_panels, strict=True):
        for sa, sb in zip(a.series, b.series, strict=True):
            np.testing.assert_array_equal(sa.lo, sb.lo)
    other = analyze(runs, group_keys=["algo.name"], reps=50, seed=4)
    assert [g.estimates for g in first.groups] != [g.estimates for g in other.groups]


# ---------------------------------------------------------------------- group-by / filters
def test_group_by_algo_aggregates_envs(sweep: Path, tmp_path: Path) -> None:
    out = tmp_path / "by_algo"
    rc = main([str(sweep), "--group-by", "algo.name", "--out", str(out), "--reps", REPS])
    assert rc == 0
    rows = {r["algo.name"]: r for r in read_csv(out / "summary.csv")}
    assert set(rows) == {"dqn", EVIL}
    for algo, row in rows.items():
        scores = np.concatenate([normalized(algo, e) for e in ("Acrobot-v1", "CartPole-v1")])
        assert row["envs"] == "Acrobot-v1;CartPole-v1"
        assert int(row["n_runs"]) == 6 and int(row["runs_per_task"]) == 3
        assert float(row["iqm"]) == pytest.approx(hand_iqm(scores))
        assert row["raw_iqm"] == ""  # raw scores are not pooled across envs
    # dqn: [0.8, 0.82, 0.84] and [0.8, 0.9, 1.0] -> IQM mean(0.8, 0.82, 0.84, 0.9)
    assert float(rows["dqn"]["iqm"]) == pytest.approx(0.84)
    assert_figures(out, [*FIGURES, "learning_curves_normalized"])
    poi = read_csv(out / "probability_of_improvement.csv")
    assert {(r["x"], r["y"]) for r in poi} == {("dqn", EVIL), (EVIL, "dqn")}


def test_filters(sweep: Path, tmp_path: Path) -> None:
    out = tmp_path / "filtered"
    rc = main(
        [
            str(sweep),
            "--out",
            str(out),
            "--reps",
            "50",
            "--group-by",
            "trainer.checkpoint_every",
            "--filter",
            "env.id=CartPole-v1",
            "algo.name=dqn",
            "--filter",
            "status=completed",
        ]
    )
    assert rc == 0
    rows = read_csv(out / "summary.csv")
    # dqn on CartPole: seeds 0 and 2 checkpoint every 1000, seed 1 every 500 (failed run
    # filtered); a key that default groupings ignore, named explicitly
    assert {r["trainer.checkpoint_every"]: int(r["n_runs"]) for r in rows} == {"1000": 2, "500": 1}
    assert {r["group"] for r in rows} == {
        "trainer.checkpoint_every=1000",
        "trainer.checkpoint_every=500",
    }
    assert len(read_csv(out / "runs.csv")) == 3


def test_unequal_runs_per_task_are_dropped(tmp_path: Path) -> None:
    root = tmp_path / "unequal"
    for seed, final in enumerate((100.0, 200.0, 300.0)):
        make_run(root / f"c{seed}", algo="dqn", env_id="CartPole-v1", seed=seed, final=final)
    for seed, final in enumerate((-400.0, -300.0)):
        make_run(root / f"a{seed}", algo="dqn", env_id="Acrobot-v1", seed=seed, final=final)
    out = tmp_path / "unequal_report"
    assert main([str(root), "--group-by", "algo.name", "--out", str(out), "--reps", "50"]) == 0
    (row,) = read_csv(out / "summary.csv")
    assert (row["n_runs"], row["runs_per_task"], row["n_dropped"]) == ("4", "2", "1")
    # kept: CartPole seeds 0, 1 -> 0.2, 0.4; Acrobot -> 0.2, 0.4
    assert float(row["iqm"]) == pytest.approx(0.3)
    dropped = [r for r in read_csv(out / "runs.csv") if r["note"].startswith("dropped")]
    assert [(r["env"], r["seed"]) for r in dropped] == [("CartPole-v1", "2")]


def test_single_run_dir_and_glob(
    sweep: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = next(p for p in sorted(sweep.iterdir()) if p.name.startswith("0_"))
    single = tmp_path / "single"
    make_run(single, algo="ppo", env_id="MyEnv-v0", seed=0, final=7.0)
    assert main([str(single), "--reps", "20"]) == 0
    assert f"Report written to {single / 'report' / 'index.html'}" in capsys.readouterr().out
    (row,) = read_csv(single / "report" / "summary.csv")
    assert row["normalization"] == "raw" and float(row["iqm"]) == pytest.approx(7.0)
    assert "raw scores are used" in (single / "report" / "index.html").read_text()
    # a glob (and more than one path) -> ./report
    monkeypatch.chdir(tmp_path)
    assert main([str(sweep / "*algo=dqn*"), str(run_dir), "--reps", "20"]) == 0
    rows = read_csv(tmp_path / "report" / "summary.csv")
    assert {r["algo.name"] for r in rows} == {"dqn"}


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--group-by", "algo.name,no.such_key"], "no.such_key"),
        (["--filter", "nonsense"], "nonsense"),
        (["--filter", "env.id=Nope-v0"], "env.id=Nope-v0"),
        (["--reps", "0"], "--reps"),
        (["--reps", "many"], "many"),
    ],
)
def test_bad_input_exit_2(
    sweep: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    assert main([str(sweep), "--out", str(tmp_path / "x"), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and "error" in err
    assert not (tmp_path / "x" / "index.html").exists()


def test_no_runs_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main([str(empty)]) == 2
    assert str(empty) in capsys.readouterr().err
    assert main([str(tmp_path / "missing")]) == 2
    assert "missing" in capsys.readouterr().err
    assert main([str(tmp_path / "*.nothing")]) == 2
    assert "*.nothing" in capsys.readouterr().err


# ------------------------------------------------------------------------ runs API helpers
def test_runs_api(sweep: Path, tmp_path: Path) -> None:
    runs = discover_runs([str(sweep)])
    assert len(runs) == 13
    assert config_value(runs[0], "algo.name") in {"dqn", EVIL}
    assert config_value(runs[0], "env.missing", default="d") == "d"
    assert len(filter_runs(runs, ["status=failed"])) == 1
    assert len(filter_runs(runs, ["tags=synthetic", "seed=0"])) == 4
    assert len(filter_runs(runs, ["tags=seed1"])) == 4
    assert len(filter_runs(runs, ["algo.name!=dqn"])) == 6
    with pytest.raises(AnalysisError, match="=oops"):
        filter_runs(runs, ["=oops"])
    groups = group_runs(runs)
    assert set(groups) == set(FINALS)
    assert [r.seed for r in groups["dqn", "CartPole-v1"]] == [0, 1, 2, 3]
    # `variant` replaces algo.name in the default grouping; runs without one keep algo.name
    make_run(
        tmp_path / "v0", algo="dqn", env_id="CartPole-v1", seed=0, final=1.0, variant="dqn+per"
    )
    make_run(tmp_path / "v1", algo="c51", env_id="CartPole-v1", seed=0, final=1.0)
    variant_runs = discover_runs([str(tmp_path / "v*")])
    assert resolve_group_keys(variant_runs) == ["variant", "env.id"]
    assert set(group_runs(variant_runs)) == {("dqn+per", "CartPole-v1"), ("c51", "CartPole-v1")}
    with pytest.raises(AnalysisError, match="nope"):
        resolve_group_keys(variant_runs, ["nope"])


def test_runs_without_results_are_listed_not_aggregated(tmp_path: Path) -> None:
    """A run without results.json (still running, or killed) has no final score yet."""
    root = tmp_path / "live"
    for seed, final in enumerate((100.0, 200.0)):
        make_run(root / f"done{seed}", algo="dqn", env_id="CartPole-v1", seed=seed, final=final)
    live = make_run(root / "live", algo="dqn", env_id="CartPole-v1", seed=2, final=500.0)
    (live / "results.json").unlink()
    out = tmp_path / "live_report"
    assert main([str(root), "--out", str(out), "--reps", "50"]) == 0
    (row,) = read_csv(out / "summary.csv")
    assert row["n_runs"] == "2" and float(row["mean"]) == pytest.approx(0.3)
    (unknown,) = [r for r in read_csv(out / "runs.csv") if r["status"] == "unknown"]
    assert unknown["used"] == "no" and "still running, or killed" in unknown["note"]
    # asked for explicitly, it enters with its last logged evaluation
    out_all = tmp_path / "live_all"
    assert main([str(root), "--out", str(out_all), "--reps", "50", "--exclude-status", ""]) == 0
    (row,) = read_csv(out_all / "summary.csv")
    assert row["n_runs"] == "3" and float(row["mean"]) == pytest.approx(0.5333333333)


# ---------------------------------------------------------- default grouping: what differs
DOUBLE_FINALS = {"true": (480.0, 490.0, 500.0), "false": (300.0, 350.0, 400.0)}


def make_double_sweep(root: Path) -> Path:
    """``rlbench -m experiment=dqn_cartpole algo.double=true,false seed=0,1,2`` as Hydra lays
    it out: 2 x 3 jobs that differ in ``algo.double`` and the seed only, apart from keys that
    follow the seed (``env.kwargs.nan_after: ${seed}``, tags, checkpointing)."""
    sweep = root / "multirun" / "2026-02-02" / "10-00-00"
    job = 0
    for double, finals in DOUBLE_FINALS.items():
        for seed, final in enumerate(finals):
            run = make_run(
                sweep / f"{job}_dqn-CartPole-v1_algo.double_{double}__experiment_dqn_seed{seed}",
                algo="dqn",
                env_id="CartPole-v1",
                seed=seed,
                final=final,
                algo_keys={"double": double == "true", "lr": 1e-3},
            )
            config = yaml.safe_load((run / ".hydra" / "config.yaml").read_text())
            config["env"]["kwargs"] = {"nan_after": "${seed}"}
            (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
            job += 1
    return sweep


def test_default_groups_are_the_swept_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sweep = make_double_sweep(tmp_path)
    out = tmp_path / "double_report"
    assert main([str(sweep), "--out", str(out), "--reps", "50"]) == 0
    stdout = capsys.readouterr().out
    assert "2 groups" in stdout and "duplicate seeds" not in stdout
    rows = {r["group"]: r for r in read_csv(out / "summary.csv")}
    assert set(rows) == {"algo.double=false", "algo.double=true"}
    for double, row in ((d, rows[f"algo.double={d}"]) for d in DOUBLE_FINALS):
        assert row["algo.double"] == double
        assert (row["algo.name"], row["env.id"]) == ("dqn", "CartPole-v1")
        assert (row["n_runs"], row["runs_per_task"], row["n_dropped"]) == ("3", "3", "0")
        expected = np.array(DOUBLE_FINALS[double]) / 500.0
        assert float(row["mean"]) == pytest.approx(expected.mean())
    runs = read_csv(out / "runs.csv")
    by_group: dict[str, list[str]] = {}
    for run in runs:
        assert run["used"] == "yes"
        by_group.setdefault(run["group"], []).append(run["seed"])
    assert by_group == {"algo.double=false": ["0", "1", "2"], "algo.double=true": ["0", "1", "2"]}
    page = (out / "index.html").read_text(encoding="utf-8")
    assert "duplicate seeds" not in page
    assert "<td>algo.double=true</td>" in page and "<td>algo.double=false</td>" in page
    poi = read_csv(out / "probability_of_improvement.csv")
    assert {(r["x"], r["y"]) for r in poi} == {
        ("algo.double=false", "algo.double=true"),
        ("algo.double=true", "algo.double=false"),
    }


def test_group_by_still_wins_over_the_swept_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sweep = make_double_sweep(tmp_path)
    out = tmp_path / "by_algo"
    assert main([str(sweep), "--out", str(out), "--reps", "50", "--group-by", "algo.name"]) == 0
    assert "duplicate seeds on CartPole-v1" in capsys.readouterr().out  # what was asked for
    (row,) = read_csv(out / "summary.csv")
    assert (row["group"], row["algo.name"], row["n_runs"]) == ("dqn", "dqn", "6")
    assert "algo.double" not in row
    # several keys: one label part per key, joined by ", "
    out2 = tmp_path / "by_two"
    rc = main([str(sweep), "--out", str(out2), "--reps", "50", "--group-by", "algo.double,algo.lr"])
    assert rc == 0
    assert {r["group"] for r in read_csv(out2 / "summary.csv")} == {
        "algo.double=false, algo.lr=0.001",
        "algo.double=true, algo.lr=0.001",
    }


def test_grouping_api_follows_keys_and_skips_copies(tmp_path: Path) -> None:
    """Keys that follow the algo (ddqn sets algo.double) add nothing; explicit keys are kept."""
    for algo, double in (("dqn", False), ("ddqn", True)):
        for seed in range(2):
            make_run(
                tmp_path / f"{algo}{seed}",
                algo=algo,
                env_id="CartPole-v1",
                seed=seed,
                final=100.0,
                algo_keys={"double": double, "_target_": f"rlbench.algos.dqn.{algo.upper()}"},
            )
    runs = discover_runs([str(tmp_path)])
    grouping = resolve_grouping(runs)
    assert grouping.keys == ("algo.name", "env.id") and grouping.shown == ("algo.name",)
    assert set(group_runs(runs)) == {("ddqn", "CartPole-v1"), ("dqn", "CartPole-v1")}
    assert grouping.label(("ddqn", "CartPole-v1")) == "ddqn"
    # named explicitly, a component's class reads as its class name
    explicit = resolve_grouping(runs, ["algo._target_", "algo.double"])
    assert not explicit.default
    assert explicit.label(("rlbench.algos.dqn.DDQN", "true")) == "algo=DDQN, algo.double=true"
    # nothing differs but the seed: one group, named by algo and env
    same = [r for r in runs if config_value(r, "algo.name") == "dqn"]
    one = resolve_grouping(same)
    assert one.keys == ("algo.name", "env.id")
    assert one.label(("dqn", "CartPole-v1")) == "dqn, CartPole-v1"


# ----------------------------------------------------------------------- evaluation policy
def test_eval_policy_per_group(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """results.json's eval_deterministic: absent (older runs) counts as greedy."""
    root = tmp_path / "policies"
    policies: dict[str, tuple[bool | None, ...]] = {
        "old": (None, None),  # written before the key existed
        "greedy": (True, None),
        "sampled": (False, False),
        "mixed": (True, False),
    }
    for algo, flags in policies.items():
        for seed, flag in enumerate(flags):
            make_run(
                root / f"{algo}{seed}",
                algo=algo,
                env_id="CartPole-v1",
                seed=seed,
                final=100.0 + seed,
                eval_deterministic=flag,
            )
    out = tmp_path / "policy_report"
    assert main([str(root), "--out", str(out), "--reps", "20"]) == 0
    stdout = capsys.readouterr().out
    rows = {r["group"]: r["eval_policy"] for r in read_csv(out / "summary.csv")}
    assert rows == {"old": "greedy", "greedy": "greedy", "sampled": "sampled", "mixed": "mixed"}
    runs = {(r["group"], r["seed"]): r["eval_policy"] for r in read_csv(out / "runs.csv")}
    assert runs["mixed", "0"] == "greedy" and runs["mixed", "1"] == "sampled"
    assert runs["old", "0"] == "greedy"
    assert "group mixed mixes greedy and sampled evaluations" in stdout
    assert "groups differ in evaluation policy" in stdout
    page = (out / "index.html").read_text(encoding="utf-8")
    assert "<th>eval policy</th>" in page and "<td>sampled</td>" in page
    # the config's trainer.eval_deterministic stands in for a results.json without it
    run = discover_runs([str(root / "old0")])[0]
    assert run.eval_deterministic
    run.config["trainer"]["eval_deterministic"] = False
    assert not run.eval_deterministic
    run.results = {"status": "completed", "eval_deterministic": True}
    assert run.eval_deterministic  # results.json wins


def test_same_policy_everywhere_adds_no_note(sweep: Path) -> None:
    analysis = analyze(discover_runs([str(sweep)]), reps=20)
    assert {g.eval_policy for g in analysis.groups} == {"greedy"}
    assert not any("evaluation" in note for note in analysis.notes)
