"""Policy heads: distribution maths, numpy acting vs torch training."""

from __future__ import annotations

import copy
import functools
import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlbench.errors import ConfigError
from rlbench.networks import MLP
from rlbench.networks.policy import (
    ActorCritic,
    categorical_log_prob_entropy,
    gaussian_entropy,
    gaussian_log_prob,
    sample_categorical,
    sample_gaussian,
)

ENCODER = functools.partial(MLP, hidden=(16, 16), activation="tanh")


def test_gaussian_log_prob_and_entropy_hand_values_and_torch() -> None:
    # standard normal at its mean: -log sqrt(2 pi); entropy 0.5 + log sqrt(2 pi)
    lp = gaussian_log_prob(torch.zeros(1, 1), torch.zeros(1), torch.zeros(1, 1))
    assert float(lp) == pytest.approx(-0.5 * math.log(2 * math.pi))
    assert float(gaussian_entropy(torch.zeros(1))) == pytest.approx(
        0.5 + 0.5 * math.log(2 * math.pi)
    )
    # N(1, 2^2) at 3: -(1/2) - log 2 - log sqrt(2 pi)
    lp = gaussian_log_prob(torch.ones(1, 1), torch.tensor([math.log(2.0)]), torch.full((1, 1), 3.0))
    assert float(lp) == pytest.approx(-0.5 - math.log(2.0) - 0.5 * math.log(2 * math.pi))
    torch.manual_seed(0)
    mean, log_std, a = torch.randn(5, 3), torch.randn(3), torch.randn(5, 3)
    ref = torch.distributions.Normal(mean, log_std.exp())
    torch.testing.assert_close(gaussian_log_prob(mean, log_std, a), ref.log_prob(a).sum(-1))
    torch.testing.assert_close(gaussian_entropy(log_std), ref.entropy()[0].sum())


def test_categorical_log_prob_and_entropy_hand_values() -> None:
    logits = torch.tensor([[0.0, math.log(3.0)]])  # probabilities 1/4, 3/4
    lp, ent = categorical_log_prob_entropy(logits, torch.tensor([1]))
    assert float(lp) == pytest.approx(math.log(0.75))
    assert float(ent) == pytest.approx(-(0.25 * math.log(0.25) + 0.75 * math.log(0.75)))


def test_numpy_samplers_match_their_distributions() -> None:
    rng = np.random.default_rng(0)
    logits = np.tile(np.array([[0.0, math.log(3.0), -1e9]], np.float32), (20_000, 1))
    actions, lp = sample_categorical(logits, rng)
    assert set(np.unique(actions)) == {0, 1}  # probability 0 is never drawn
    assert actions.mean() == pytest.approx(0.75, abs=0.01)
    ref, _ = categorical_log_prob_entropy(torch.from_numpy(logits), torch.from_numpy(actions))
    np.testing.assert_allclose(lp, ref.numpy(), rtol=1e-5, atol=1e-6)

    mean = np.tile(np.array([[1.0, -2.0]], np.float32), (20_000, 1))
    log_std = np.array([0.0, math.log(0.5)], np.float32)
    a, lp = sample_gaussian(mean, log_std, rng)
    np.testing.assert_allclose(a.mean(0), [1.0, -2.0], atol=0.02)
    np.testing.assert_allclose(a.std(0), [1.0, 0.5], rtol=0.02)
    ref = gaussian_log_prob(torch.from_numpy(mean), torch.from_numpy(log_std), torch.from_numpy(a))
    np.testing.assert_allclose(lp, ref.numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "space",
    [gym.spaces.Discrete(3), gym.spaces.Discrete(3, start=-1), gym.spaces.Box(-1, 1, (2,))],
)
@pytest.mark.parametrize("shared", [False, True])
def test_numpy_acting_agrees_with_torch_evaluation(space: gym.Space, shared: bool) -> None:
    torch.manual_seed(0)
    ac = ActorCritic(
        ENCODER, obs_shape=(4,), action_space=space, critic=True, shared_encoder=shared
    )
    obs = np.random.default_rng(1).normal(size=(6, 4)).astype(np.float32)
    actions, log_prob = ac.act(obs, np.random.default_rng(2), explore=True)
    values = ac.values(obs)
    assert actions.shape == (6, *space.shape)
    if isinstance(space, gym.spaces.Discrete):  # Gaussian samples are clipped env-side
        assert all(space.contains(a) for a in actions)
    lp, ent, v = ac.evaluate(torch.from_numpy(obs), torch.from_numpy(actions))
    assert v is not None and lp.shape == ent.shape == v.shape == (6,)
    np.testing.assert_allclose(log_prob, lp.detach().numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(values, v.detach().numpy(), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(ac.log_prob(torch.from_numpy(obs), torch.from_numpy(actions)), lp)
    mode, _ = ac.act(obs, np.random.default_rng(2), explore=False)
    assert mode.shape == actions.shape
    if shared:
        assert ac.value is not None and ac.value[0] is ac.policy[0]
        n_params = sum(p.numel() for p in ac.parameters())
        separate = ActorCritic(ENCODER, obs_shape=(4,), action_space=space, critic=True)
        assert n_params < sum(p.numel() for p in separate.parameters())


def test_acting_follows_weight_updates_and_copies_do_not_share_them() -> None:
    torch.manual_seed(0)
    ac = ActorCritic(ENCODER, obs_shape=(4,), action_space=gym.spaces.Discrete(2), critic=True)
    obs = np.ones((1, 4), np.float32)
    before = ac.values(obs).copy()
    clone = copy.deepcopy(ac)
    with torch.no_grad():
        for p in ac.parameters():
            p.add_(0.5)
    after = ac.values(obs)
    assert not np.allclose(before, after)
    with torch.no_grad():
        value = ac.evaluate(torch.from_numpy(obs), torch.zeros(1))[2]
    assert value is not None
    np.testing.assert_allclose(after, value.numpy(), rtol=1e-5)
    np.testing.assert_allclose(clone.values(obs), before)


def test_orthogonal_init_gains_and_critic_free_values() -> None:
    torch.manual_seed(0)
    ac = ActorCritic(ENCODER, obs_shape=(4,), action_space=gym.spaces.Discrete(2), critic=False)
    assert ac.value is None and not ac.has_critic
    assert float(ac.head.weight.detach().abs().max()) < 0.05  # gain 0.01 policy head
    assert float(ac.head.bias.detach().abs().max()) == 0.0
    np.testing.assert_array_equal(ac.values(np.ones((3, 4), np.float32)), np.zeros(3))
    _, _, v = ac.evaluate(torch.ones(3, 4), torch.zeros(3))
    assert v is None


def test_gaussian_log_std_is_a_state_independent_parameter() -> None:
    ac = ActorCritic(
        ENCODER,
        obs_shape=(4,),
        action_space=gym.spaces.Box(-1, 1, (3,)),
        critic=False,
        init_log_std=-0.5,
    )
    names = dict(ac.named_parameters())
    assert "head.log_std" in names and names["head.log_std"].shape == (3,)
    _, ent, _ = ac.evaluate(torch.randn(5, 4), torch.randn(5, 3))
    torch.testing.assert_close(ent, gaussian_entropy(torch.full((3,), -0.5)).expand(5))


def test_unsupported_action_space_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="Discrete and 1-d Box"):
        ActorCritic(
            ENCODER, obs_shape=(4,), action_space=gym.spaces.MultiDiscrete([2, 2]), critic=True
        )
