"""Q heads: NoisyLinear, dueling aggregation, distributional atoms and their numpy path."""

from __future__ import annotations

import functools
import io
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rlbench.networks import MLP, numpy_forward
from rlbench.networks.heads import HeadOptions, NoisyLinear, QHead, split_head_options

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


@pytest.mark.parametrize("dueling", [False, True])
@pytest.mark.parametrize("noisy", [False, True])
@pytest.mark.parametrize("num_atoms", [1, 7])
def test_numpy_path_matches_torch(dueling: bool, noisy: bool, num_atoms: int) -> None:
    torch.manual_seed(0)
    head = QHead(16, 3, dueling=dueling, noisy=noisy, num_atoms=num_atoms, v_min=-1.0, seed=3)
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
    network = functools.partial(MLP, hidden=[8], dueling=True, noisy=True, sigma0=0.3)
    encoder, options = split_head_options(network)
    assert options == HeadOptions(dueling=True, noisy=True, sigma0=0.3)
    assert isinstance(encoder, functools.partial) and encoder.keywords == {"hidden": [8]}
    assert encoder(in_shape=(4,)).out_features == 8
    again, same = split_head_options(encoder)  # split twice (CLI, then the module)
    assert same == options and again(in_shape=(4,)).out_features == 8
    plain, defaults = split_head_options(functools.partial(MLP, hidden=[8]))
    assert defaults == HeadOptions() and plain(in_shape=(4,)).out_features == 8
