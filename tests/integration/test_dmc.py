"""SAC on the DeepMind Control Suite (``env=dmc``) through the ``rlbench`` command with
``trainer=debug``: the files a run writes (results, metrics, checkpoint, video), resume
identical to a straight run, and env steps counted in simulator steps under action repeat."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

import rlbench.cli
from tests.conftest import compose_cfg, resume_in_process, run_cli, train_in_process

pytest.importorskip("dm_control")
pytest.importorskip("shimmy")

RUN = [
    "algo=sac",
    "env=dmc",
    "env.task=cartpole-swingup",
    "trainer=debug",
    "logger=csv",
    "network.hidden=[32,32]",
    "algo.batch_size=32",
    "algo.learning_starts=200",
    "trainer.eval_every=300",  # the resume test stops at 300: an evaluation step
    "trainer.checkpoint_every=300",
    "video.enabled=true",
    "video.max_steps=50",
]


def read_metrics(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "metrics.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    return [{k: v for k, v in r.items() if not k.startswith("perf/")} for r in rows]


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``rlbench algo=sac env=dmc env.task=cartpole-swingup ... total_env_steps=600``."""
    d = tmp_path_factory.mktemp("dmc_sac")
    proc = run_cli([*RUN, "total_env_steps=600", f"hydra.run.dir={d}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    return d


def test_sac_runs_on_cartpole_swingup_and_writes_its_results(straight: Path) -> None:
    results = json.loads((straight / "results.json").read_text())
    assert results["status"] == "completed" and results["env_steps"] == 600
    assert results["eval_episodes"] == 2 and math.isfinite(results["eval_return_mean"])
    assert 0.0 <= results["eval_return_mean"] <= 600.0  # rewards in [0, 1] per step
    rows = read_metrics(straight)
    assert any(r.get("train/critic_loss") for r in rows)
    assert [int(r["env_step"]) for r in rows if r.get("eval/return_mean")] == [300, 600]
    state = weights(straight)
    assert state["actor.net.0.1.weight"].shape == (32, 5)  # cart position (3) + velocity (2)
    torch.testing.assert_close(state["actor.scale"], torch.ones(1))  # one force in [-1, 1]
    config = OmegaConf.load(straight / ".hydra" / "config.yaml")
    assert (config.env.id, config.env.name) == (
        "dm_control/cartpole-swingup-v0",
        "cartpole-swingup",
    )
    from rlbench.callbacks.video import read_video

    videos = sorted((straight / "videos").glob("*.mp4"))
    assert [v.name for v in videos] == ["step000000600-episode-0.mp4"]
    frames = read_video(videos[0])
    assert frames.shape[0] >= 50 and frames.shape[1:] == (320, 320, 3) and frames.std() > 0


def test_resume_is_identical_to_a_straight_run(straight: Path, tmp_path: Path) -> None:
    """The physics comes back from the checkpoint exactly: a run stopped at 300 env steps and
    resumed to 600 matches the uninterrupted one (metrics and weights)."""
    train_in_process(tmp_path, [*RUN, "total_env_steps=300"])
    resume_in_process(tmp_path, ["total_env_steps=600"])
    assert read_metrics(tmp_path) == read_metrics(straight)
    a, b = weights(tmp_path), weights(straight)
    assert a.keys() == b.keys()
    for key in b:
        assert torch.equal(a[key], b[key]), key


def test_env_steps_count_simulator_steps_under_action_repeat(tmp_path: Path) -> None:
    """cartpole-swingup episodes last 1,000 simulator steps: with action repeat 2 the first
    ends at env step 1,000, after 500 agent steps, and no other ends by env step 1,200."""
    train_in_process(
        tmp_path,
        [*RUN[:-2], "env.action_repeat=2", "total_env_steps=1200", "trainer.eval_every=0"],
    )
    rows = read_metrics(tmp_path)
    ends = [
        (int(r["env_step"]), float(r["rollout/episode_length"]))
        for r in rows
        if r.get("rollout/episode_length")
    ]
    assert ends == [(1000, 500.0)]
    assert int(rows[-1]["env_step"]) == 1200


def test_sac_dmc_preset_shares_tdmpc2_dmc_env_and_updates_once_per_agent_step(
    tmp_path: Path,
) -> None:
    """``experiment=sac_dmc``, the SAC baseline beside ``tdmpc2_dmc``: the same env (task,
    action repeat 2) and seed phase in simulator steps, one gradient step per agent step; a
    short run of it trains."""
    cfg = compose_cfg(["experiment=sac_dmc"])
    assert OmegaConf.to_container(cfg.env) == OmegaConf.to_container(
        compose_cfg(["experiment=tdmpc2_dmc"]).env
    )
    assert (cfg.algo.name, cfg.env.action_repeat, cfg.total_env_steps) == ("sac", 2, 10**6)
    env = rlbench.cli._instantiate(cfg.env, _convert_="all")
    spec = rlbench.cli.build_module(cfg, env).data_spec
    assert spec.learning_starts == 5000 and spec.ratio * env.step_multiplier == 1.0
    results = train_in_process(
        tmp_path,
        [
            "experiment=sac_dmc",
            "trainer=debug",
            "logger=csv",
            "total_env_steps=600",
            "algo.learning_starts=200",
            "network.hidden=[32,32]",
            "algo.batch_size=32",
        ],
    )
    assert results["status"] == "completed" and results["env_steps"] == 600
    assert any(r.get("train/critic_loss") for r in read_metrics(tmp_path))
