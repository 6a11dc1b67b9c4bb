"""Image encoders: shapes, in-network scaling of uint8 input, network=auto, errors."""

from __future__ import annotations

import pytest
import torch

from rlbench.errors import ConfigError
from rlbench.networks.cnn import ImpalaCNN, MinAtarCNN, NatureCNN, auto_encoder
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
        (lambda: ImpalaCNN(in_shape=(4, 84, 84), hidden=0), "hidden=0"),
    ],
)
def test_bad_shapes_and_sizes_are_config_errors(build: object, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        build()  # type: ignore[operator]
