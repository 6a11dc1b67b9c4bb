"""The on-policy family composed through Hydra with ``trainer=debug``: each algorithm on
CartPole (PPO also on HalfCheetah), on-policy freshness inside Lightning, and resume
identity (from the end of a run and after a Ctrl-C) of PPO, PPO with its learning rate
annealed, REINFORCE, RLOO and REINFORCE++."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch

import rlbench.cli
from rlbench.algos.reinforce import PolicyActor
from rlbench.errors import ConfigError
from tests.conftest import resume_in_process, train_in_process

BASE = ["trainer=debug", "logger=csv", "env.num_envs=2"]
ALGOS: dict[str, list[str]] = {
    "ppo": ["algo=ppo", "algo.num_steps=64"],
    "reinforce": ["algo=reinforce", "algo.episodes=4"],
    "rloo": ["algo=rloo", "algo.episodes=4", "algo.group_size=2"],
    "reinforce_pp": ["algo=reinforce_pp", "algo.episodes=4", "algo.kl_coef=0.1"],
}
METRICS: dict[str, set[str]] = {
    "ppo": {"policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction"},
    "reinforce": {"policy_loss", "value_loss", "entropy", "explained_variance"},
    "rloo": {"policy_loss", "entropy"},
    "reinforce_pp": {"policy_loss", "entropy", "approx_kl", "clip_fraction", "kl_to_reference"},
}
# PPO: 2 envs x 64 steps = 128 env steps per rollout, 4 epochs x 4 minibatches; no lr
# annealing (its horizon is total_env_steps, which a run continued with more steps changes)
PPO_ARGS = [*BASE, *ALGOS["ppo"], "algo.anneal_lr=false"]


def read_metrics(run_dir: Path, *, drop_perf: bool = True) -> list[dict[str, str]]:
    with (run_dir / "metrics.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    if drop_perf:
        rows = [{k: v for k, v in r.items() if not k.startswith("perf/")} for r in rows]
    return rows


def checkpoint(run_dir: Path) -> dict[str, Any]:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = checkpoint(a)["state_dict"], checkpoint(b)["state_dict"]
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key


@pytest.mark.parametrize("algo", list(ALGOS))
def test_algorithm_runs_on_cartpole_through_hydra(algo: str, tmp_path: Path) -> None:
    results = train_in_process(tmp_path, [*BASE, *ALGOS[algo], "total_env_steps=1000"])
    assert results["status"] == "completed" and results["eval_episodes"] == 2
    assert isinstance(results["env_steps"], int) and results["env_steps"] >= 1000
    rows = read_metrics(tmp_path, drop_perf=False)
    columns = set(rows[0])
    expected = {f"train/{m}" for m in METRICS[algo]} | {"train/loss", "train/lr"}
    expected |= {"rollout/episode_return", "eval/return_mean", "perf/env_steps_per_s"}
    assert expected <= columns, expected - columns
    if algo in ("rloo", "reinforce_pp"):
        assert "train/value_loss" not in columns  # critic-free
    lrs = [float(r["train/lr"]) for r in rows if r["train/lr"]]
    if algo == "ppo":  # annealed linearly from 2.5e-4 towards 0 at total_env_steps
        assert lrs == sorted(lrs, reverse=True) and lrs[0] == 2.5e-4 and lrs[-1] < 3e-5
    else:
        assert set(lrs) == {1e-3}
    losses = [float(r["train/loss"]) for r in rows if r["train/loss"]]
    assert losses and all(math.isfinite(v) for v in losses)
    ckpt = checkpoint(tmp_path)
    assert ckpt["RolloutDataModule"]["env_steps"] == results["env_steps"]
    assert "ReplayDataModule" not in ckpt
    if algo == "reinforce_pp":  # the KL reference policy is part of the module state
        assert any(k.startswith("ref_policy.") for k in ckpt["state_dict"])


def test_ppo_on_halfcheetah_through_hydra(tmp_path: Path) -> None:
    pytest.importorskip("mujoco")
    results = train_in_process(
        tmp_path,
        [
            "trainer=debug",
            "logger=csv",
            "algo=ppo",
            "env=halfcheetah",
            "env.normalize_obs=true",
            "env.normalize_reward=true",
            "algo.num_steps=128",
            "algo.minibatches=4",
            "total_env_steps=512",
            "trainer.eval_every=0",
            "trainer.checkpoint_every=0",
        ],
    )
    assert results["status"] == "completed" and results["env_steps"] == 512
    assert math.isfinite(float(results["eval_return_mean"]))  # type: ignore[arg-type]
    state = checkpoint(tmp_path)["state_dict"]
    assert state["ac.head.log_std"].shape == (6,)  # diagonal Gaussian over 6 torques


def test_bad_values_are_one_line_config_errors(tmp_path: Path) -> None:
    cases = [
        (["algo=rloo", "algo.group_size=1"], "algo.group_size=1: RLOO needs groups of >= 2"),
        (["algo=rloo", "algo.credit=token"], "algo.credit='token': allowed step, episode"),
        (["algo=reinforce", "algo.episodes=3"], "algo.episodes=3: must be a multiple of env"),
        (["algo=ppo", "algo.clip_coef=0"], "algo.clip_coef=0.0: must be > 0"),
        (["algo=ppo", "algo.gae_lambda=1.5"], "algo.gae_lambda=1.5: must be in [0.0, 1.0]"),
        (["algo=ppo", "algo.num_steps=0"], "algo.num_steps=0: must be > 0"),
    ]
    for i, (overrides, message) in enumerate(cases):
        with pytest.raises(ConfigError) as info:
            train_in_process(tmp_path / str(i), [*BASE, *overrides, "total_env_steps=200"])
        assert message in str(info.value) and "\n" not in str(info.value)


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[tuple[int, int]]]:
    """One uninterrupted 1,024-step PPO run; records (global step, env step) at every act."""
    d = tmp_path_factory.mktemp("straight")
    acts: list[tuple[int, int]] = []
    original = PolicyActor.act_with_log_prob

    def recording(self: PolicyActor, obs: Any, *, first: Any) -> Any:
        acts.append((self.module.global_step, self.env_step))
        return original(self, obs, first=first)

    PolicyActor.act_with_log_prob = recording  # type: ignore[method-assign]
    try:
        train_in_process(d, [*PPO_ARGS, "total_env_steps=1024", "trainer.checkpoint_every=300"])
    finally:
        PolicyActor.act_with_log_prob = original  # type: ignore[method-assign]
    return d, acts


def test_every_rollout_is_collected_with_the_current_weights(
    straight: tuple[Path, list[tuple[int, int]]],
) -> None:
    _, acts = straight
    assert len(acts) == 8 * 64  # 8 rollouts of 64 vector steps
    for k in range(8):  # rollout k follows all 16 gradient steps on rollout k - 1
        assert {g for g, _ in acts[k * 64 : (k + 1) * 64]} == {16 * k}


def test_resume_is_identical_to_a_straight_run(
    straight: tuple[Path, list[tuple[int, int]]], tmp_path: Path
) -> None:
    d, _ = straight
    half = tmp_path / "half"
    half.mkdir()
    train_in_process(half, [*PPO_ARGS, "total_env_steps=500", "trainer.checkpoint_every=300"])
    assert checkpoint(half)["RolloutDataModule"]["env_steps"] == 512
    results = resume_in_process(half, ["total_env_steps=1024"])
    assert results["env_steps"] == 1024
    assert read_metrics(half) == read_metrics(d)
    assert_same_weights(half, d)


class InterruptAt(L.Callback):
    """Acts like a Ctrl-C after gradient step ``step``: the checkpoint follows at the next
    step boundary."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.global_step == self.step:
            callbacks = trainer.callbacks  # type: ignore[attr-defined]
            ckpt_cb = next(cb for cb in callbacks if type(cb).__name__ == "CheckpointCallback")
            ckpt_cb.interrupted = True


