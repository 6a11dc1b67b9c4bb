"""The Rainbow family composed through Hydra and run on CartPole with ``trainer=debug``."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from omegaconf import OmegaConf

from rlbench.errors import ConfigError
from tests.conftest import CONF, DEBUG, compose_cfg, resume_in_process, run_cli, train_in_process

# The keys each algo preset must set (everything else is DQN's).
PRESETS: dict[str, dict[str, Any]] = {
    "ddqn": {"algo.double": True},
    "dueling": {"algo.double": True, "network.dueling": True},
    "c51": {"algo.distributional": True, "algo.num_atoms": 51},
    "per": {"algo.double": True, "buffer.alpha": 0.5, "buffer.beta0": 0.4},
    "noisy": {
        "network.noisy": True,
        "network.sigma0": 0.5,
        "sampler._target_": "rlbench.samplers.Greedy",
    },
    "rainbow": {
        "algo.double": True,
        "algo.distributional": True,
        "network.dueling": True,
        "network.noisy": True,
        "buffer.n_step": 3,
        "buffer.alpha": 0.5,
        "sampler._target_": "rlbench.samplers.Greedy",
    },
}


def select(cfg: Any, key: str) -> Any:
    node = cfg
    for part in key.split("."):
        node = node[part]
    return node


def metrics(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "metrics.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    return [{k: v for k, v in r.items() if not k.startswith("perf/")} for r in rows]


def checkpoint(run_dir: Path) -> dict[str, Any]:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)


@pytest.mark.parametrize("algo", list(PRESETS))
def test_algo_preset_composes_and_trains(algo: str, tmp_path: Path) -> None:
    overrides = [*DEBUG, f"algo={algo}", "total_env_steps=600"]
    cfg = compose_cfg(overrides)
    assert cfg.algo.name == algo
    for key, value in PRESETS[algo].items():
        got = select(cfg, key)
        assert got == value, (key, got)

    results = train_in_process(tmp_path, overrides)
    assert results["status"] == "completed" and results["env_steps"] == 600
    rows = metrics(tmp_path)
    losses = [float(r["train/loss"]) for r in rows if r.get("train/loss")]
    assert losses and all(math.isfinite(v) for v in losses)
    greedy = cfg.sampler._target_ == "rlbench.samplers.Greedy"
    assert ("train/epsilon" in rows[0]) != greedy

    ckpt = checkpoint(tmp_path)
    keys = set(ckpt["state_dict"])
    assert ("q_net.1.value.weight" in keys or "q_net.1.value.weight_mu" in keys) == (
        cfg.network.dueling
    )
    assert any(k.endswith("weight_sigma") for k in keys) == cfg.network.noisy
    assert ("q_net.1.support" in keys) == cfg.algo.distributional
    assert ("priorities" in ckpt["ReplayDataModule"]["buffer"]) == ("alpha" in cfg.buffer)


def test_cli_sampler_choice_wins_over_the_noisy_default() -> None:
    cfg = compose_cfg(["algo=rainbow", "sampler=boltzmann", "buffer=replay"])
    assert cfg.sampler._target_.endswith("Boltzmann") and cfg.network.noisy
    assert cfg.buffer._target_.endswith("TrajectoryReplayBuffer") and cfg.buffer.n_step == 3


def test_boltzmann_sampler_acts_on_any_q_head(tmp_path: Path) -> None:
    """Distributional and noisy heads expose expected Q-values, so any sampler applies."""
    overrides = [*DEBUG, "algo=rainbow", "sampler=boltzmann", "total_env_steps=400"]
    results = train_in_process(tmp_path, overrides)
    assert results["status"] == "completed"
    temperatures = [r["train/temperature"] for r in metrics(tmp_path) if r["train/temperature"]]
    assert temperatures and set(temperatures) == {"1.0"}


def test_bad_rainbow_values_raise_one_line_config_errors(tmp_path: Path) -> None:
    for override, message in (
        ("algo.num_atoms=1", "algo.num_atoms=1: a distribution needs >= 2 atoms"),
        ("algo.v_min=10", "algo.v_min=10.0, algo.v_max=10.0: need v_min < v_max"),
        ("network.sigma0=0", "network.sigma0=0.0: must be > 0"),
        ("buffer.alpha=-1", "buffer.alpha=-1.0: must be >= 0"),
    ):
        with pytest.raises(ConfigError) as info:
            train_in_process(tmp_path, [*DEBUG, "algo=rainbow", override])
        assert str(info.value) == message


def test_rainbow_resume_is_identical_to_a_straight_run(tmp_path: Path) -> None:
    """Noise generators, priorities, the beta schedule and every RNG survive a restart."""
    common = [*DEBUG, "algo=rainbow", "buffer.beta_steps=1000"]
    straight, half = tmp_path / "straight", tmp_path / "half"
    for d in (straight, half):
        d.mkdir()
    train_in_process(straight, [*common, "total_env_steps=1000"])
    train_in_process(half, [*common, "total_env_steps=500"])
    resume_in_process(half, ["total_env_steps=1000"])
    assert metrics(half) == metrics(straight)
    a, b = checkpoint(half), checkpoint(straight)
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key, value in a["state_dict"].items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, b["state_dict"][key]), key
        else:  # NoisyLinear extra state: its generator
            assert torch.equal(value["generator"], b["state_dict"][key]["generator"]), key
    buf_a, buf_b = a["ReplayDataModule"]["buffer"], b["ReplayDataModule"]["buffer"]
    assert torch.equal(buf_a["priorities"], buf_b["priorities"])


def test_rainbow_cartpole_preset_runs(tmp_path: Path) -> None:
    results = train_in_process(
        tmp_path,
        [
            "experiment=rainbow_cartpole",
            "trainer=debug",
            "logger=csv",
            "total_env_steps=1500",
            "algo.learning_starts=500",
        ],
    )
    assert results["status"] == "completed" and results["eval_episodes"] == 2


@pytest.mark.parametrize(
    ("experiment", "env", "expected"),
    [
        (
            "rainbow_atari",
            "breakout",
            {"algo.lr": 6.25e-5, "algo.target_update_every": 8000, "buffer.capacity": 10**6},
        ),
        (
            "rainbow_atari100k",
            "breakout",
            {"total_env_steps": 100_000, "buffer.n_step": 20, "network.sigma0": 0.1},
        ),
        (
            "rainbow_minatar",
            "minatar_breakout",
            {"algo.v_max": 100.0, "buffer.capacity": 100_000, "network.noisy": True},
        ),
    ],
)
def test_env_family_presets_compose(experiment: str, env: str, expected: dict[str, Any]) -> None:
    cfg = compose_cfg([f"experiment={experiment}"])
    assert cfg.env.name == env and cfg.algo.name == "rainbow"
    assert cfg.algo.distributional and cfg.network.dueling and cfg.algo.double
    assert cfg.buffer.beta_steps == cfg.total_env_steps
    for key, value in expected.items():
        assert select(cfg, key) == value, key


# what each ablation variant must differ in from full Rainbow
ABLATION: dict[str, dict[str, Any]] = {
    "rainbow": {},
    "no_double": {"algo.double": False},
    "no_prioritized": {"buffer.alpha": 0.0},
    "no_dueling": {"network.dueling": False},
    "no_multistep": {"buffer.n_step": 1},
    "no_distributional": {"algo.distributional": False},
    "no_noisy": {"network.noisy": False, "sampler.start": 1.0, "sampler.end": 0.01},
    "dqn": {
        "algo.double": False,
        "buffer.alpha": 0.0,
        "network.dueling": False,
        "buffer.n_step": 1,
        "algo.distributional": False,
        "network.noisy": False,
        "sampler.start": 1.0,
        "sampler.end": 0.01,
    },
}
FULL = {
    "algo.double": True,
    "buffer.alpha": 0.5,
    "network.dueling": True,
    "buffer.n_step": 3,
    "algo.distributional": True,
    "network.noisy": True,
    "sampler.start": 0.0,
    "sampler.end": 0.0,
}


def test_ablation_sweeps_every_variant_over_seeds() -> None:
    sweep = OmegaConf.load(CONF / "experiment" / "rainbow_ablation.yaml").hydra.sweeper.params
    assert sweep.variant.split(",") == list(ABLATION)
    assert sweep.seed == "0,1,2"
    for variant, changes in ABLATION.items():
        cfg = compose_cfg(["experiment=rainbow_ablation", f"variant={variant}"])
        assert cfg.variant == variant and cfg.algo.name == variant
        for key, full in FULL.items():
            assert select(cfg, key) == changes.get(key, full), (variant, key)


def test_unknown_ablation_variant_is_a_one_line_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        train_in_process(tmp_path, ["experiment=rainbow_ablation", "variant=no_rainbow"])
    assert str(info.value) == f"variant=no_rainbow: allowed {', '.join(ABLATION)}"


def test_ablation_multirun_tags_runs_with_their_variant(tmp_path: Path) -> None:
    """The real ``rlbench -m experiment=rainbow_ablation`` on CartPole (three variants)."""
    from rlbench.analysis.runs import discover_runs, group_runs

    proc = run_cli(
        [
            "-m",
            "experiment=rainbow_ablation",
            "env=cartpole",
            "network=mlp",
            "trainer=debug",
            "logger=csv",
            "total_env_steps=300",
            "algo.learning_starts=100",
            "algo.batch_size=16",
            "algo.v_min=0",
            "algo.v_max=100",
            "variant=rainbow,no_noisy,dqn",  # command-line sweeps replace the preset's
            "seed=0",
            f"hydra.sweep.dir={tmp_path}",
        ],
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = discover_runs([tmp_path])
    assert sorted(r.path.name for r in runs) == [
        "0_rainbow-CartPole-v1_seed0",
        "1_no_noisy-CartPole-v1_seed0",
        "2_dqn-CartPole-v1_seed0",
    ]
    assert all(r.status == "completed" for r in runs)
    groups = group_runs(runs)
    assert sorted(groups) == [
        ("dqn", "CartPole-v1"),
        ("no_noisy", "CartPole-v1"),
        ("rainbow", "CartPole-v1"),
    ]
