"""Networks and the numpy acting path."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from rlbench.networks import MLP, numpy_forward


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_numpy_forward_matches_torch(activation: str) -> None:
    torch.manual_seed(0)
    net = MLP((2, 3), 3, hidden=(32, 16), activation=activation)
    fn = numpy_forward(net)
    assert fn is not None
    x = np.random.default_rng(0).normal(size=(5, 2, 3)).astype(np.float32)
    expected = net(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(fn(x), expected, rtol=1e-5, atol=1e-6)


def test_numpy_forward_tracks_optimizer_steps_and_loads() -> None:
    torch.manual_seed(0)
    net = MLP(4, 2, hidden=(8,))
    fn = numpy_forward(net)
    assert fn is not None
    opt = torch.optim.Adam(net.parameters(), lr=0.1, fused=True)
    x = np.ones((1, 4), dtype=np.float32)
    before = fn(x).copy()
    net(torch.from_numpy(x)).sum().backward()
    opt.step()
    after = fn(x)
    assert not np.allclose(before, after)
    np.testing.assert_allclose(after, net(torch.from_numpy(x)).detach().numpy(), rtol=1e-5)
    other = MLP(4, 2, hidden=(8,))
    net.load_state_dict(other.state_dict())
    np.testing.assert_allclose(fn(x), other(torch.from_numpy(x)).detach().numpy(), rtol=1e-5)


def test_numpy_forward_refuses_unknown_layers() -> None:
    assert numpy_forward(nn.Sequential(nn.Linear(2, 2), nn.Dropout())) is None


def test_numpy_forward_does_not_modify_input() -> None:
    net = nn.Sequential(nn.Flatten(), nn.ReLU())
    fn = numpy_forward(net)
    assert fn is not None
    x = np.array([[-1.0, 2.0]], dtype=np.float32)
    fn(x)
    assert x[0, 0] == -1.0


def test_mlp_encoder_mode_and_bad_activation() -> None:
    enc = MLP(4, None, hidden=(16, 8))
    assert enc.out_features == 8
    assert enc(torch.zeros(3, 4)).shape == (3, 8)
    with pytest.raises(ValueError, match="activation"):
        MLP(4, 2, activation="gelu2")