def test_ctrl_c_saves_between_updates_and_resumes_identically(
    straight: tuple[Path, list[tuple[int, int]]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    d, _ = straight
    build = rlbench.cli.build

    def build_with_interrupt(*args: Any, **kwargs: Any) -> tuple[Any, Any, Any]:
        module, datamodule, trainer = build(*args, **kwargs)
        trainer.callbacks.append(InterruptAt(16 * 4))
        return module, datamodule, trainer

    monkeypatch.setattr(rlbench.cli, "build", build_with_interrupt)
    cut = tmp_path / "cut"
    cut.mkdir()
    results = train_in_process(
        cut, [*PPO_ARGS, "total_env_steps=1024", "trainer.checkpoint_every=300"]
    )
    monkeypatch.undo()
    # one training step is one rollout's 16 updates: the save lands between rollouts
    assert results["status"] == "interrupted" and results["env_steps"] == 640
    ckpt = checkpoint(cut)
    assert ckpt["global_step"] == 16 * 5 and ckpt["RolloutDataModule"]["batch"] is None
    results = resume_in_process(cut, [])
    assert results["status"] == "completed" and results["env_steps"] == 1024
    # no extra evaluation or flush at the stop; unflushed metrics travel in the checkpoint
    assert read_metrics(cut) == read_metrics(d)
    assert_same_weights(cut, d)


def test_same_seed_same_numbers_other_seed_other_numbers(
    straight: tuple[Path, list[tuple[int, int]]], tmp_path: Path
) -> None:
    d, _ = straight
    again, other = tmp_path / "again", tmp_path / "other"
    again.mkdir()
    other.mkdir()
    train_in_process(again, [*PPO_ARGS, "total_env_steps=1024", "trainer.checkpoint_every=300"])
    assert read_metrics(again) == read_metrics(d)
    train_in_process(other, [*PPO_ARGS, "total_env_steps=1024", "seed=1"])
    assert read_metrics(other) != read_metrics(d)


# Resume identity beyond PPO without annealing: the REINFORCE family, and PPO with its lr
# annealed (whose horizon, total_env_steps, a Ctrl-C leaves unchanged).
RESUMED: dict[str, list[str]] = {
    "reinforce": ALGOS["reinforce"],
    "rloo": ALGOS["rloo"],
    "reinforce_pp": ALGOS["reinforce_pp"],
    "ppo_anneal_lr": [*ALGOS["ppo"], "algo.anneal_lr=true", "algo.anneal_clip=true"],
}
# gradient steps of a 1,024-step run: 12 (reinforce), 13 (rloo), 128 (reinforce_pp, ppo)
INTERRUPT_AT = {"reinforce": 6, "rloo": 6, "reinforce_pp": 64, "ppo_anneal_lr": 64}
RUN = ["total_env_steps=1024", "trainer.checkpoint_every=300"]


def train_interrupted(
    run_dir: Path, overrides: list[str], at: int, monkeypatch: pytest.MonkeyPatch
) -> dict[str, object]:
    """``train_in_process`` with a Ctrl-C after gradient step ``at``."""
    build = rlbench.cli.build

    def build_with_interrupt(*args: Any, **kwargs: Any) -> tuple[Any, Any, Any]:
        module, datamodule, trainer = build(*args, **kwargs)
        trainer.callbacks.append(InterruptAt(at))
        return module, datamodule, trainer

    with monkeypatch.context() as m:
        m.setattr(rlbench.cli, "build", build_with_interrupt)
        return train_in_process(run_dir, overrides)


@pytest.mark.parametrize("case", list(RESUMED))
def test_resume_after_ctrl_c_is_identical_to_a_straight_run(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = [*BASE, *RESUMED[case], *RUN]
    straight, cut = tmp_path / "straight", tmp_path / "cut"
    straight.mkdir()
    cut.mkdir()
    done = train_in_process(straight, args)
    assert done["status"] == "completed"
    results = train_interrupted(cut, args, INTERRUPT_AT[case], monkeypatch)
    assert results["status"] == "interrupted"
    cut_at, total = results["env_steps"], done["env_steps"]
    assert isinstance(cut_at, int) and isinstance(total, int) and 300 < cut_at < total
    assert checkpoint(cut)["global_step"] > INTERRUPT_AT[case]
    results = resume_in_process(cut, [])
    assert results["status"] == "completed" and results["env_steps"] == done["env_steps"]
    assert read_metrics(cut) == read_metrics(straight)
    assert_same_weights(cut, straight)
    lrs = [float(r["train/lr"]) for r in read_metrics(straight) if r["train/lr"]]
    if case == "ppo_anneal_lr":  # the annealing really ran across the cut
        assert lrs[0] == 2.5e-4 and lrs == sorted(lrs, reverse=True) and len(set(lrs)) > 3
        # the clip follows the same linear schedule: clip / 0.2 == lr / 2.5e-4, row by row
        rows = [r for r in read_metrics(straight) if r["train/lr"]]
        clips = [float(r["train/clip_coef"]) for r in rows]
        assert clips == pytest.approx([0.2 * lr / 2.5e-4 for lr in lrs], rel=1e-6)
    else:
        assert set(lrs) == {1e-3}


@pytest.mark.parametrize("algo", ["reinforce", "rloo", "reinforce_pp"])
def test_reinforce_family_continued_run_is_identical_to_a_straight_run(
    algo: str, tmp_path: Path
) -> None:
    """As ``test_resume_is_identical_to_a_straight_run`` for PPO: a finished 500-step run
    continued to 1,024 steps (episodes end where they end, so both stop past the budget)."""
    args = [*BASE, *ALGOS[algo], "trainer.checkpoint_every=300"]
    straight, half = tmp_path / "straight", tmp_path / "half"
    straight.mkdir()
    half.mkdir()
    done = train_in_process(straight, [*args, "total_env_steps=1024"])
    first = train_in_process(half, [*args, "total_env_steps=500"])
    env_steps = first["env_steps"]
    assert first["status"] == "completed" and isinstance(env_steps, int) and 500 <= env_steps < 1024
    results = resume_in_process(half, ["total_env_steps=1024"])
    assert results["env_steps"] == done["env_steps"]
    assert read_metrics(half) == read_metrics(straight)
    assert_same_weights(half, straight)
