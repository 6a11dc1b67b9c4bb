"""``scripts/bench_zoo_sb3.py`` trains SB3 with the values each DQN and PPO preset translates from
the zoo: the two must not drift apart, or the side-by-side compares different settings."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.conftest import compose_cfg

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import bench_zoo_sb3

DQN = sorted(p for p, z in bench_zoo_sb3.ZOO.items() if z.algo == "dqn")
PPO = sorted(p for p, z in bench_zoo_sb3.ZOO.items() if z.algo == "ppo")


def test_every_zoo_preset_is_checked() -> None:
    assert set(DQN) | set(PPO) == set(bench_zoo_sb3.ZOO) and DQN and PPO


@pytest.mark.parametrize("preset", DQN)
def test_sb3_dqn_values_are_the_presets(preset: str) -> None:
    zoo = bench_zoo_sb3.ZOO[preset]
    env_id, kw = zoo.env_id, zoo.kwargs
    cfg = compose_cfg([f"experiment={preset}"])
    assert (cfg.env.id, cfg.total_env_steps) == (env_id, zoo.steps)
    assert (zoo.n_envs, zoo.normalize) == (cfg.env.num_envs, False) == (1, cfg.env.normalize_obs)
    algo, sampler = cfg.algo, cfg.sampler
    assert kw["learning_rate"] == pytest.approx(algo.lr)
    assert kw["batch_size"] == algo.batch_size and kw["gamma"] == algo.gamma
    assert kw["buffer_size"] == cfg.buffer.capacity and cfg.buffer.n_step == 1
    assert kw["learning_starts"] == algo.learning_starts
    # SB3 counts the target period in env steps and copies (rlbench: tau 1)
    assert kw["target_update_interval"] == algo.target_update_every and algo.tau == 1.0
    # gradient_steps -1: as many as env steps collected (one env)
    grad = kw["train_freq"] if kw["gradient_steps"] == -1 else kw["gradient_steps"]
    if preset in bench_zoo_sb3.TUNED:  # the same gradient steps per env step, other phases
        assert set(bench_zoo_sb3.TUNED[preset]) == {"train_freq", "gradient_steps"}
        assert grad / kw["train_freq"] == algo.gradient_steps / algo.train_every
    else:
        assert (kw["train_freq"], grad) == (algo.train_every, algo.gradient_steps)
    assert (sampler.start, sampler.end) == (1.0, kw["exploration_final_eps"])
    assert sampler.decay_fraction == kw["exploration_fraction"]
    assert kw["policy_kwargs"]["net_arch"] == list(cfg.network.hidden)
    assert cfg.network.activation == "relu" and not algo.double  # SB3's DQN: ReLU, no double
    assert bench_zoo_sb3.preset_env(preset)["id"] == env_id


@pytest.mark.parametrize("preset", PPO)
def test_sb3_ppo_values_are_the_presets(preset: str) -> None:
    zoo = bench_zoo_sb3.ZOO[preset]
    kw = zoo.kwargs
    cfg = compose_cfg([f"experiment={preset}"])
    env, algo = cfg.env, cfg.algo
    assert (env.id, cfg.total_env_steps, env.num_envs) == (zoo.env_id, zoo.steps, zoo.n_envs)
    # normalize: true is VecNormalize on observations and rewards, gamma the algorithm's
    assert zoo.normalize == env.normalize_obs == env.normalize_reward
    assert env.reward_gamma == kw["gamma"] == algo.gamma
    assert (kw["n_steps"], kw["n_epochs"]) == (algo.num_steps, algo.epochs)
    assert (kw["gae_lambda"], kw["ent_coef"]) == (algo.gae_lambda, algo.ent_coef)
    # what the zoo leaves to SB3's defaults: lr 3e-4 constant, minibatches of 64, clip 0.2
    # without value clipping, vf 0.5, grad norm 0.5, separate 64-64 tanh actor and critic
    assert set(kw) == {"n_steps", "gae_lambda", "gamma", "n_epochs", "ent_coef"}
    assert algo.lr == pytest.approx(3e-4) and not algo.anneal_lr
    assert env.num_envs * algo.num_steps // algo.minibatches == 64
    assert (algo.clip_coef, algo.clip_value_loss) == (0.2, False)
    assert (algo.vf_coef, algo.max_grad_norm) == (0.5, 0.5) and algo.normalize_advantages
    assert list(cfg.network.hidden) == [64, 64] and cfg.network.activation == "tanh"
    assert not algo.shared_encoder


def test_unknown_presets_are_one_line_errors(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        bench_zoo_sb3.main(["--presets", "dqn_mountain"])
    assert "unknown presets dqn_mountain; allowed: dqn_acrobot" in capsys.readouterr().err
