"""``scripts/bench_zoo_sb3.py`` trains SB3 with the values each DQN preset translates from the
zoo: the two must not drift apart, or the side-by-side compares different settings."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.conftest import compose_cfg

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import bench_zoo_sb3


@pytest.mark.parametrize("preset", sorted(bench_zoo_sb3.ZOO))
def test_sb3_values_are_the_presets(preset: str) -> None:
    env_id, steps, kw = bench_zoo_sb3.ZOO[preset]
    cfg = compose_cfg([f"experiment={preset}"])
    assert (cfg.env.id, cfg.total_env_steps) == (env_id, steps)
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


def test_unknown_presets_are_one_line_errors(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        bench_zoo_sb3.main(["--presets", "dqn_mountain"])
    assert "unknown presets dqn_mountain; allowed: dqn_acrobot" in capsys.readouterr().err
