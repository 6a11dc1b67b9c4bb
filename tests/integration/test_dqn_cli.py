"""DQN x CartPole composed through Hydra with ``trainer=debug``: the real CLI end to end."""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from rlbench.errors import CheckpointError, ConfigError, NonFiniteLossError
from tests.conftest import DEBUG, ROOT, resume_in_process, run_cli, train_in_process

RESULT_KEYS = {
    "status",
    "eval_deterministic",
    "env_steps",
    "eval_return_mean",
    "eval_return_std",
    "eval_episodes",
    "best_eval_step",
    "best_eval_return_mean",
    "best_checkpoint",
    "wall_time_s",
}


def read_metrics(run_dir: Path, *, drop_perf: bool = True) -> list[dict[str, str]]:
    with (run_dir / "metrics.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    if drop_perf:  # wall-clock throughput is the one thing that cannot repeat
        rows = [{k: v for k, v in r.items() if not k.startswith("perf/")} for r in rows]
    return rows


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    return ckpt["state_dict"]


def train(run_dir: Path, *extra: str) -> dict[str, object]:
    run_dir.mkdir(parents=True, exist_ok=True)
    return train_in_process(run_dir, [*DEBUG, *extra])


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One uninterrupted 2,000-step run shared by the tests below."""
    d = tmp_path_factory.mktemp("straight")
    proc = run_cli([*DEBUG, f"hydra.run.dir={d}", "total_env_steps=2000", "logger=tensorboard"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    return d


def test_files_and_metrics_written(straight: Path) -> None:
    assert (straight / ".hydra" / "config.yaml").is_file()
    assert (straight / "checkpoints" / "last.ckpt").is_file()
    assert list((straight / "tensorboard").glob("events.out.tfevents.*"))
    results = json.loads((straight / "results.json").read_text())
    assert set(results) == RESULT_KEYS
    assert results["status"] == "completed" and results["env_steps"] == 2000
    assert results["eval_episodes"] == 2 and results["eval_return_mean"] > 0

    rows = read_metrics(straight, drop_perf=False)
    columns = set(rows[0])
    for name in (
        "env_step",
        "train/loss",
        "train/q_mean",
        "train/epsilon",
        "rollout/episode_return",
        "rollout/episode_length",
        "eval/return_mean",
        "perf/env_steps_per_s",
    ):
        assert name in columns, name
    steps = [int(r["env_step"]) for r in rows]
    assert steps == sorted(steps) and steps[-1] == 2000
    losses = [float(r["train/loss"]) for r in rows if r["train/loss"]]
    assert losses and all(math.isfinite(v) for v in losses)
    evals = [int(r["env_step"]) for r in rows if r["eval/return_mean"]]
    assert evals == [500, 1000, 1500, 2000]
    eps = [float(r["train/epsilon"]) for r in rows if r["train/epsilon"]]
    assert eps == sorted(eps, reverse=True) and eps[0] < 1.0


def test_resume_is_identical_to_a_straight_run(straight: Path, tmp_path: Path) -> None:
    half = tmp_path / "half"
    train(half, "total_env_steps=1000")
    proc = run_cli(["resume=" + str(half), "total_env_steps=2000"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert read_metrics(half) == read_metrics(straight)
    a, b = weights(half), weights(straight)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert json.loads((half / "results.json").read_text())["env_steps"] == 2000


def test_resume_from_a_mid_run_checkpoint_drops_later_rows(tmp_path: Path) -> None:
    """A run killed after a checkpoint logged rows past it; resume must not keep them."""
    d = tmp_path / "killed"
    train(d, "total_env_steps=1000", "trainer.checkpoint_every=400")
    # simulate the kill: restore the checkpoint of env step 400 by re-running to 400 only
    ref = tmp_path / "ref"
    train(ref, "total_env_steps=1000", "trainer.checkpoint_every=400")
    first = tmp_path / "first"
    train(first, "total_env_steps=400", "trainer.checkpoint_every=400")
    (d / "checkpoints" / "last.ckpt").write_bytes(
        (first / "checkpoints" / "last.ckpt").read_bytes()
    )
    resume_in_process(d, [])
    assert read_metrics(d) == read_metrics(ref)


def test_same_seed_same_numbers(straight: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    train(again, "total_env_steps=2000")
    assert read_metrics(again) == read_metrics(straight)


def test_other_seed_other_numbers(straight: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    train(other, "total_env_steps=2000", "seed=1")
    assert read_metrics(other) != read_metrics(straight)


def test_direct_optimizer_step_matches_lightnings_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A callback that defines ``on_before_optimizer_step`` sees every gradient step (they go
    through Lightning's optimizer wrapper), and a run with it counts ``global_step`` and gives
    the same numbers as one without."""
    from rlbench.callbacks import MetricsFlush

    direct = tmp_path / "direct"
    train(direct)
    calls: list[int] = []
    monkeypatch.setattr(
        MetricsFlush,
        "on_before_optimizer_step",
        lambda self, trainer, module, optimizer: calls.append(trainer.global_step),
        raising=False,
    )
    hooked = tmp_path / "hooked"
    train(hooked)
    steps = (1000 - 200) // 4  # algo=dqn: one gradient step per 4 env steps from 200
    assert calls == list(range(steps))
    for d in (direct, hooked):
        ckpt = torch.load(d / "checkpoints" / "last.ckpt", weights_only=True)
        assert ckpt["global_step"] == steps
    assert read_metrics(direct) == read_metrics(hooked)
    for k, v in weights(direct).items():
        assert torch.equal(v, weights(hooked)[k]), k


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("total_env_steps=-5", "total_env_steps=-5: must be > 0"),
        ("env.id=CartPol-v1", "unknown env.id 'CartPol-v1'; closest registered ids: CartPole-v1"),
        ("env=pendulum", "algo=dqn needs a Discrete action space; this env has Box"),
        ("algo.gamma=1.5", "algo.gamma=1.5: must be in [0, 1]"),
        ("buffer.capacity=1", "buffer.capacity=1: must hold at least 2 steps per env"),
        ("sampler.start=2", "sampler.start=2.0: epsilon must be in [0, 1]"),
    ],
)
def test_bad_values_raise_config_errors(override: str, expected: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        train(tmp_path, override)
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_bad_value_on_the_command_line_is_one_line_and_recorded(tmp_path: Path) -> None:
    proc = run_cli([*DEBUG, f"hydra.run.dir={tmp_path}", "env.id=CartPol-v1"])
    assert proc.returncode == 2
    assert "unknown env.id 'CartPol-v1'" in one_line_error(proc)
    assert json.loads((tmp_path / "results.json").read_text())["status"] == "failed"


def test_misspelt_key_is_named_by_hydra(tmp_path: Path) -> None:
    proc = run_cli([*DEBUG, f"hydra.run.dir={tmp_path}", "algo.gama=0.9"])
    assert proc.returncode != 0
    assert "gama" in proc.stderr and "not in" in proc.stderr


def test_env_id_override_without_new_yaml(tmp_path: Path) -> None:
    results = train(tmp_path, "env.id=MountainCar-v0", "total_env_steps=300")
    assert results["status"] == "completed" and results["eval_return_mean"] == -200.0


def test_corrupt_or_missing_checkpoint_on_resume(tmp_path: Path) -> None:
    d = tmp_path / "run"
    train(d, "total_env_steps=300")
    ckpt = d / "checkpoints" / "last.ckpt"
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    saved = {p: p.read_bytes() for p in d.rglob("*") if p.is_file()}
    proc = run_cli(["resume=" + str(d), "total_env_steps=600"])
    assert proc.returncode == 2
    assert one_line_error(proc).startswith(f"error: corrupt checkpoint {ckpt}")
    assert {p: p.read_bytes() for p in saved} == saved  # nothing already saved is lost
    ckpt.unlink()
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        resume_in_process(d, [])
    proc = run_cli(["resume=" + str(tmp_path / "nope")])
    assert proc.returncode == 2 and "no such run directory" in one_line_error(proc)


def test_resume_refuses_group_changes(tmp_path: Path) -> None:
    train(tmp_path, "total_env_steps=300")
    with pytest.raises(ConfigError, match="cannot change config group 'env=acrobot'"):
        resume_in_process(tmp_path, ["env=acrobot"])


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path: Path) -> None:
    # NaN rewards start after 700 env steps; a checkpoint is written every 500
    with pytest.raises(NonFiniteLossError) as info:
        train(
            tmp_path,
            "env.id=rlbench_test_envs:NaNReward-v0",
            "trainer.eval_every=0",
            "total_env_steps=1000",
        )
    line = str(info.value)
    assert "non-finite loss train/loss at update" in line and "last good checkpoint" in line
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["ReplayDataModule"]["env_steps"] == 500
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values())


