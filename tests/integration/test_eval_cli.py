"""``rlbench-eval``: evaluating a finished run reproduces its own evaluations to the bit
(deterministic and sampled policies, MuJoCo observation normalization from the checkpoint),
writes ``eval/<time>.json`` (and mp4s) without touching the run, exports a policy file with
only what the actor reads, and fails in one line (exit status 2) on user errors."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.stats
import torch

import rlbench
from rlbench.callbacks.video import read_video
from rlbench.evaluate import run
from tests.conftest import DEBUG, ROOT, train_in_process

SMALL = [*DEBUG, "network.hidden=[16,16]", "trainer.eval_episodes=5"]


def train(run_dir: Path, *args: str) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    results = train_in_process(run_dir, list(args))
    assert results["status"] == "completed", results
    (run_dir / "results.json").write_text(json.dumps(results))  # as the CLI does
    return run_dir


@pytest.fixture(scope="module")
def dqn_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train(tmp_path_factory.mktemp("dqn"), *SMALL, "total_env_steps=1500")


def final_eval_row(run_dir: Path) -> dict[str, str]:
    with (run_dir / "metrics.csv").open(newline="") as f:
        return [r for r in csv.DictReader(f) if r.get("eval/return_mean")][-1]


def fingerprint(run_dir: Path) -> dict[str, str]:
    """Every file of the run outside ``eval/``, by content."""
    return {
        str(p.relative_to(run_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(run_dir.rglob("*"))
        if p.is_file() and p.relative_to(run_dir).parts[0] != "eval"
    }


def evaluate_cli(
    run_dir: Path, *args: str, capsys: pytest.CaptureFixture[str]
) -> tuple[dict[str, Any], str]:
    before = set((run_dir / "eval").glob("*.json")) if (run_dir / "eval").exists() else set()
    assert run([str(run_dir), *args]) == 0
    out = capsys.readouterr().out
    (new,) = set((run_dir / "eval").glob("*.json")) - before
    return json.loads(new.read_text()), out


def test_eval_reproduces_the_runs_final_evaluation_and_leaves_the_run_alone(
    dqn_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = json.loads((dqn_run / "results.json").read_text())
    before = fingerprint(dqn_run)
    out, printed = evaluate_cli(dqn_run, capsys=capsys)
    assert fingerprint(dqn_run) == before  # training state, results.json, metrics untouched
    assert out["checkpoint"] == "last" and out["checkpoint_env_step"] == 1500
    assert out["episodes"] == 5 and out["seed"] == 0 and out["deterministic"] is True
    assert out["return_mean"] == results["eval_return_mean"]  # exactly
    assert out["return_std"] == results["eval_return_std"]
    assert repr(out["return_mean"]) == final_eval_row(dqn_run)["eval/return_mean"]
    returns = np.array(out["returns"])
    assert len(returns) == 5 and out["return_mean"] == float(returns.mean())
    assert out["return_iqm"] == pytest.approx(scipy.stats.trim_mean(returns, 0.25))
    assert "IQM" in printed and f"{out['return_mean']:.6g}" in printed


@pytest.mark.parametrize(
    "name,args",
    [
        (
            "ppo_sampled",
            ["algo=ppo", "algo.num_steps=64", "trainer.eval_deterministic=false"],
        ),
        (
            "sac",
            ["algo=sac", "env=pendulum", "algo.learning_starts=100", "total_env_steps=400"],
        ),
        (
            "ppo_mujoco_normalized",
            ["algo=ppo", "env=inverted_pendulum", "env.normalize_obs=true", "algo.num_steps=64"],
        ),
    ],
)
def test_eval_reproduces_other_algorithms_and_envs(
    name: str, args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A sampled policy (the run's eval_deterministic=false: the same draws again), SAC on
    Box actions, and MuJoCo observation normalization, whose statistics come from the
    training envs saved in the checkpoint."""
    base = [a for a in SMALL if not (args[0] == "algo=ppo" and a.startswith("algo."))]
    run_dir = train(tmp_path / name, *base, "total_env_steps=1000", *args)
    results = json.loads((run_dir / "results.json").read_text())
    out, _ = evaluate_cli(run_dir, capsys=capsys)
    assert out["return_mean"] == results["eval_return_mean"], (out, results)
    assert out["deterministic"] is results["eval_deterministic"]
    best, _ = evaluate_cli(run_dir, "--checkpoint", "best", capsys=capsys)
    assert best["checkpoint_env_step"] == results["best_eval_step"]
    assert best["return_mean"] == results["best_eval_return_mean"]
    if name == "ppo_sampled":  # another seed, other episodes and draws
        other, _ = evaluate_cli(run_dir, "--seed", "1", capsys=capsys)
        assert other["seed"] == 1 and other["returns"] != out["returns"]
        greedy, _ = evaluate_cli(run_dir, "--deterministic", capsys=capsys)
        assert greedy["deterministic"] is True


