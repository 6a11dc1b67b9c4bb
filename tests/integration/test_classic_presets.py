"""The classic-control and Box2D presets (``experiment=<algo>_<env>``, issue 18): each composes
to what its header says it translates from rl-baselines3-zoo, and trains a few hundred env
steps with ``trainer=debug``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CONF, compose_cfg, train_in_process

ZOO_COMMIT = "DLR-RM/rl-baselines3-zoo@22e3ff2450fd92033f7f032915e1f64894a09584"

# preset: (env id, algo name, the keys the zoo entry pins)
PRESETS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "dqn_acrobot": (
        "Acrobot-v1",
        "dqn",
        {"algo.lr": 6.3e-4, "algo.train_every": 4, "algo.gradient_steps": 4,
         "algo.target_update_every": 250, "sampler.decay_fraction": 0.12, "sampler.end": 0.1,
         "buffer.capacity": 50000, "total_env_steps": 100000},
    ),
    "dqn_mountaincar": (
        "MountainCar-v0",
        "dqn",
        {"algo.lr": 4e-3, "algo.gamma": 0.98, "algo.train_every": 16, "algo.gradient_steps": 8,
         "algo.target_update_every": 600, "sampler.decay_fraction": 0.2, "sampler.end": 0.07,
         "buffer.capacity": 10000, "total_env_steps": 120000},
    ),
    "dqn_lunarlander": (
        "LunarLander-v3",
        "dqn",
        # the zoo's 4 / 4 tuned to 1 / 1 (the same ratio; see the preset's header)
        {"algo.lr": 6.3e-4, "algo.train_every": 1, "algo.gradient_steps": 1,
         "sampler.decay_fraction": 0.12, "total_env_steps": 100000},
    ),
    "rainbow_acrobot": ("Acrobot-v1", "rainbow", {"algo.v_min": -100.0, "algo.v_max": 0.0}),
    "rainbow_mountaincar": (
        "MountainCar-v0",
        "rainbow",
        {"algo.gamma": 0.98, "algo.v_min": -50.0, "algo.v_max": 0.0},
    ),
    "rainbow_lunarlander": ("LunarLander-v3", "rainbow", {"buffer.n_step": 5}),
    "ppo_acrobot": (
        "Acrobot-v1",
        "ppo",
        {"env.num_envs": 16, "algo.num_steps": 256, "algo.minibatches": 64,
         "algo.gae_lambda": 0.94, "algo.anneal_lr": False, "total_env_steps": 1000000},
    ),
    "ppo_mountaincar": (
        "MountainCar-v0",
        "ppo",
        {"env.num_envs": 16, "algo.num_steps": 16, "algo.minibatches": 4,
         "algo.gae_lambda": 0.98},
    ),
    "ppo_lunarlander": (
        "LunarLander-v3",
        "ppo",
        {"env.num_envs": 16, "algo.num_steps": 1024, "algo.minibatches": 256,
         "algo.gamma": 0.999, "algo.ent_coef": 0.01},
    ),
    "sac_pendulum": (
        "Pendulum-v1",
        "sac",
        {"algo.policy_frequency": 1, "algo.learning_starts": 100,
         "algo.actor_optimizer.lr": 1e-3, "algo.critic_optimizer.lr": 1e-3,
         "total_env_steps": 20000},
    ),
}  # fmt: skip

# small enough for a few seconds per run; the keys an algorithm lacks are skipped
SMALL = {
    "learning_starts": 50,
    "batch_size": 16,
    "num_steps": 16,
    "minibatches": 2,
    "target_update_every": 50,
}


def select(cfg: Any, key: str) -> Any:
    node = cfg
    for part in key.split("."):
        node = node[part]
    return node


@pytest.mark.parametrize("preset", list(PRESETS))
def test_preset_pins_the_zoo_values_and_cites_the_commit(preset: str) -> None:
    env_id, algo, pinned = PRESETS[preset]
    cfg = compose_cfg([f"experiment={preset}"])
    assert cfg.env.id == env_id and cfg.algo.name == algo
    for key, value in pinned.items():
        assert select(cfg, key) == pytest.approx(value), key
    header = (CONF / "experiment" / f"{preset}.yaml").read_text()
    assert ZOO_COMMIT in header and f"rlbench experiment={preset}" in header
    if algo == "rainbow":  # noisy nets explore: no epsilon
        assert cfg.sampler._target_ == "rlbench.samplers.Greedy"


@pytest.mark.parametrize("preset", list(PRESETS))
def test_preset_trains_with_trainer_debug(preset: str, tmp_path: Path) -> None:
    args = [
        f"experiment={preset}",
        "trainer=debug",
        "logger=csv",
        "total_env_steps=300",
        "trainer.eval_every=300",
        "trainer.eval_episodes=1",
        "env.max_episode_steps=100",  # keeps the final evaluation short
    ]
    algo_cfg = compose_cfg(args).algo
    args += [f"algo.{k}={v}" for k, v in SMALL.items() if k in algo_cfg]
    results = train_in_process(tmp_path, args)
    assert results["status"] == "completed", results
    assert int(results["env_steps"]) >= 300  # type: ignore[call-overload]


def test_decay_fraction_follows_total_env_steps() -> None:
    """The preset's exploration schedule keeps its shape when the budget changes."""
    from rlbench.algos.dqn import DQN
    from rlbench.cli import algo_parts

    for total in (100_000, 10_000):
        cfg = compose_cfg(["experiment=dqn_acrobot", f"total_env_steps={total}"])
        assert algo_parts(DQN, cfg)["sampler"].epsilon.duration == round(0.12 * total)


@pytest.mark.parametrize("env", ["hopper", "walker2d", "halfcheetah"])
def test_ppo_mujoco_composes_with_each_locomotion_env(env: str) -> None:
    cfg = compose_cfg(["experiment=ppo_mujoco", f"env={env}"])
    assert cfg.env.id.lower().startswith(env) and cfg.env.normalize_obs
    assert cfg.algo.name == "ppo" and cfg.total_env_steps == 1_000_000


def test_ppo_mujoco_trains_on_hopper(tmp_path: Path) -> None:
    pytest.importorskip("mujoco")
    args = [
        "experiment=ppo_mujoco",
        "env=hopper",
        "trainer=debug",
        "logger=csv",
        "total_env_steps=128",
        "trainer.eval_every=128",
        "trainer.eval_episodes=1",
        "env.max_episode_steps=50",
        "algo.num_steps=64",
        "algo.minibatches=2",
        "algo.epochs=1",
    ]
    assert train_in_process(tmp_path, args)["status"] == "completed"


def test_lunar_lander_without_box2d_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from rlbench.envs.factory import check_env_id
    from rlbench.errors import ConfigError

    monkeypatch.setitem(sys.modules, "Box2D", None)
    with pytest.raises(ConfigError, match=r"pip install 'rlbench\[box2d\]'") as e:
        check_env_id("LunarLander-v3")
    assert "\n" not in str(e.value)
