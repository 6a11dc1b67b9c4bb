"""SAC composed through Hydra with ``trainer=debug`` and small networks: HalfCheetah (6
torques in [-1, 1], 1000-step episodes that end by truncation) and InvertedPendulum (one
force in [-3, 3], short episodes that end by termination): the files and metrics a run
writes, resume after a Ctrl-C identical to a straight run, and the one-line error for an
env with discrete actions."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch

import rlbench.cli
from rlbench.errors import ConfigError
from tests.conftest import resume_in_process, run_cli, train_in_process

SMALL = [
    "algo=sac",
    "trainer=debug",
    "logger=csv",
    "network.hidden=[32,32]",
    "algo.batch_size=32",
    "algo.learning_starts=200",
]
# env -> (action dim, half-range of its action bounds)
ENVS = {"halfcheetah": (6, 1.0), "inverted_pendulum": (1, 3.0)}
RUN = ["total_env_steps=1000", "trainer.checkpoint_every=300", "trainer.eval_every=500"]
METRICS = {
    "train/critic_loss",
    "train/actor_loss",
    "train/alpha_loss",
    "train/alpha",
    "train/q_mean",
    "train/entropy",
    "eval/return_mean",
    "rollout/episode_return",
    "perf/env_steps_per_s",
}


def read_metrics(run_dir: Path, *, drop_perf: bool = True) -> list[dict[str, str]]:
    with (run_dir / "metrics.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    if drop_perf:
        rows = [{k: v for k, v in r.items() if not k.startswith("perf/")} for r in rows]
    return rows


def column(rows: list[dict[str, str]], name: str) -> list[float]:
    return [float(r[name]) for r in rows if r.get(name)]


def checkpoint(run_dir: Path) -> dict[str, Any]:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)


def args(env: str) -> list[str]:
    return [*SMALL, f"env={env}", *RUN]


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, dict[str, Any]]]:
    """One uninterrupted 1,000-step run per env through the ``rlbench`` command:
    (run dir, the results it wrote)."""
    pytest.importorskip("mujoco")
    runs = {}
    for env in ENVS:
        d = tmp_path_factory.mktemp(f"straight_{env}")
        proc = run_cli([*args(env), f"hydra.run.dir={d}"])
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs[env] = (d, json.loads((d / "results.json").read_text()))
    return runs


@pytest.mark.parametrize("env", list(ENVS))
def test_debug_run_writes_its_files_and_finite_losses(
    env: str, straight: dict[str, tuple[Path, dict[str, Any]]]
) -> None:
    run_dir, results = straight[env]
    assert results["status"] == "completed" and results["env_steps"] == 1000
    assert results["eval_episodes"] == 2
    assert math.isfinite(float(results["eval_return_mean"]))
    rows = read_metrics(run_dir, drop_perf=False)
    assert set(rows[0]) >= METRICS, METRICS - set(rows[0])
    for name in ("train/critic_loss", "train/actor_loss", "train/alpha_loss", "train/alpha"):
        values = column(rows, name)
        assert len(values) >= 5 and all(math.isfinite(v) for v in values), (name, values)
    # learning starts after 200 env steps; evaluations at 500 and at the end
    first_loss_step = min(int(r["env_step"]) for r in rows if r["train/critic_loss"])
    assert 200 < first_loss_step <= 300
    assert [int(r["env_step"]) for r in rows if r["eval/return_mean"]] == [500, 1000]
    alphas = column(rows, "train/alpha")
    assert alphas[0] == pytest.approx(1.0, rel=0.05) and len(set(alphas)) > 3  # alpha_init, tuned
    lengths = column(rows, "rollout/episode_length")
    if env == "inverted_pendulum":  # falls within a few dozen steps: terminations
        assert lengths and max(lengths) < 200
    else:  # HalfCheetah never terminates: no episode ends before its 1000-step limit
        assert set(lengths) <= {1000.0}

    ckpt = checkpoint(run_dir)
    dim, half_range = ENVS[env]
    state = ckpt["state_dict"]
    torch.testing.assert_close(state["actor.scale"], torch.full((dim,), half_range))
    torch.testing.assert_close(state["actor.bias"], torch.zeros(dim))
    assert state["actor.net.1.weight"].shape == (2 * dim, 32)  # mean and log-std heads
    assert {k.split(".")[0] for k in state} == {"actor", "critic", "critic_target", "log_alpha"}
    assert float(state["log_alpha"].exp()) == pytest.approx(alphas[-1], rel=0.05)
    # one gradient step per env step after learning_starts; the actor and temperature
    # learn twice every second step (policy_frequency=2), so as often as the critics
    updates = ckpt["rlbench_module"]["updates"]
    assert 1000 - 200 - 1 <= updates <= 1000 - 200
    assert ckpt["global_step"] == updates + 2 * 2 * (updates // 2)
    assert len(ckpt["optimizer_states"]) == 3  # actor, critic, alpha
    assert ckpt["ReplayDataModule"]["env_steps"] == 1000


class InterruptAtEnvStep(L.Callback):
    """Acts like a Ctrl-C once ``env_step`` env steps are collected: the checkpoint follows
    at the next step boundary."""

    def __init__(self, env_step: int) -> None:
        self.env_step = env_step

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.datamodule.env_steps >= self.env_step:  # type: ignore[attr-defined]
            callbacks = trainer.callbacks  # type: ignore[attr-defined]
            ckpt_cb = next(cb for cb in callbacks if type(cb).__name__ == "CheckpointCallback")
            ckpt_cb.interrupted = True


@pytest.mark.parametrize("env", list(ENVS))
def test_resume_after_ctrl_c_is_identical_to_a_straight_run(
    env: str,
    straight: dict[str, tuple[Path, dict[str, Any]]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    done_dir, done = straight[env]
    build = rlbench.cli.build

    def build_with_interrupt(*a: Any, **kw: Any) -> tuple[Any, Any, Any]:
        module, datamodule, trainer = build(*a, **kw)
        trainer.callbacks.append(InterruptAtEnvStep(650))  # between checkpoints and evals
        return module, datamodule, trainer

    with monkeypatch.context() as m:
        m.setattr(rlbench.cli, "build", build_with_interrupt)
        first = train_in_process(tmp_path, args(env))
    assert first["status"] == "interrupted"
    cut_at = first["env_steps"]
    assert isinstance(cut_at, int) and 650 <= cut_at < 700, cut_at
    ckpt = checkpoint(tmp_path)
    assert ckpt["ReplayDataModule"]["env_steps"] == cut_at
    assert 0 < ckpt["rlbench_module"]["updates"] < checkpoint(done_dir)["rlbench_module"]["updates"]

    resumed = resume_in_process(tmp_path, [])
    assert resumed["status"] == "completed" and resumed["env_steps"] == done["env_steps"]
    assert resumed["eval_return_mean"] == done["eval_return_mean"]
    assert read_metrics(tmp_path) == read_metrics(done_dir)
    a, b = checkpoint(tmp_path), checkpoint(done_dir)
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key in b["state_dict"]:
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key
    assert a["rlbench_module"]["updates"] == b["rlbench_module"]["updates"]
    assert a["global_step"] == b["global_step"]
    assert repr(a["ReplayDataModule"]["actor"]) == repr(b["ReplayDataModule"]["actor"])


def test_discrete_actions_are_a_one_line_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        train_in_process(tmp_path / "in_process", [*SMALL, "env=cartpole", "total_env_steps=300"])
    message = str(info.value)
    assert "algo=sac needs a Box action space; this env has Discrete(2)" in message
    assert "\n" not in message

    proc = run_cli([*SMALL, "env=cartpole", f"hydra.run.dir={tmp_path / 'cli'}"])
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    errors = [ln for ln in proc.stderr.strip().splitlines() if ln.startswith("error:")]
    assert errors == ["error: algo=sac needs a Box action space; this env has Discrete(2)"], (
        proc.stderr[-3000:]
    )
    results = json.loads((tmp_path / "cli" / "results.json").read_text())
    assert results["status"] == "failed" and "Discrete(2)" in results["error"]
