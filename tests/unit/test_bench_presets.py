"""The presets benchmark (``scripts/bench_presets.py``) on fabricated runs: the resume skip,
and the results page written through ``rlbench-report`` (no training)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import bench_presets

# preset -> (algo.name, env.id, final eval per seed)
FAKE = {
    "dqn_acrobot": ("dqn", "Acrobot-v1", [-90.0, -80.0, -70.0, -75.0, -85.0]),
    "ppo_acrobot": ("ppo", "Acrobot-v1", [-100.0, -60.0, -65.0, -70.0, -500.0]),
    "dqn_lunarlander": ("dqn", "LunarLander-v3", [210.0, 150.0, 230.0, 190.0, 250.0]),
    "ppo_mujoco@hopper": ("ppo", "Hopper-v5", [2000.0, 2100.0, 2200.0, 2300.0, 2400.0]),
}


def fabricate(
    run_dir: Path,
    *,
    algo: str,
    env_id: str,
    seed: int,
    final: float,
    status: str = "completed",
    wall_s: float | None = 60.0,
) -> None:
    """A run dir as ``rlbench`` and this script leave it: config, metrics, results, sidecar."""
    (run_dir / ".hydra").mkdir(parents=True)
    config = {
        "seed": seed,
        "total_env_steps": 2000,
        "algo": {"name": algo},
        "env": {"id": env_id, "name": env_id.split("-")[0].lower()},
    }
    (run_dir / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    rows = ["env_step,eval/return_mean", f"1000,{final - 10}", f"2000,{final}"]
    (run_dir / "metrics.csv").write_text("\n".join(rows) + "\n")
    results = {"status": status, "env_steps": 2000, "eval_return_mean": final}
    (run_dir / "results.json").write_text(json.dumps(results))
    if wall_s is not None:
        sidecar = {"wall_s": wall_s, "machine": "Test CPU, 2 cores"}
        (run_dir / bench_presets.SIDECAR).write_text(json.dumps(sidecar))


def fabricate_seeds(folder: Path, *, algo: str, env_id: str, finals: list[float]) -> None:
    """Completed runs ``folder/seed<k>`` with final scores ``finals[k]``, the k-th run
    taking 60 + 30 k seconds."""
    for seed, final in enumerate(finals):
        fabricate(
            folder / f"seed{seed}",
            algo=algo,
            env_id=env_id,
            seed=seed,
            final=final,
            wall_s=60.0 + 30.0 * seed,
        )


def fake_runs(out: Path) -> None:
    for preset, (algo, env_id, finals) in FAKE.items():
        fabricate_seeds(out / preset, algo=algo, env_id=env_id, finals=finals)


def test_a_completed_run_is_skipped_and_others_run(tmp_path: Path) -> None:
    calls: list[list[str]] = []

    def runner(args: list[str]) -> int:
        calls.append(args)
        run_dir = Path(next(a.split("=", 1)[1] for a in args if a.startswith("hydra.run.dir=")))
        run_dir.mkdir(parents=True)
        (run_dir / "results.json").write_text(json.dumps({"status": "completed"}))
        return 0

    done = tmp_path / "done"
    fabricate(done, algo="dqn", env_id="Acrobot-v1", seed=0, final=-80.0)
    assert bench_presets.run_one("dqn_acrobot", 0, done, runner=runner) == "skipped"
    assert calls == []

    failed = tmp_path / "failed"
    fabricate(failed, algo="dqn", env_id="Acrobot-v1", seed=1, final=-80.0, status="failed")
    action = bench_presets.run_one("dqn_acrobot", 1, failed, extra=["x=1"], runner=runner)
    assert action == "started" and len(calls) == 1
    assert calls[0][:2] == ["experiment=dqn_acrobot", "seed=1"] and "x=1" in calls[0]
    assert bench_presets.run_status(failed) == "completed"
    assert json.loads((failed / bench_presets.SIDECAR).read_text())["wall_s"] >= 0
    # the rerun skips it now
    assert bench_presets.run_one("dqn_acrobot", 1, failed, runner=runner) == "skipped"
    assert len(calls) == 1


def test_an_interrupted_run_with_a_checkpoint_resumes_and_adds_its_wall_time(
    tmp_path: Path,
) -> None:
    run_dir = tmp_path / "run"
    fabricate(run_dir, algo="dqn", env_id="Acrobot-v1", seed=0, final=-80.0, status="interrupted")
    (run_dir / "checkpoints").mkdir()
    (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"")
    calls: list[list[str]] = []
    action = bench_presets.run_one("dqn_acrobot", 0, run_dir, runner=lambda a: calls.append(a) or 0)
    assert action == "resumed" and calls == [[f"resume={run_dir}"]]
    assert json.loads((run_dir / bench_presets.SIDECAR).read_text())["wall_s"] >= 60.0


def test_threads_reach_a_started_and_a_resumed_run_alike(tmp_path: Path) -> None:
    """``--threads`` is an execution override: given when a run starts and again when it
    resumes (a resume re-reads the run's own config), unlike ``--quick``'s extras."""
    stopped = tmp_path / "dqn_acrobot" / "seed0"
    fabricate(stopped, algo="dqn", env_id="Acrobot-v1", seed=0, final=-80.0, status="interrupted")
    (stopped / "checkpoints").mkdir()
    (stopped / "checkpoints" / "last.ckpt").write_bytes(b"")
    calls: list[list[str]] = []
    bench_presets.run_all(
        ["dqn_acrobot"],
        [0, 1],
        tmp_path,
        jobs=1,
        quick=False,
        threads=2,
        runner=lambda a: calls.append(a) or 0,
    )
    resumed, started = sorted(calls, key=lambda a: a[0].startswith("experiment="))
    assert resumed == [f"resume={stopped}", "trainer.torch_threads=2"]
    assert started[0] == "experiment=dqn_acrobot" and "seed=1" in started
    assert "trainer.torch_threads=2" in started
    assert started[-1] == f"hydra.run.dir={tmp_path / 'dqn_acrobot' / 'seed1'}"
    with pytest.raises(SystemExit):
        bench_presets.main(["--threads", "0"])


def test_a_run_killed_after_a_checkpoint_resumes_and_is_never_cleared(tmp_path: Path) -> None:
    """Killed outright (no ``results.json``) after a periodic checkpoint: the rerun
    continues it and the page says so; without a checkpoint it starts again."""
    run_dir = tmp_path / "tdmpc2_dmc@cartpole-swingup" / "seed0"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"weights")
    assert bench_presets.run_status(run_dir) == "missing" and bench_presets.resumable(run_dir)
    assert bench_presets.missing_note(run_dir.parent, [0, 1]) == (
        "no completed run (seed 0 stopped without a record after a checkpoint; the command "
        "resumes from there)"
    )
    calls: list[list[str]] = []
    action = bench_presets.run_one(
        "tdmpc2_dmc@cartpole-swingup", 0, run_dir, runner=lambda a: calls.append(a) or 0
    )
    assert action == "resumed" and calls == [[f"resume={run_dir}"]]
    assert (run_dir / "checkpoints" / "last.ckpt").read_bytes() == b"weights"
    fresh = tmp_path / "fresh"
    (fresh / "checkpoints").mkdir(parents=True)
    assert not bench_presets.resumable(fresh)  # no checkpoint: nothing to continue
    assert bench_presets.run_one("dqn_acrobot", 0, fresh, runner=lambda a: 0) == "started"


def test_a_stopped_seed_is_listed_with_its_last_evaluation(tmp_path: Path) -> None:
    """The metrics as ``rlbench`` logs them: training rows leave the eval columns empty,
    so the last evaluation is the last row that has one, not the last row."""
    run_dir = tmp_path / "seed0"
    fabricate(run_dir, algo="tdmpc2", env_id="x", seed=0, final=0.0, status="interrupted")
    rows = [
        "env_step,perf/env_steps_per_s,eval/return_mean",
        "49000,7.5,",
        "50000,,824.6",
        "50000,1.0,",
        "51000,7.6,",
    ]
    (run_dir / "metrics.csv").write_text("\n".join(rows) + "\n")
    assert bench_presets.last_eval(run_dir) == (50_000, 824.6)
    assert bench_presets.missing_note(tmp_path, [0]) == (
        "no completed run (seed 0 interrupted at 2,000 env steps, its last evaluation 824.6 "
        "at 50,000; the command resumes from there)"
    )
    (run_dir / "metrics.csv").write_text("\n".join(rows[:2]) + "\n")  # none yet
    assert bench_presets.last_eval(run_dir) is None
    assert "interrupted at 2,000 env steps; the command" in bench_presets.missing_note(
        tmp_path, [0]
    )


def test_the_page_has_every_number_from_the_runs(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    fake_runs(out)
    # the last two have no completed run: listed as not measured, with where an interrupted
    # run stopped (the report leaves it out of the statistics)
    presets = [*FAKE, "ppo_mountaincar", "ppo_cartpole", "dqn_mountaincar"]
    # 2 of the 5 seeds done: a row, but no verdict on the target yet
    fabricate_seeds(
        out / "dqn_mountaincar", algo="dqn", env_id="MountainCar-v0", finals=[-99.0, -98.0]
    )
    fabricate(
        out / "ppo_cartpole" / "seed0",
        algo="ppo",
        env_id="CartPole-v1",
        seed=0,
        final=500.0,
        status="interrupted",
    )
    # the peer (bench_zoo_sb3.py) ran dqn_acrobot on seeds 0-2 only
    peers = tmp_path / "peers"
    fabricate_seeds(
        peers / "dqn_acrobot", algo="dqn_sb3", env_id="Acrobot-v1", finals=[-100.0, -90.0, -80.0]
    )
    page = bench_presets.write_page(
        out,
        presets,
        [0, 1, 2, 3, 4],
        tmp_path / "docs" / "results.md",
        generated="2026-01-01",
        peers=peers,
    )
    text = page.read_text()
    assert "## Acrobot-v1" in text and "## LunarLander-v3" in text
    assert "Generated 2026-01-01" in text

    def row(preset: str) -> list[str]:
        line = next(line for line in text.splitlines() if line.startswith(f"| `{preset}`"))
        return [c.strip() for c in line.strip("|").split("|")]

    dqn = row("dqn_acrobot")
    # IQM of 5: drop the lowest and highest, mean the rest: (-85 - 80 - 75) / 3
    iqm = re.match(r"(-?[\d.]+) \[(-?[\d.]+), (-?[\d.]+)\]", dqn[3])
    assert iqm is not None
    point, lo, hi = map(float, iqm.groups())
    assert point == pytest.approx(-80.0) and -90.0 <= lo <= point <= hi <= -70.0
    assert dqn[1] == "2,000" and dqn[2] == "5 of 5"
    # the zoo's published DQN row, its source and the target verdict
    assert "-76.639" in dqn[4] and "rl-baselines3-zoo" in dqn[4]
    assert dqn[5] == "not met (≥ -76.639)"
    # the peer's IQM over its 3 seeds: the 25% trimmed mean of 3 runs trims none (int(0.75)
    # runs a side), so it is their mean, -90
    peer = re.match(r"SB3: (-?[\d.]+) \[(-?[\d.]+), (-?[\d.]+)\], seeds 0-2 \((.*)\)$", dqn[6])
    assert peer is not None and float(peer[1]) == pytest.approx(-90.0)
    assert peer[4] == "`python scripts/bench_zoo_sb3.py --presets dqn_acrobot --seeds 0-2`"
    assert row("ppo_acrobot")[6] == ""  # no peer runs
    assert dqn[7] == "2.0 min"  # mean of 60, 90, ..., 180 s
    assert dqn[8] == "Test CPU, 2 cores"
    assert dqn[9] == "`python scripts/bench_presets.py --presets dqn_acrobot --seeds 0-4`"
    partial = row("dqn_mountaincar")
    assert partial[2] == "2 of 5" and partial[5] == "pending: 2 of 5 seeds done (≥ -100.849)"
    lunar = row("dqn_lunarlander")
    assert lunar[3].startswith("210.0 ") and lunar[5] == "met (≥ 200)"
    assert "measured on v2" in lunar[4]
    assert (
        "- `ppo_mountaincar`: no completed run "
        "(`python scripts/bench_presets.py --presets ppo_mountaincar --seeds 0-4`)"
    ) in text
    assert (
        "- `ppo_cartpole`: no completed run (seed 0 interrupted at 2,000 env steps, its last "
        "evaluation 500.0 at 2,000; the command resumes from there) "
        "(`python scripts/bench_presets.py --presets ppo_cartpole "
        "--seeds 0-4`)"
    ) in text
    # a preset on another env of its family; target: CleanRL's mean minus one std
    hopper = row("ppo_mujoco@hopper")
    assert hopper[3].startswith("2200.0 ") and "CleanRL on v4" in hopper[4]
    assert hopper[5] == f"met (≥ {2382.86 - 271.74:g})"
    assert "--presets ppo_mujoco@hopper " in hopper[9]
    # the report's figures, copied small beside the page
    assert "![Learning curves](results/learning_curves.png)" in text
    png = tmp_path / "docs" / "results" / "learning_curves.png"
    assert png.is_file() and png.stat().st_size <= bench_presets.FIGURE_MAX_BYTES
    # every number on the page is one of: the runs' statistics, the reference table, the
    # wall times, the steps, the seeds -- no row without a completed run
    table = "\n".join(line for line in text.splitlines() if line.startswith("|"))
    assert "ppo_mountaincar`" not in table and "ppo_cartpole`" not in table


def test_a_dmc_page_names_the_budget_and_the_step_unit(tmp_path: Path) -> None:
    """DMC rows: the authors' numbers as reference, the 100k budget and the simulator-step
    unit under the table; TD-MPC2 without a completed run is listed as not measured."""
    out = tmp_path / "runs"
    fabricate_seeds(
        out / "sac_dmc@cartpole-swingup",
        algo="sac",
        env_id="dm_control/cartpole-swingup-v0",
        finals=[800.0, 840.0, 820.0],
    )
    presets = ["sac_dmc@cartpole-swingup", "tdmpc2_dmc@cartpole-swingup"]
    # no --seeds: each preset's own (the DMC comparison: the authors' 3)
    text = bench_presets.write_page(out, presets, None, tmp_path / "r.md").read_text()
    line = next(x for x in text.splitlines() if x.startswith("| `sac_dmc@cartpole-swingup`"))
    assert "| 820.0 [" in line and "835 ± 7.8 at 100k" in line and "| 3 of 3 |" in line
    assert "--presets sac_dmc@cartpole-swingup --seeds 0-2`" in line
    assert "the TD-MPC2 authors' SAC" in line and "nicklashansen/tdmpc2@e9f5932" in line
    # the report draws the authors' number on the task's curves: the row carries the env id
    from rlbench.analysis.stats import reference_scores

    (ref,) = reference_scores("dm_control/cartpole-swingup-v0", ["sac"])
    assert (ref.score, ref.env_steps) == (835.0, 100_000)
    assert "`sac_dmc` runs add `total_env_steps=100000 " in text
    assert "`tdmpc2_dmc` runs add `total_env_steps=100000 " in text
    assert "count simulator steps (action repeat 2" in text
    assert (
        "- `tdmpc2_dmc@cartpole-swingup`: no completed run (`python scripts/bench_presets.py "
        "--presets tdmpc2_dmc@cartpole-swingup --seeds 0-2`)"
    ) in text
    assert bench_presets.preset_seeds("tdmpc2_dmc@walker-walk", None) == (0, 1, 2)
    assert bench_presets.preset_seeds("dqn_acrobot", None) == (0, 1, 2, 3, 4)
    assert bench_presets.preset_seeds("sac_dmc@walker-walk", [4]) == (4,)  # --seeds wins
    # a page without DMC presets says none of it
    fake_runs(out)
    other = bench_presets.write_page(out, ["ppo_acrobot"], [0, 1, 2, 3, 4], tmp_path / "o.md")
    assert "runs add" not in other.read_text() and "simulator" not in other.read_text()


def test_a_single_preset_page_maps_its_runs(tmp_path: Path) -> None:
    """One preset: the report's paths are relative to that preset's folder."""
    out = tmp_path / "runs"
    fake_runs(out)
    page = bench_presets.write_page(out, ["ppo_acrobot"], [0, 1, 2, 3, 4], tmp_path / "r.md")
    line = next(x for x in page.read_text().splitlines() if x.startswith("| `ppo_acrobot`"))
    # IQM of -500, -100, -70, -65, -60: (-100 - 70 - 65) / 3
    assert f"{(-100 - 70 - 65) / 3:.1f} [" in line


def test_bad_options_are_one_line_errors(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        bench_presets.main(["--presets", "dqn_acrobat"])
    assert "unknown presets dqn_acrobat; allowed:" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench_presets.main(["--seeds", "0-x"])
    assert "bad seeds '0-x'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench_presets.main(["--jobs", "0"])
    assert "--jobs=0: must be >= 1" in capsys.readouterr().err


def test_a_preset_at_an_env_runs_the_preset_on_that_env() -> None:
    assert bench_presets.command("ppo_mujoco@walker2d", 3)[:3] == [
        "experiment=ppo_mujoco",
        "env=walker2d",
        "seed=3",
    ]
    assert bench_presets.command("dqn_acrobot", 0)[:2] == ["experiment=dqn_acrobot", "seed=0"]


def test_a_preset_at_a_dmc_task_runs_that_task_at_the_published_budget() -> None:
    """``tdmpc2_dmc@walker-walk``: the task is ``env.task`` (no env config of that name), the
    run stops at the authors' first published point, 100k env steps, and composes so."""
    from tests.conftest import compose_cfg

    args = bench_presets.command("tdmpc2_dmc@walker-walk", 1)
    assert args == [
        "experiment=tdmpc2_dmc",
        "env.task=walker-walk",
        "seed=1",
        "total_env_steps=100000",
        "trainer.eval_every=50000",
        "trainer.checkpoint_every=5000",
        *bench_presets.RUN_ARGS,
    ]
    cfg = compose_cfg(args)
    assert (cfg.env.id, cfg.algo.name, cfg.total_env_steps) == (
        "dm_control/walker-walk-v0",
        "tdmpc2",
        100_000,
    )
    assert bench_presets.command("sac_dmc@cartpole-swingup", 0)[1] == "env.task=cartpole-swingup"


def test_tdmpc2_target_is_the_authors_lowest_seed() -> None:
    """Issue 17's target, "within the authors' seed spread": at least their lowest seed; the
    per-seed scores average to the packaged published row."""
    preset = "tdmpc2_dmc@cartpole-swingup"
    cell = bench_presets.target_cell
    assert cell(preset, 790.0, 839.4, done=3, asked=3) == "met (≥ 789.8)"
    assert cell(preset, 789.0, 839.4, done=3, asked=3) == "not met (≥ 789.8)"
    # 1 of the 3 seeds the issue asks for on cartpole-swingup is no verdict; on walker-walk
    # the issue asks for at least 1
    assert cell(preset, 850.0, 839.4, done=1, asked=3) == "pending: 1 of 3 seeds done (≥ 789.8)"
    walker = "tdmpc2_dmc@walker-walk"
    assert cell(walker, 950.0, 961.9, done=1, asked=3) == "met (≥ 947.7)"
    assert cell(walker, 940.0, 961.9, done=0, asked=3) == "pending: 0 of 1 seeds done (≥ 947.7)"
    for preset, seeds in bench_presets.PUBLISHED_SEEDS.items():
        row = bench_presets.published_row(preset)
        assert row is not None and row.seeds == len(seeds)
        assert sum(seeds) / len(seeds) == pytest.approx(row.score, abs=0.05), preset


def test_default_presets_exist() -> None:
    measured = [
        *bench_presets.DEFAULT_PRESETS,
        *bench_presets.MUJOCO_PRESETS,
        *bench_presets.DMC_PRESETS,
    ]
    names = {bench_presets.split_preset(p)[0] for p in measured}
    assert names <= set(bench_presets.available_presets())
    assert set(bench_presets.REFERENCES) == set(measured)
    for preset in measured:
        _, score = bench_presets.reference_cell(preset)
        assert score is not None, preset  # each reference row is in the packaged table