def test_ctrl_c_saves_and_exits_cleanly_then_resumes(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rlbench.cli",
            *DEBUG,
            f"hydra.run.dir={tmp_path}",
            "total_env_steps=200000",
            "trainer.checkpoint_every=0",
            "trainer.eval_every=0",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while not (tmp_path / "metrics.csv").exists() and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err and "continue with: rlbench resume=" in err
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["status"] == "interrupted"
    stopped_at = results["env_steps"]
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["ReplayDataModule"]["env_steps"] == stopped_at < 200000
    done = resume_in_process(tmp_path, [f"total_env_steps={stopped_at + 300}"])
    assert done["env_steps"] == stopped_at + 300
    # identical to a run that was never interrupted (unflushed metrics travel in the ckpt)
    straight = tmp_path.parent / "never_interrupted"
    train(
        straight,
        f"total_env_steps={stopped_at + 300}",
        "trainer.checkpoint_every=0",
        "trainer.eval_every=0",
    )
    assert read_metrics(tmp_path) == read_metrics(straight)
    a, b = weights(tmp_path), weights(straight)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_fresh_run_refuses_a_dir_that_holds_a_run(tmp_path: Path) -> None:
    train(tmp_path, "total_env_steps=300")
    before = (tmp_path / "metrics.csv").read_bytes()
    with pytest.raises(ConfigError, match="already holds a run; continue it with resume="):
        train(tmp_path, "total_env_steps=300")
    assert (tmp_path / "metrics.csv").read_bytes() == before


def test_refused_start_on_the_command_line_keeps_the_saved_results(tmp_path: Path) -> None:
    train(tmp_path, "total_env_steps=300")
    (tmp_path / "results.json").write_text('{"status": "completed"}')
    saved = (tmp_path / "results.json").read_bytes()
    proc = run_cli([*DEBUG, f"hydra.run.dir={tmp_path}", "total_env_steps=300"])
    assert proc.returncode == 2 and "already holds a run" in one_line_error(proc)
    assert (tmp_path / "results.json").read_bytes() == saved
