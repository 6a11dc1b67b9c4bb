"""Presets that reproduce a paper use its env count and its replay ratio (gradient steps per
agent step), whatever the rest of the config: pinned here against the papers' tables."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from torch import nn

import rlbench.cli
from rlbench.networks.heads import NoisyLinear, QHead
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


class _AtariSpaces:
    """The spaces of a full-action-set Atari game, without an emulator: 4 stacked 84x84
    frames and 18 actions."""

    def spaces(self) -> tuple[gym.Space[np.ndarray], gym.Space[np.int64]]:
        return gym.spaces.Box(0, 255, (4, 84, 84), np.uint8), gym.spaces.Discrete(18)


def _noisy(n_in: int, n_out: int) -> int:
    """Parameters of a NoisyLinear: mean and sigma of the weights and of the biases."""
    return 2 * (n_in * n_out + n_out)


def _conv(c_in: int, c_out: int, k: int) -> int:
    return c_in * c_out * k * k + c_out


# preset: (conv parameters, conv feature width, per-stream hidden width, sigma0)
NETWORKS = {
    # Hessel et al. 2018: the Nature torso (84 -> 20 -> 9 -> 7), then the dueling streams of
    # Wang et al. 2016, each with its own 512-unit layer, every fully connected layer noisy
    "rainbow_atari": (_conv(4, 32, 8) + _conv(32, 64, 4) + _conv(64, 64, 3), 64 * 7 * 7, 512, 0.5),
    # van Hasselt et al. 2019: 32 5x5/5, 64 5x5/5 (84 -> 16 -> 3), 256 hidden units, sigma0 0.1
    "rainbow_atari100k": (_conv(4, 32, 5) + _conv(32, 64, 5), 64 * 3 * 3, 256, 0.1),
}


@pytest.mark.parametrize("preset", list(NETWORKS))
def test_rainbow_atari_networks_match_their_papers(preset: str) -> None:
    """Conv features feed a value and an advantage stream, each NoisyLinear(features, hidden)
    -> ReLU -> NoisyLinear(hidden, atoms [x actions]); no shared fully connected layer."""
    convs, features, hidden, sigma0 = NETWORKS[preset]
    cfg = compose_cfg([f"experiment={preset}"])
    module = rlbench.cli.build_module(cfg, _AtariSpaces())
    encoder, head = module.q_net
    assert isinstance(head, QHead)
    assert encoder.out_features == features  # the flattened conv maps
    assert not any(isinstance(m, nn.Linear) for m in encoder.modules())
    actions, atoms = 18, 51
    streams = {
        "out_hidden": (features, hidden),
        "out": (hidden, actions * atoms),
        "value_hidden": (features, hidden),
        "value": (hidden, atoms),
    }
    for name, (n_in, n_out) in streams.items():
        layer = getattr(head, name)
        assert isinstance(layer, NoisyLinear), name
        assert (layer.in_features, layer.out_features, layer.sigma0) == (n_in, n_out, sigma0)
    assert list(head.noisy_layers()) == [getattr(head, name) for name in streams]
    expected = convs + sum(_noisy(n_in, n_out) for n_in, n_out in streams.values())
    assert sum(p.numel() for p in module.q_net.parameters()) == expected
    # by hand for Rainbow: 77,984 conv + 2 * (3136 * 512 + 512) * 2 (hidden layers)
    # + 2 * (512 * 51 + 51) + 2 * (512 * 918 + 918) (outputs) = 7,496,754
    if preset == "rainbow_atari":
        assert expected == 7_496_754
    # both clip the global gradient norm at 10: DER does, and so does DeepMind's Rainbow
    assert cfg.algo.max_grad_norm == 10.0
