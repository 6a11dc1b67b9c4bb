"""Multi-layer perceptron encoder for flat observations."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "silu": nn.SiLU,
}


def activation(name: str) -> nn.Module:
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"network.activation='{name}': allowed {', '.join(ACTIVATIONS)}") from None


class MLP(nn.Sequential):
    """``Flatten -> [Linear -> act] * len(hidden) [-> Linear(out_features)]``.

    The encoder protocol every ``network=`` option follows: built as
    ``network(in_shape=obs_shape)`` inside the module, it maps ``(B, *in_shape)`` to
    ``(B, out_features)`` and exposes ``out_features``; algorithms put their heads on top.
    With ``out_features`` given the last layer is linear (a complete network).
    """

    def __init__(
        self,
        in_shape: Sequence[int] | int,
        out_features: int | None = None,
        *,
        hidden: Sequence[int] = (120, 84),
        activation: str = "relu",
    ) -> None:
        layers: list[nn.Module] = [nn.Flatten(start_dim=1)]
        width = in_shape if isinstance(in_shape, int) else int(math.prod(in_shape))
        for h in hidden:
            layers += [nn.Linear(width, h), globals()["activation"](activation)]
            width = h
        if out_features is not None:
            layers.append(nn.Linear(width, out_features))
            width = out_features
        super().__init__(*layers)
        self.out_features = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float())