def test_episodes_seed_and_env_overrides(dqn_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, _ = evaluate_cli(
        dqn_run,
        "--episodes",
        "3",
        "--seed",
        "4",
        "--env-override",
        "max_episode_steps=7",
        capsys=capsys,
    )
    assert out["episodes"] == 3 and out["seed"] == 4 and len(out["returns"]) == 3
    assert out["env_overrides"] == ["max_episode_steps=7"]
    assert max(out["returns"]) <= 7  # CartPole pays 1 a step: the new time limit holds


def test_video_writes_mp4s_beside_the_json(
    dqn_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, printed = evaluate_cli(dqn_run, "--video", "--episodes", "2", capsys=capsys)
    assert len(out["videos"]) == 2
    for video in out["videos"]:
        path = dqn_run / video
        assert path.parent == dqn_run / "eval" and path.suffix == ".mp4"
        assert read_video(path).shape[0] >= 2
        assert str(path) in printed


def test_export_holds_only_what_the_actor_reads_and_acts_the_same(
    dqn_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "policy.pt"
    assert run([str(dqn_run), "--export", str(path)]) == 0
    assert "exported" in capsys.readouterr().out
    assert not (dqn_run / "eval").exists() or not list((dqn_run / "eval").glob("*policy*"))

    blob = torch.load(path, weights_only=True)
    full = torch.load(dqn_run / "checkpoints" / "last.ckpt", weights_only=True)
    assert not {"optimizer_states", "callbacks", "loops", "lr_schedulers"} & set(blob)
    assert not [k for k in blob if k.endswith("DataModule")]
    weights = blob["state_dict"]
    assert weights and all(k.startswith("q_net.") for k in weights)  # no target network
    assert sorted(blob["omitted"]) == sorted(
        k for k in full["state_dict"] if k.startswith("target_net.")
    )
    for k, v in weights.items():
        assert torch.equal(v, full["state_dict"][k])
    assert isinstance(blob["config"], dict) and blob["config"]["env"]["id"] == "CartPole-v1"
    assert blob["observation_space"]["type"] == "Box" and blob["action_space"]["n"] == 2

    for deterministic in (True, False):  # the greedy policy and epsilon's draws alike
        exported = rlbench.load(path, num_envs=64, deterministic=deterministic)
        loaded = rlbench.load(dqn_run, "last", num_envs=64, deterministic=deterministic)
        assert exported.observation_space == loaded.observation_space
        rng = np.random.default_rng(0)
        first = np.ones(64, dtype=np.bool_)
        for _ in range(5):
            obs = rng.normal(size=(64, 4)).astype(np.float32) * [2.0, 2.0, 0.2, 2.0]
            a, b = exported.act(obs, first=first), loaded.act(obs, first=first)
            np.testing.assert_array_equal(a, b)
            first[:] = False


def test_export_of_sac_leaves_out_the_critics(tmp_path: Path) -> None:
    run_dir = train(
        tmp_path / "sac",
        *SMALL,
        "algo=sac",
        "env=pendulum",
        "algo.learning_starts=100",
        "total_env_steps=300",
        "trainer.eval_episodes=1",
    )
    path = tmp_path / "sac.pt"
    assert run([str(run_dir), "--export", str(path)]) == 0
    blob = torch.load(path, weights_only=True)
    assert blob["state_dict"] and all(k.startswith("actor.") for k in blob["state_dict"])
    assert any(k.startswith("critic.") for k in blob["omitted"]) and "log_alpha" in blob["omitted"]
    exported, loaded = rlbench.load(path, num_envs=16), rlbench.load(run_dir, "last", num_envs=16)
    obs = np.random.default_rng(1).uniform(-1, 1, size=(16, 3)).astype(np.float32)
    first = np.ones(16, dtype=np.bool_)
    np.testing.assert_array_equal(exported.act(obs, first=first), loaded.act(obs, first=first))


# ------------------------------------------------------------------ errors
def copy_parts(src: Path, dst: Path, *parts: str) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for part in parts:
        if (src / part).is_dir():
            shutil.copytree(src / part, dst / part)
        else:
            (dst / part).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src / part, dst / part)
    return dst


@pytest.mark.parametrize(
    "case,expected",
    [
        ("missing", "no such run directory"),
        ("empty", "not a run dir (no .hydra/config.yaml)"),
        ("no_checkpoint", "no checkpoint checkpoints/last.ckpt"),
        ("no_best", "no checkpoint checkpoints/best.ckpt"),
        ("corrupt", "corrupt checkpoint"),
        ("obs_shape", "does not fit the network built for this env"),
        ("unknown_env_key", "the run's env has no key 'nosuchkey'"),
        ("bad_env_value", "unknown env.id 'NoSuchEnv-v0'"),
    ],
)
def test_user_errors_are_one_line_with_exit_status_2(
    case: str,
    expected: str,
    dqn_run: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    target, extra = tmp_path / "run", []
    if case == "empty":
        target.mkdir()
    elif case == "no_checkpoint":
        copy_parts(dqn_run, target, ".hydra")
    elif case == "no_best":
        copy_parts(dqn_run, target, ".hydra", "checkpoints/last.ckpt")
        extra = ["--checkpoint", "best"]
    elif case == "corrupt":
        copy_parts(dqn_run, target, ".hydra", "checkpoints/last.ckpt")
        data = (target / "checkpoints" / "last.ckpt").read_bytes()
        (target / "checkpoints" / "last.ckpt").write_bytes(data[: len(data) // 2])
    elif case in ("obs_shape", "unknown_env_key", "bad_env_value"):
        target = dqn_run
        override = {
            "obs_shape": "id=Acrobot-v1",  # 6 observations, 3 actions: not CartPole's net
            "unknown_env_key": "nosuchkey=1",
            "bad_env_value": "env.id=NoSuchEnv-v0",
        }[case]
        extra = ["--env-override", override]
    evals_before = sorted((dqn_run / "eval").glob("*")) if (dqn_run / "eval").exists() else []
    assert run([str(target), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert expected in err, err
    after = sorted((dqn_run / "eval").glob("*")) if (dqn_run / "eval").exists() else []
    assert after == evals_before  # nothing written


def test_console_script_entry(dqn_run: Path, tmp_path: Path) -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["rlbench-eval"] == "rlbench.evaluate:main"
    ok = subprocess.run(
        [sys.executable, "-m", "rlbench.evaluate", str(dqn_run), "--episodes", "1"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "return mean" in ok.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "rlbench.evaluate", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert bad.returncode == 2
    assert bad.stderr.startswith("error: ") and bad.stderr.count("\n") == 1, bad.stderr
