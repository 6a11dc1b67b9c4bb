"""Convolutional encoders for image observations, and ``network=auto``.

Every encoder follows the protocol of ``MLP``: built as ``network(in_shape=obs_shape)``
inside the module, it maps ``(B, *in_shape)`` to ``(B, out_features)`` features and exposes
``out_features``; algorithms put their heads on top. Images arrive as stored -- uint8,
channel-first ``(C, H, W)`` -- and are converted to float and scaled *inside* the network
(``x.float() * input_scale``), so replay memory stays one byte per pixel.

- ``NatureCNN``: Mnih et al. 2015 (DQN): 32 8x8/4, 64 4x4/2, 64 3x3/1, then 512 units.
- ``DataEfficientCNN``: van Hasselt et al. 2019 (data-efficient Rainbow, Atari 100k):
  32 5x5/5, 64 5x5/5, then 256 units.
- ``ImpalaCNN``: Espeholt et al. 2018: three stacks of conv 3x3, max-pool 3x3/2 and two
  residual blocks (16, 32, 32 channels), then 256 units.
- ``MinAtarCNN``: Young & Tian 2019: one conv 3x3/1 with 16 channels, then 128 units.
- ``auto_encoder``: picks by observation shape (see its docstring).

Each takes ``hidden: 0`` to stop at the flattened conv features (no fully connected layer),
e.g. under a Q head with per-stream hidden layers (``network.head_hidden``), as in Rainbow.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from rlbench.errors import ConfigError
from rlbench.networks.mlp import MLP

#: Scale of 8-bit pixels: uint8 0..255 -> 0..1.
PIXEL_SCALE = 1.0 / 255.0
#: ``auto_encoder`` uses ``NatureCNN`` from this image side on (Atari: 84), else MinAtar's.
NATURE_MIN_SIDE = 36


def _image_shape(in_shape: Sequence[int] | int, name: str) -> tuple[int, int, int]:
    shape = (in_shape,) if isinstance(in_shape, int) else tuple(int(s) for s in in_shape)
    if len(shape) != 3:
        raise ConfigError(
            f"network={name} needs channel-first image observations (C, H, W); got shape "
            f"{shape} (use network=mlp or network=auto)"
        )
    return shape[0], shape[1], shape[2]


def _flat_size(convs: nn.Module, shape: tuple[int, int, int]) -> int:
    with torch.no_grad():
        return int(math.prod(convs(torch.zeros(1, *shape)).shape[1:]))


class _ImageEncoder(nn.Module):
    """``float(x) * input_scale -> convs -> flatten [-> Linear(hidden) -> ReLU]``.

    ``hidden = 0`` leaves out the fully connected layer: the features are the flattened
    conv maps, for heads that bring their own hidden layers (Rainbow's per-stream layers,
    ``network.head_hidden``).
    """

    def __init__(
        self, convs: nn.Module, shape: tuple[int, int, int], hidden: int, input_scale: float
    ) -> None:
        super().__init__()
        if hidden < 0:
            raise ConfigError(
                f"network.hidden={hidden}: must be >= 0 (0: no fully connected layer)"
            )
        self.input_scale = input_scale
        self.convs = convs
        flat = _flat_size(convs, shape)
        layers: list[nn.Module] = [nn.Flatten(start_dim=1)]
        if hidden:
            layers += [nn.Linear(flat, hidden), nn.ReLU()]
        self.fc = nn.Sequential(*layers)
        self.out_features = hidden or flat

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` uint8 (or float on the same scale) -> ``(B, out_features)``."""
        return self.fc(self.convs(x.float() * self.input_scale))


class NatureCNN(_ImageEncoder):
    """The DQN encoder of Mnih et al. 2015 (see module docstring).

    Args:
        in_shape: ``(C, H, W)``, e.g. ``(4, 84, 84)`` stacked Atari frames.
        hidden: width of the fully connected layer (``out_features``); 0: none, the
            features are the flattened conv maps.
        input_scale: multiplies the float input (1/255 for uint8 pixels).
    """

    def __init__(
        self,
        in_shape: Sequence[int] | int,
        *,
        hidden: int = 512,
        input_scale: float = PIXEL_SCALE,
    ) -> None:
        shape = _image_shape(in_shape, "nature_cnn")
        if min(shape[1:]) < NATURE_MIN_SIDE:
            raise ConfigError(
                f"network=nature_cnn needs images of at least {NATURE_MIN_SIDE}x"
                f"{NATURE_MIN_SIDE}; got {shape} (use network=minatar_cnn or network=auto)"
            )
        convs = nn.Sequential(
            nn.Conv2d(shape[0], 32, 8, stride=4),
            nn.ReLU(),
            nn.Conv2d(32, 64, 4, stride=2),
            nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=1),
            nn.ReLU(),
        )
        super().__init__(convs, shape, hidden, input_scale)


