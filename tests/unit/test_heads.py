"""Q heads: NoisyLinear, dueling aggregation, distributional atoms, per-stream hidden layers
and their numpy path."""

from __future__ import annotations

import functools
import io
import math

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rlbench.errors import ConfigError
from rlbench.networks import MLP, numpy_forward
from rlbench.networks.heads import (
    HeadOptions,
    NoisyLinear,
    QHead,
    derive_seed,
    split_head_options,
)

X = torch.tensor([[1.0, -2.0, 0.5], [0.0, 3.0, -1.0]])


def test_noisy_linear_init_follows_the_paper() -> None:
    torch.manual_seed(0)
    layer = NoisyLinear(16, 4, sigma0=0.5)
    assert layer.weight_mu.abs().max() <= 1 / math.sqrt(16)
    torch.testing.assert_close(layer.weight_sigma, torch.full((4, 16), 0.5 / 4))
    torch.testing.assert_close(layer.bias_sigma, torch.full((4,), 0.5 / 4))
    with pytest.raises(ValueError, match="sigma0"):
        NoisyLinear(2, 2, sigma0=0.0)


def test_noisy_linear_is_a_linear_layer_with_factorized_noisy_weights() -> None:
    layer = NoisyLinear(3, 2, seed=1)
    f_in, f_out = layer.eps_in, layer.eps_out
    weight = layer.weight_mu + layer.weight_sigma * torch.outer(f_out, f_in)
    bias = layer.bias_mu + layer.bias_sigma * f_out
    torch.testing.assert_close(layer(X), F.linear(X, weight, bias))
    # eps = sign(g) sqrt(|g|) of standard normal draws g: never all zero, |eps| = sqrt|g|
    assert f_in.abs().sum() > 0 and f_out.abs().sum() > 0


def test_noise_is_the_signed_square_root_of_standard_normal_draws() -> None:
    layer = NoisyLinear(3, 2, seed=11)  # draws its first noise on construction
    g = torch.Generator().manual_seed(11)
    eps = torch.randn(5, generator=g)
    torch.testing.assert_close(layer.noise, eps.sign() * eps.abs().sqrt())
    layer.reset_noise()
    eps = torch.randn(5, generator=g)
    torch.testing.assert_close(
        torch.cat([layer.eps_in, layer.eps_out]), eps.sign() * eps.abs().sqrt()
    )


def test_noise_is_resampled_only_when_asked() -> None:
    layer = NoisyLinear(3, 2, seed=1)
    first = layer(X)
    torch.testing.assert_close(layer(X), first)  # same noise until reset_noise
    layer.reset_noise()
    assert not torch.allclose(layer(X), first)


def test_deterministic_mode_uses_the_mean_weights() -> None:
    layer = NoisyLinear(3, 2, seed=1)
    layer.noise_enabled = False
    mean = F.linear(X, layer.weight_mu, layer.bias_mu)
    torch.testing.assert_close(layer(X), mean)
    layer.reset_noise()
    torch.testing.assert_close(layer(X), mean)


def test_noise_is_seeded_and_its_generator_is_checkpointed() -> None:
    a, b = NoisyLinear(3, 2, seed=7), NoisyLinear(3, 2, seed=7)
    torch.testing.assert_close(a.eps_in, b.eps_in)
    c = NoisyLinear(3, 2, seed=8)
    assert not torch.equal(a.eps_in, c.eps_in)
    a.reset_noise()
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    c.load_state_dict(torch.load(buf, weights_only=True))
    assert torch.equal(c.eps_in, a.eps_in) and torch.equal(c.eps_out, a.eps_out)
    a.reset_noise()
    c.reset_noise()  # the restored generator continues the same stream
    assert torch.equal(c.eps_in, a.eps_in) and torch.equal(c.eps_out, a.eps_out)


