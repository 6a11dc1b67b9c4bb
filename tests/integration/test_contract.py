"""The module contract, tested once for every algorithm config in ``conf/algo/``.

A new algorithm is covered by adding its yaml: each one trains a few hundred env steps with
``trainer=debug`` (on CartPole if it takes discrete actions, else Pendulum), resumes after a
Ctrl-C to exactly the run that was never interrupted (weights, metrics, the training
actor's state included), and stops with a one-line error naming the metric and the update
when one of its losses goes non-finite.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import gymnasium as gym
import hydra
import lightning as L
import pytest
import torch

import rlbench.cli
from rlbench.algos.base import MetricAccumulator, RLModule
from rlbench.errors import NonFiniteLossError
from tests.conftest import CONF, compose_cfg, resume_in_process, train_in_process

ALGOS = sorted(p.stem for p in (CONF / "algo").glob("*.yaml"))
STEPS = 600


def module_class(algo: str) -> type[RLModule]:
    cls = hydra.utils.get_class(compose_cfg([f"algo={algo}"]).algo._target_)
    assert issubclass(cls, RLModule), f"algo={algo}: {cls} is not an RLModule"
    return cls


def overrides(algo: str) -> list[str]:
    """A small, fast run of ``algo`` on an env whose action space it takes."""
    env = "cartpole" if gym.spaces.Discrete in module_class(algo).action_spaces else "pendulum"
    args = [
        f"algo={algo}",
        f"env={env}",
        "trainer=debug",
        "logger=csv",
        "network.hidden=[16,16]",
        f"total_env_steps={STEPS}",
        "trainer.eval_every=300",
        "trainer.checkpoint_every=200",
        "trainer.log_every=100",
    ]
    algo_cfg = compose_cfg(args).algo
    small = {"learning_starts": 100, "batch_size": 16, "num_steps": 32, "episodes": 2}
    # world-model widths and planner sizes (TD-MPC2) are the algorithm's own keys
    small |= {"enc_dim": 16, "mlp_dim": 16, "latent_dim": 16, "initial_updates": 20}
    small |= {"iterations": 2, "num_samples": 32, "num_elites": 4, "num_pi_trajs": 4}
    args += [f"algo.{k}={v}" for k, v in small.items() if k in algo_cfg]
    if "num_samples" in algo_cfg:  # a planner: each act plans, so fewer updates keep it short
        args.append("algo.train_every=4")
    if "episodes" in algo_cfg and "group_size" in algo_cfg:
        args.append("algo.group_size=2")
    return args


def read_metrics(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "metrics.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    return [{k: v for k, v in r.items() if not k.startswith("perf/")} for r in rows]


def checkpoint(run_dir: Path) -> dict[str, Any]:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)


class InterruptAtEnvStep(L.Callback):
    """Acts like a Ctrl-C once the DataModule has collected ``env_step`` env steps."""

    def __init__(self, env_step: int) -> None:
        self.env_step = env_step

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.datamodule.env_steps >= self.env_step:  # type: ignore[attr-defined]
            callbacks = trainer.callbacks  # type: ignore[attr-defined]
            next(
                cb for cb in callbacks if type(cb).__name__ == "CheckpointCallback"
            ).interrupted = True


def assert_same(a: Any, b: Any, where: str) -> None:
    """Tensors, containers and scalars equal all the way down."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for key in a:
            assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list | tuple):
        assert isinstance(b, list | tuple) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def test_every_algo_config_is_covered() -> None:
    assert {"dqn", "ppo", "sac", "rainbow", "reinforce", "rloo", "reinforce_pp"} <= set(ALGOS)


@pytest.mark.parametrize("algo", ALGOS)
def test_trains_and_resumes_identically(
    algo: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = overrides(algo)
    straight, cut = tmp_path / "straight", tmp_path / "cut"
    straight.mkdir()
    cut.mkdir()
    done = train_in_process(straight, args)
    assert done["status"] == "completed", done
    rows = read_metrics(straight)
    losses = {k for r in rows for k, v in r.items() if k.startswith("train/") and "loss" in k and v}
    assert losses, f"algo={algo} logged no train/*loss*"
    for row in rows:
        for key in losses:
            if row[key]:
                assert math.isfinite(float(row[key])), (key, row)
    assert any(r.get("eval/return_mean") for r in rows)
    assert (straight / "checkpoints" / "last.ckpt").is_file()

    build = rlbench.cli.build

    def build_with_interrupt(*a: Any, **kw: Any) -> tuple[Any, Any, Any]:
        module, datamodule, trainer = build(*a, **kw)
        trainer.callbacks.append(InterruptAtEnvStep(STEPS // 2))
        return module, datamodule, trainer

    with monkeypatch.context() as m:
        m.setattr(rlbench.cli, "build", build_with_interrupt)
        first = train_in_process(cut, args)
    assert first["status"] == "interrupted"
    cut_at = first["env_steps"]
    assert isinstance(cut_at, int) and STEPS // 2 <= cut_at < int(str(done["env_steps"]))
    resumed = resume_in_process(cut, [])
    assert resumed["status"] == "completed"
    assert resumed["env_steps"] == done["env_steps"]
    assert resumed["eval_return_mean"] == done["eval_return_mean"]
    assert read_metrics(cut) == read_metrics(straight)
    a, b = checkpoint(cut), checkpoint(straight)
    assert_same(a["state_dict"], b["state_dict"], "state_dict")
    data_key = next(k for k in b if k.endswith("DataModule"))
    assert repr(a[data_key]["actor"]) == repr(b[data_key]["actor"])  # the actor's RNG too


@pytest.mark.parametrize("algo", ALGOS)
def test_a_non_finite_loss_stops_the_run_naming_metric_and_update(
    algo: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    poisoned: list[str] = []
    add = MetricAccumulator.add

    def poisoning_add(self: MetricAccumulator, name: str, value: Any) -> None:
        # the third value of the first loss metric logged becomes NaN
        loss = name.startswith("train/") and "loss" in name
        if loss and not poisoned and self.totals[name] == 2:
            poisoned.append(name)
            value = torch.tensor(float("nan"))
        add(self, name, value)

    monkeypatch.setattr(MetricAccumulator, "add", poisoning_add)
    with pytest.raises(NonFiniteLossError) as info:
        train_in_process(tmp_path, overrides(algo))
    message = str(info.value)
    assert poisoned and f"non-finite loss {poisoned[0]} at update 3 " in message, message
    assert "\n" not in message