class DataEfficientCNN(_ImageEncoder):
    """Data-efficient Rainbow's torso (van Hasselt et al. 2019, appendix): two strided convs
    ``32 5x5/5, 64 5x5/5`` (84x84 -> 16x16 -> 3x3), then ``hidden`` units (256 there).

    Args:
        in_shape: ``(C, H, W)``, e.g. ``(4, 84, 84)`` stacked Atari frames.
        hidden: width of the fully connected layer (``out_features``); 0: none, the
            features are the flattened conv maps.
        input_scale: multiplies the float input (1/255 for uint8 pixels).
    """

    def __init__(
        self,
        in_shape: Sequence[int] | int,
        *,
        hidden: int = 256,
        input_scale: float = PIXEL_SCALE,
    ) -> None:
        shape = _image_shape(in_shape, "der_cnn")
        if min(shape[1:]) < 25:
            raise ConfigError(f"network=der_cnn needs images of at least 25x25; got {shape}")
        convs = nn.Sequential(
            nn.Conv2d(shape[0], 32, 5, stride=5),
            nn.ReLU(),
            nn.Conv2d(32, 64, 5, stride=5),
            nn.ReLU(),
        )
        super().__init__(convs, shape, hidden, input_scale)


class ResidualBlock(nn.Module):
    """``x + conv(relu(conv(relu(x))))`` with 3x3 convolutions keeping the shape."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv1(torch.relu(self.conv0(torch.relu(x))))


class ImpalaCNN(_ImageEncoder):
    """The IMPALA encoder of Espeholt et al. 2018 (see module docstring).

    Args:
        in_shape: ``(C, H, W)``.
        channels: channels of each conv stack (one stack halves the image side).
        hidden: width of the fully connected layer (``out_features``); 0: none, the
            features are the flattened conv maps.
        input_scale: multiplies the float input (1/255 for uint8 pixels).
    """

    def __init__(
        self,
        in_shape: Sequence[int] | int,
        *,
        channels: Sequence[int] = (16, 32, 32),
        hidden: int = 256,
        input_scale: float = PIXEL_SCALE,
    ) -> None:
        shape = _image_shape(in_shape, "impala_cnn")
        if not channels or min(channels) < 1:
            raise ConfigError(f"network.channels={list(channels)}: need positive widths")
        layers: list[nn.Module] = []
        width = shape[0]
        for c in channels:
            layers += [
                nn.Conv2d(width, c, 3, padding=1),
                nn.MaxPool2d(3, stride=2, padding=1),
                ResidualBlock(c),
                ResidualBlock(c),
            ]
            width = c
        layers.append(nn.ReLU())
        super().__init__(nn.Sequential(*layers), shape, hidden, input_scale)


class MinAtarCNN(_ImageEncoder):
    """The MinAtar encoder of Young & Tian 2019 (see module docstring).

    Args:
        in_shape: ``(C, 10, 10)`` channel-first MinAtar observations.
        channels: conv channels.
        hidden: width of the fully connected layer (``out_features``); 0: none, the
            features are the flattened conv maps.
        input_scale: multiplies the float input (MinAtar cells are 0/1: 1.0).
    """

    def __init__(
        self,
        in_shape: Sequence[int] | int,
        *,
        channels: int = 16,
        hidden: int = 128,
        input_scale: float = 1.0,
    ) -> None:
        shape = _image_shape(in_shape, "minatar_cnn")
        if channels < 1:
            raise ConfigError(f"network.channels={channels}: must be >= 1")
        convs = nn.Sequential(nn.Conv2d(shape[0], channels, 3, stride=1), nn.ReLU())
        super().__init__(convs, shape, hidden, input_scale)


def auto_encoder(
    in_shape: Sequence[int] | int,
    *,
    hidden: Sequence[int] = (120, 84),
    activation: str = "relu",
) -> nn.Module:
    """``network=auto``: the encoder for an observation shape.

    - flat ``(D,)`` (classic control, MuJoCo) or anything not 3-d: ``MLP(hidden,
      activation)``;
    - images ``(C, H, W)`` with ``min(H, W) >= 36`` (Atari 84x84 uint8 pixels):
      ``NatureCNN`` with its defaults;
    - smaller images (MinAtar ``(C, 10, 10)`` 0/1 cells): ``MinAtarCNN`` with its defaults.
    """
    shape = (in_shape,) if isinstance(in_shape, int) else tuple(int(s) for s in in_shape)
    if len(shape) != 3:
        return MLP(shape, hidden=hidden, activation=activation)
    if min(shape[1:]) >= NATURE_MIN_SIDE:
        return NatureCNN(shape)
    return MinAtarCNN(shape)