def test_dueling_aggregation_hand_case() -> None:
    head = QHead(2, 3, dueling=True)
    with torch.no_grad():
        head.out.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
        head.out.bias.zero_()
        assert head.value is not None
        head.value.weight.copy_(torch.tensor([[2.0, 0.0]]))
        head.value.bias.fill_(1.0)
    x = torch.tensor([[1.0, 2.0]])
    # A = [1, 2, 3], mean 2; V = 2*1 + 1 = 3; Q = V + A - mean(A) = [2, 3, 4]
    torch.testing.assert_close(head(x), torch.tensor([[2.0, 3.0, 4.0]]))


def test_distributional_head_returns_expected_values() -> None:
    torch.manual_seed(0)
    head = QHead(3, 2, num_atoms=5, v_min=-2.0, v_max=2.0)
    assert head.support is not None
    torch.testing.assert_close(head.support, torch.tensor([-2.0, -1.0, 0.0, 1.0, 2.0]))
    log_p = head.log_probs(X)
    assert log_p.shape == (2, 2, 5)
    torch.testing.assert_close(log_p.exp().sum(-1), torch.ones(2, 2))
    torch.testing.assert_close(head(X), (log_p.exp() * head.support).sum(-1))


def test_dueling_distributional_aggregates_logits_per_atom() -> None:
    torch.manual_seed(0)
    head = QHead(3, 4, dueling=True, num_atoms=3, v_min=0.0, v_max=2.0)
    assert head.value is not None
    adv = head.out(X).view(2, 4, 3)
    logits = head.value(X).view(2, 1, 3) + adv - adv.mean(dim=1, keepdim=True)
    torch.testing.assert_close(head.logits(X), logits)
    torch.testing.assert_close(head.log_probs(X), torch.log_softmax(logits, dim=-1))
    with pytest.raises(RuntimeError, match="distributional"):
        QHead(3, 2).log_probs(X)


@pytest.mark.parametrize("hidden", [0, 6])
@pytest.mark.parametrize("dueling", [False, True])
@pytest.mark.parametrize("noisy", [False, True])
@pytest.mark.parametrize("num_atoms", [1, 7])
def test_numpy_path_matches_torch(dueling: bool, noisy: bool, num_atoms: int, hidden: int) -> None:
    torch.manual_seed(0)
    head = QHead(
        16, 3, dueling=dueling, noisy=noisy, num_atoms=num_atoms, v_min=-1.0, hidden=hidden, seed=3
    )
    net = nn.Sequential(MLP(4, None, hidden=(16,)), head)
    fn = numpy_forward(net)
    assert fn is not None
    x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)

    def torch_q() -> np.ndarray:
        with torch.no_grad():
            return net(torch.from_numpy(x)).numpy()

    np.testing.assert_allclose(fn(x), torch_q(), rtol=1e-5, atol=1e-5)
    head.reset_noise()  # the numpy path reads the live noise
    np.testing.assert_allclose(fn(x), torch_q(), rtol=1e-5, atol=1e-5)
    head.set_noise(False)
    np.testing.assert_allclose(fn(x), torch_q(), rtol=1e-5, atol=1e-5)


def test_seed_noise_gives_independent_streams_per_layer() -> None:
    head = QHead(4, 2, dueling=True, noisy=True, seed=0)
    assert head.value is not None
    assert isinstance(head.out, NoisyLinear) and isinstance(head.value, NoisyLinear)
    assert not torch.equal(head.out.eps_in, head.value.eps_in)
    other = QHead(4, 2, dueling=True, noisy=True, seed=0)
    assert isinstance(other.out, NoisyLinear)
    assert torch.equal(head.out.eps_in, other.out.eps_in)
    other.seed_noise(1)
    assert not torch.equal(head.out.eps_in, other.out.eps_in)


def test_split_head_options_keeps_the_encoder_arguments() -> None:
    network = functools.partial(
        MLP, hidden=[8], dueling=True, noisy=True, sigma0=0.3, head_hidden=16
    )
    encoder, options = split_head_options(network)
    assert options == HeadOptions(dueling=True, noisy=True, sigma0=0.3, head_hidden=16)
    assert isinstance(encoder, functools.partial) and encoder.keywords == {"hidden": [8]}
    assert encoder(in_shape=(4,)).out_features == 8
    again, same = split_head_options(encoder)  # split twice (CLI, then the module)
    assert same == options and again(in_shape=(4,)).out_features == 8
    plain, defaults = split_head_options(functools.partial(MLP, hidden=[8]))
    assert defaults == HeadOptions() and plain(in_shape=(4,)).out_features == 8


