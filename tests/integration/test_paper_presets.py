"""Presets that reproduce a paper use its env count and its replay ratio (gradient steps per
agent step), whatever the rest of the config: pinned here against the papers' tables."""

from __future__ import annotations

import pytest

from tests.conftest import compose_cfg

# preset: (env count, gradient steps per env step, torso, source)
PAPERS = {
    # Hessel et al. 2018, Table 1: one update every 4 agent steps, one actor
    "rainbow_atari": (1, 1 / 4, "rlbench.networks.cnn.NatureCNN"),
    # van Hasselt et al. 2019 (data-efficient Rainbow), Table 1 and appendix: one update per
    # agent step, one actor, the 32 5x5/5 + 64 5x5/5 torso
    "rainbow_atari100k": (1, 1.0, "rlbench.networks.cnn.DataEfficientCNN"),
    # Obando-Ceron & Castro 2021 (Dopamine's MinAtar Rainbow): one update every 4 steps
    "rainbow_minatar": (1, 1 / 4, "rlbench.networks.cnn.MinAtarCNN"),
    # CleanRL sac_continuous_action.py: one env, one update per env step
    "sac_mujoco": (1, 1.0, "rlbench.networks.cnn.auto_encoder"),
}


@pytest.mark.parametrize("preset", list(PAPERS))
def test_preset_matches_its_paper(preset: str) -> None:
    envs, ratio, torso = PAPERS[preset]
    cfg = compose_cfg([f"experiment={preset}"])
    assert cfg.env.num_envs == envs
    assert cfg.algo.gradient_steps / cfg.algo.train_every == pytest.approx(ratio)
    assert cfg.network._target_ == torso


def test_policy_gradient_atari_preset_evaluates_the_sampled_policy() -> None:
    assert compose_cfg(["experiment=ppo_atari"]).trainer.eval_deterministic is False
    assert compose_cfg(["experiment=rainbow_atari"]).trainer.eval_deterministic is True
