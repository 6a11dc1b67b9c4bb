"""Image encoders: shapes, in-network scaling of uint8 input, network=auto, errors."""

from __future__ import annotations

import pytest
import torch

from rlbench.errors import ConfigError
from rlbench.networks.cnn import (
    DataEfficientCNN,
    ImpalaCNN,
    MinAtarCNN,
    NatureCNN,
    auto_encoder,
)
from rlbench.networks.mlp import MLP


@pytest.mark.parametrize(
    ("cls", "shape", "features"),
    [
        (NatureCNN, (4, 84, 84), 512),
        (ImpalaCNN, (4, 84, 84), 256),
        (MinAtarCNN, (7, 10, 10), 128),
    ],
)
def test_uint8_in_features_out(cls: type, shape: tuple[int, ...], features: int) -> None:
    torch.manual_seed(0)
    net = cls(in_shape=shape)
    x = torch.randint(0, 256 if cls is not MinAtarCNN else 2, (5, *shape), dtype=torch.uint8)
    out = net(x)
    assert out.shape == (5, features) and out.dtype == torch.float32
    assert net.out_features == features
    out.sum().backward()
    assert all(p.grad is not None for p in net.parameters())


def test_nature_cnn_layer_sizes_and_scaling_inside_the_network() -> None:
    net = NatureCNN(in_shape=(4, 84, 84))
    assert net.fc[1].in_features == 64 * 7 * 7  # Mnih et al. 2015: 3136 -> 512
    x = torch.randint(0, 256, (2, 4, 84, 84), dtype=torch.uint8)
    torch.testing.assert_close(net(x), net(x.float()))  # uint8 or float pixels alike
    unscaled = NatureCNN(in_shape=(4, 84, 84), input_scale=1.0)
    unscaled.load_state_dict(net.state_dict())
    torch.testing.assert_close(unscaled(x.float() / 255.0), net(x))


@pytest.mark.parametrize(
    ("cls", "shape", "flat"),
    [
        (NatureCNN, (4, 84, 84), 64 * 7 * 7),  # Mnih et al. 2015: 84 -> 20 -> 9 -> 7
        (DataEfficientCNN, (4, 84, 84), 64 * 3 * 3),  # van Hasselt et al. 2019: 84 -> 16 -> 3
        (ImpalaCNN, (3, 64, 64), 32 * 8 * 8),  # three stacks halve 64 three times
        (MinAtarCNN, (7, 10, 10), 16 * 8 * 8),
    ],
)
def test_hidden_zero_outputs_the_flattened_conv_maps(
    cls: type, shape: tuple[int, ...], flat: int
) -> None:
    """``hidden=0``: no fully connected layer, for heads with their own hidden layers."""
    net = cls(in_shape=shape, hidden=0)
    assert net.out_features == flat
    assert not any(isinstance(m, torch.nn.Linear) for m in net.modules())
    x = torch.randint(0, 2, (3, *shape), dtype=torch.uint8)
    torch.testing.assert_close(net(x), net.convs(x.float() * net.input_scale).flatten(1))


def test_default_fully_connected_layer_is_unchanged() -> None:
    """The default keeps its layer and parameter names (checkpoints load as before)."""
    net = DataEfficientCNN(in_shape=(4, 84, 84))
    assert [k for k in net.state_dict() if k.startswith("fc.")] == ["fc.1.weight", "fc.1.bias"]
    assert net.fc[1].in_features == 576 and net.out_features == 256


def test_impala_halves_the_side_per_stack() -> None:
    net = ImpalaCNN(in_shape=(3, 64, 64), channels=(8, 16))
    assert net.fc[1].in_features == 16 * 16 * 16


@pytest.mark.parametrize(
    ("shape", "kind"),
    [((4,), MLP), ((4, 84, 84), NatureCNN), ((1, 64, 64), NatureCNN), ((4, 10, 10), MinAtarCNN)],
)
def test_auto_picks_by_observation_shape(shape: tuple[int, ...], kind: type) -> None:
    assert isinstance(auto_encoder(in_shape=shape), kind)


def test_auto_mlp_is_the_mlp_option() -> None:
    torch.manual_seed(3)
    a = auto_encoder(in_shape=(4,), hidden=(16,), activation="tanh")
    torch.manual_seed(3)
    b = MLP((4,), hidden=(16,), activation="tanh")
    x = torch.randn(3, 4)
    torch.testing.assert_close(a(x), b(x))


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: NatureCNN(in_shape=(4,)), "channel-first image"),
        (lambda: NatureCNN(in_shape=(4, 10, 10)), "at least 36x36"),
        (lambda: MinAtarCNN(in_shape=(4, 10, 10), channels=0), "channels=0"),
        (lambda: ImpalaCNN(in_shape=(4, 84, 84), hidden=-1), "hidden=-1"),
        (lambda: NatureCNN(in_shape=(4, 84, 84), hidden=-2), "hidden=-2"),
    ],
)
def test_bad_shapes_and_sizes_are_config_errors(build: object, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        build()  # type: ignore[operator]