# ---------------------------------------------------------------- per-stream hidden layers


def test_default_head_is_one_layer_per_stream_as_before() -> None:
    """``hidden=0`` (the default): the same layers, names, initial weights and noise as a
    head built before per-stream hidden layers existed."""
    torch.manual_seed(0)
    head = QHead(4, 3, dueling=True)
    torch.manual_seed(0)
    out, value = nn.Linear(4, 3), nn.Linear(4, 1)  # the old construction order
    assert head.out_hidden is None and head.value_hidden is None
    assert set(head.state_dict()) == {"out.weight", "out.bias", "value.weight", "value.bias"}
    assert isinstance(head.out, nn.Linear) and head.value is not None
    assert torch.equal(head.out.weight, out.weight) and torch.equal(head.value.bias, value.bias)
    noisy = QHead(4, 3, dueling=True, noisy=True, seed=5)
    assert [type(m) for m in noisy.children()] == [NoisyLinear, NoisyLinear]
    # noise seeded as before: layer i (out, then value) from derive_seed(seed, i)
    for i, (layer, width) in enumerate(zip(noisy.noisy_layers(), (3, 1), strict=True)):
        assert torch.equal(layer.noise, NoisyLinear(4, width, seed=derive_seed(5, i)).noise)


def test_hidden_layer_per_stream_hand_computed() -> None:
    """Each stream is ``Linear(in, hidden) -> ReLU -> Linear(hidden, out)`` on the features."""
    torch.manual_seed(0)
    head = QHead(3, 4, dueling=True, num_atoms=5, v_min=0.0, v_max=2.0, hidden=6)
    assert head.out_hidden is not None and head.value_hidden is not None
    assert head.value is not None
    shapes = {name: tuple(p.shape) for name, p in head.named_parameters() if "weight" in name}
    assert shapes == {
        "out_hidden.weight": (6, 3),
        "out.weight": (4 * 5, 6),
        "value_hidden.weight": (6, 3),
        "value.weight": (5, 6),
    }
    adv = head.out(torch.relu(head.out_hidden(X))).view(2, 4, 5)
    value = head.value(torch.relu(head.value_hidden(X))).view(2, 1, 5)
    torch.testing.assert_close(head.logits(X), value + adv - adv.mean(dim=1, keepdim=True))
    plain = QHead(3, 4, hidden=6)  # no dueling: one stream, no value layers
    assert plain.value_hidden is None and plain.value is None and plain.out_hidden is not None
    torch.testing.assert_close(plain(X), plain.out(torch.relu(plain.out_hidden(X))))


def test_noise_covers_every_noisy_layer_of_a_hidden_head() -> None:
    head = QHead(3, 4, dueling=True, noisy=True, num_atoms=5, v_min=0.0, hidden=6, seed=2)
    layers = list(head.noisy_layers())
    modules = [head.out_hidden, head.out, head.value_hidden, head.value]
    assert layers == modules and all(isinstance(m, NoisyLinear) for m in layers)
    # every layer draws from a stream of its own (the two hidden layers have the same shape)
    assert not torch.equal(layers[0].noise, layers[2].noise)
    before = [layer.noise.clone() for layer in layers]
    head.reset_noise()
    assert all(not torch.equal(a, layer.noise) for a, layer in zip(before, layers, strict=True))
    head.seed_noise(9)
    again = QHead(3, 4, dueling=True, noisy=True, num_atoms=5, v_min=0.0, hidden=6, seed=9)
    for a, b in zip(layers, again.noisy_layers(), strict=True):
        assert torch.equal(a.noise, b.noise)
    # evaluation: the mean weights in every layer, hidden ones included
    head.set_noise(False)
    assert not any(layer.noise_enabled for layer in layers)
    assert head.out_hidden is not None and head.value_hidden is not None and head.value is not None
    mean = [F.linear(X, m.weight_mu, m.bias_mu) for m in (head.out_hidden, head.value_hidden)]
    adv = F.linear(torch.relu(mean[0]), head.out.weight_mu, head.out.bias_mu).view(2, 4, 5)
    value = F.linear(torch.relu(mean[1]), head.value.weight_mu, head.value.bias_mu).view(2, 1, 5)
    torch.testing.assert_close(head.logits(X), value + adv - adv.mean(dim=1, keepdim=True))
    head.set_noise(True)
    assert not torch.allclose(head.logits(X), value + adv - adv.mean(dim=1, keepdim=True))


