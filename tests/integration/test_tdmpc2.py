"""TD-MPC2 composed through Hydra with ``trainer=debug`` and a tiny world model and planner:
Pendulum (one torque in [-2, 2], 200-step episodes) and HalfCheetah (6 torques, episodes
cut to 100 steps here): the metrics a run writes, the update schedule (a burst of
``initial_updates`` when learning starts, then one per env step), the planner's state in
the checkpoint, resume after a Ctrl-C identical to a straight run, the MuJoCo preset and
the one-line error for discrete actions."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch

import rlbench.cli
from rlbench.errors import ConfigError
from tests.conftest import compose_cfg, resume_in_process, train_in_process

SMALL = [
    "algo=tdmpc2",
    "trainer=debug",
    "logger=csv",
    "algo.batch_size=32",
    "algo.learning_starts=200",
    "algo.initial_updates=50",
    "algo.enc_dim=32",
    "algo.mlp_dim=32",
    "algo.latent_dim=32",
    "algo.iterations=2",
    "algo.num_samples=64",
    "algo.num_elites=8",
    "algo.num_pi_trajs=8",
    "total_env_steps=600",
    "trainer.eval_every=300",
    "trainer.checkpoint_every=300",
]
# env -> (action dim, half-range of the action bounds, overrides)
ENVS: dict[str, tuple[int, float, list[str]]] = {
    "pendulum": (1, 2.0, ["algo.episode_length=200"]),
    "halfcheetah": (6, 1.0, ["env.max_episode_steps=100", "algo.episode_length=100"]),
}
LOSSES = {
    "train/consistency_loss",
    "train/reward_loss",
    "train/value_loss",
    "train/model_loss",
    "train/pi_loss",
}
METRICS = LOSSES | {"train/entropy", "train/q_mean", "train/q_scale", "eval/return_mean"}


def args(env: str) -> list[str]:
    return [*SMALL, f"env={env}", *ENVS[env][2]]


def read_metrics(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "metrics.csv").open(newline="") as f:
        return [
            {k: v for k, v in r.items() if not k.startswith("perf/")} for r in csv.DictReader(f)
        ]


def checkpoint(run_dir: Path) -> dict[str, Any]:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, dict[str, Any]]]:
    """One uninterrupted 600-step run per env: (run dir, results)."""
    pytest.importorskip("mujoco")
    runs = {}
    for env in ENVS:
        d = tmp_path_factory.mktemp(f"tdmpc2_{env}")
        runs[env] = (d, train_in_process(d, args(env)))
    return runs


@pytest.mark.parametrize("env", list(ENVS))
def test_debug_run_schedule_metrics_and_planner_state(
    env: str, straight: dict[str, tuple[Path, dict[str, Any]]]
) -> None:
    run_dir, results = straight[env]
    assert results["status"] == "completed" and results["env_steps"] == 600, results
    assert math.isfinite(float(results["eval_return_mean"]))
    rows = read_metrics(run_dir)
    assert set(rows[0]) >= METRICS, METRICS - set(rows[0])
    for name in METRICS:
        values = [float(r[name]) for r in rows if r.get(name)]
        assert values and all(math.isfinite(v) for v in values), (name, values)
    assert [int(r["env_step"]) for r in rows if r["eval/return_mean"]] == [300, 600]
    # random actions for 200 steps, then the burst of 50 updates, then one per env step
    first_loss_step = min(int(r["env_step"]) for r in rows if r["train/model_loss"])
    assert 200 <= first_loss_step <= 300
    ckpt = checkpoint(run_dir)
    updates = ckpt["rlbench_module"]["metric_totals"]["train/model_loss"]
    assert updates == 50 + (600 - 200)
    assert ckpt["rlbench_module"]["metric_totals"]["train/pi_loss"] == updates
    assert ckpt["global_step"] == 2 * updates  # `main` and `pi` each step once per update
    main, pi = ckpt["optimizer_states"]
    assert [g["lr"] for g in main["param_groups"]] == pytest.approx([0.3 * 3e-4, 3e-4])
    assert pi["param_groups"][0]["eps"] == 1e-5

    dim, half_range, _ = ENVS[env]
    state = ckpt["state_dict"]
    torch.testing.assert_close(state["action_scale"], torch.full((dim,), half_range))
    assert {k.split(".")[0] for k in state} == {"model", "q_scale", "action_scale", "action_bias"}
    assert float(state["q_scale"]) >= 1.0
    assert state["model.qs.weights.0"].shape == (2, 32 + dim, 32)  # the 1M preset: 2 Q heads
    actor = ckpt["ReplayDataModule"]["actor"]
    assert actor["prev_mean"].shape == (1, 3, dim) and bool(actor["prev_mean"].abs().sum() > 0)
    assert set(actor["rng"]) >= {"bit_generator", "state"}


class InterruptAtEnvStep(L.Callback):
    """Acts like a Ctrl-C once ``env_step`` env steps are collected."""

    def __init__(self, env_step: int) -> None:
        self.env_step = env_step

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.datamodule.env_steps >= self.env_step:  # type: ignore[attr-defined]
            callbacks = trainer.callbacks  # type: ignore[attr-defined]
            ckpt_cb = next(cb for cb in callbacks if type(cb).__name__ == "CheckpointCallback")
            ckpt_cb.interrupted = True


def test_resume_on_halfcheetah_is_identical_planner_included(
    straight: dict[str, tuple[Path, dict[str, Any]]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    done_dir, done = straight["halfcheetah"]
    build = rlbench.cli.build

    def build_with_interrupt(*a: Any, **kw: Any) -> tuple[Any, Any, Any]:
        module, datamodule, trainer = build(*a, **kw)
        trainer.callbacks.append(InterruptAtEnvStep(450))  # mid-episode, between checkpoints
        return module, datamodule, trainer

    with monkeypatch.context() as m:
        m.setattr(rlbench.cli, "build", build_with_interrupt)
        first = train_in_process(tmp_path, args("halfcheetah"))
    assert first["status"] == "interrupted" and 450 <= int(str(first["env_steps"])) < 500
    resumed = resume_in_process(tmp_path, [])
    assert resumed["status"] == "completed"
    assert resumed["eval_return_mean"] == done["eval_return_mean"]
    assert read_metrics(tmp_path) == read_metrics(done_dir)
    a, b = checkpoint(tmp_path), checkpoint(done_dir)
    for key in b["state_dict"]:
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key
    assert repr(a["ReplayDataModule"]["actor"]) == repr(b["ReplayDataModule"]["actor"])


def test_mujoco_preset_has_the_authors_settings() -> None:
    pytest.importorskip("mujoco")
    cfg = compose_cfg(["experiment=tdmpc2_mujoco"])
    assert cfg.env.id == "HalfCheetah-v5" and cfg.total_env_steps == 1_000_000
    env = rlbench.cli._instantiate(cfg.env, _convert_="all")
    module = rlbench.cli.build_module(cfg, env)
    # the authors' Gymnasium MuJoCo settings: discount at most 0.99, rho 0.7, episodic
    assert module.discount == pytest.approx(0.99) and module.rho == 0.7
    assert module.episodic and module.model.termination is not None
    spec = module.data_spec
    assert (spec.learning_starts, spec.initial_updates, spec.batch_size) == (5000, 5000, 256)
    assert (spec.length, spec.within_episode, spec.ratio) == (3, True, 1.0)
    mppi = module.mppi
    assert (mppi.iterations, mppi.num_samples, mppi.num_elites, mppi.num_pi_trajs) == (
        6,
        512,
        64,
        24,
    )
    assert (mppi.temperature, mppi.min_std, mppi.max_std) == (0.5, 0.05, 2.0)
    head = sum(p.numel() for p in module.model.termination.parameters())
    assert 1.0e6 <= module.model.num_params() - head <= 1.4e6  # the 1M preset, and the head
    assert cfg.buffer.capacity == 1_000_000
    big = rlbench.cli.build_module(compose_cfg(["experiment=tdmpc2_mujoco", "algo.size=5M"]), env)
    assert big.size.latent_dim == 512 and big.size.num_q == 5


def test_episodic_run_on_hopper_learns_its_termination_head(tmp_path: Path) -> None:
    """Hopper falls within tens of random steps: the termination head of ``episodic`` mode
    sees real terminations, its loss is logged finite with the others, and the head's
    weights are saved."""
    pytest.importorskip("mujoco")
    overrides = [*SMALL, "env=hopper", "algo.episodic=true", "algo.episode_length=1000"]
    results = train_in_process(tmp_path, overrides)
    assert results["status"] == "completed" and results["env_steps"] == 600, results
    rows = read_metrics(tmp_path)
    for name in (*LOSSES, "train/termination_loss"):
        values = [float(r[name]) for r in rows if r.get(name)]
        assert values and all(math.isfinite(v) for v in values), (name, values)
    episodes = [float(r["rollout/episode_length"]) for r in rows if r.get("rollout/episode_length")]
    assert episodes and min(episodes) < 1000  # episodes ended by terminations, not time
    state = checkpoint(tmp_path)["state_dict"]
    assert any(k.startswith("model.termination.") for k in state)


def test_dmc_preset_counts_the_authors_schedule_in_simulator_steps() -> None:
    """The authors count agent steps (2 simulator steps each) with 500-step episodes: 2500
    seed steps, 2500 updates at once, then one per agent step."""
    pytest.importorskip("dm_control")
    pytest.importorskip("shimmy")
    cfg = compose_cfg(["experiment=tdmpc2_dmc"])
    assert (cfg.env.task, cfg.env.action_repeat, cfg.env.num_envs) == ("cartpole-swingup", 2, 1)
    assert (cfg.algo.size, cfg.trainer.eval_every, cfg.total_env_steps) == ("1M", 10_000, 10**6)
    env = rlbench.cli._instantiate(cfg.env, _convert_="all")
    assert env.step_multiplier == 2
    module = rlbench.cli.build_module(cfg, env)
    assert module.discount == pytest.approx(0.99)  # (500/5 - 1) / (500/5)
    spec = module.data_spec
    assert (spec.learning_starts, spec.initial_updates, spec.batch_size) == (5000, 2500, 256)
    assert spec.ratio * env.step_multiplier == 1.0  # one gradient step per agent step
    assert spec.initial_updates * env.step_multiplier == spec.learning_starts
    walker = compose_cfg(["experiment=tdmpc2_dmc", "env.task=walker-walk", "algo.size=5M"])
    assert (walker.env.id, walker.algo.size) == ("dm_control/walker-walk-v0", "5M")


def test_discrete_actions_are_a_one_line_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        train_in_process(tmp_path, [*SMALL, "env=cartpole"])
    message = str(info.value)
    assert "algo=tdmpc2 needs a Box action space; this env has Discrete(2)" in message
    assert "\n" not in message