def test_hidden_head_checkpoint_restores_weights_noise_and_generators() -> None:
    a = QHead(3, 2, dueling=True, noisy=True, hidden=4, seed=1)
    b = QHead(3, 2, dueling=True, noisy=True, hidden=4, seed=2)
    a.reset_noise()
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    b.load_state_dict(torch.load(buf, weights_only=True))
    torch.testing.assert_close(b(X), a(X))
    a.reset_noise()
    b.reset_noise()  # every restored generator continues its stream
    for x, y in zip(a.noisy_layers(), b.noisy_layers(), strict=True):
        assert torch.equal(x.noise, y.noise)


def test_negative_head_hidden_is_a_one_line_error() -> None:
    with pytest.raises(ConfigError, match=r"network.head_hidden=-1"):
        split_head_options(functools.partial(MLP, head_hidden=-1))
    with pytest.raises(ValueError, match=r"hidden=-2"):
        QHead(3, 2, hidden=-2)


def test_dqn_acts_through_numpy_with_a_noisy_hidden_head() -> None:
    """``network.head_hidden`` reaches the module's head; acting takes the numpy path, which
    equals the torch forward, and every noisy layer is redrawn per exploring act and off
    for a greedy evaluation."""
    from rlbench.algos.dqn import DQN
    from rlbench.samplers import Greedy

    torch.manual_seed(0)
    network = functools.partial(MLP, hidden=[8], dueling=True, noisy=True, head_hidden=5)
    dqn = DQN(
        network=network,
        optimizer=functools.partial(torch.optim.Adam),
        sampler=Greedy(),
        distributional=True,
        num_atoms=7,
    )
    obs_space = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
    dqn.build_for(obs_space, gym.spaces.Discrete(4))
    head = dqn.head
    assert head.out_hidden is not None and head.out_hidden.out_features == 5
    layers = list(head.noisy_layers())
    assert len(layers) == 4 and len(list(dqn.target_head.noisy_layers())) == 4
    obs = np.random.default_rng(0).normal(size=(2, 3)).astype(np.float32)
    q_fn = dqn._q_fn()
    assert q_fn != dqn._torch_q  # the numpy path covers the hidden layers
    np.testing.assert_allclose(q_fn(obs), dqn._torch_q(obs), rtol=1e-5, atol=1e-5)

    before = [layer.noise.clone() for layer in layers]
    dqn.make_actor(num_envs=2).act(obs, first=np.ones(2, dtype=bool))
    assert all(not torch.equal(a, layer.noise) for a, layer in zip(before, layers, strict=True))
    assert all(layer.noise_enabled for layer in layers)
    np.testing.assert_allclose(q_fn(obs), dqn._torch_q(obs), rtol=1e-5, atol=1e-5)
    sampled = dqn.make_actor(num_envs=2, mode="eval", deterministic=False, seed=3)
    assert sampled.noise_generators is not None and len(sampled.noise_generators) == 4
    dqn.make_actor(num_envs=2, mode="eval").act(obs, first=np.ones(2, dtype=bool))
    assert not any(layer.noise_enabled for layer in layers)
    np.testing.assert_allclose(q_fn(obs), dqn._torch_q(obs), rtol=1e-5, atol=1e-5)
