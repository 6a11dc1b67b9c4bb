"""Networks for continuous control: a tanh-squashed Gaussian actor and an ensemble of Q
critics over ``(observation, action)`` (SAC; later TD-MPC's policy prior).

Both put small heads on the configured encoder partial (``network=``), built where the
sizes are known: the actor's encoder reads observations, each critic's encoder reads the
observation and action concatenated (flat observations).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, cast

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from rlbench.losses import squashed_gaussian_log_prob
from rlbench.networks.numpy_forward import numpy_forward


def _flat_dim(shape: tuple[int, ...]) -> int:
    return int(math.prod(shape))


class SquashedGaussianActor(nn.Module):
    """``a = scale * tanh(u) + bias`` with ``u ~ N(mean(s), exp(log_std(s)))``.

    One network ``encoder -> Linear(2 * D)`` gives the mean and the raw log-std; the
    log-std is bounded smoothly to ``[log_std_min, log_std_max]`` by a scaled tanh
    (CleanRL's and SpinningUp's form). ``scale`` and ``bias`` map ``[-1, 1]`` onto the
    env's action bounds.

    Args:
        encoder: partial ``(in_shape=obs_shape) -> nn.Module`` with ``out_features``.
        obs_shape: single-env observation shape.
        action_space: a 1-d bounded ``Box``.
        log_std_min, log_std_max: bounds of the log standard deviation.
    """

    def __init__(
        self,
        encoder: Callable[..., nn.Module],
        *,
        obs_shape: tuple[int, ...],
        action_space: gym.spaces.Box,
        log_std_min: float = -5.0,
        log_std_max: float = 2.0,
    ) -> None:
        super().__init__()
        low, high = action_space.low.astype(np.float32), action_space.high.astype(np.float32)
        if not (np.isfinite(low).all() and np.isfinite(high).all()):
            raise ValueError(f"a squashed policy needs finite action bounds, not {action_space}")
        self.action_dim = int(action_space.shape[0])
        enc = encoder(in_shape=obs_shape)
        self.net = nn.Sequential(
            enc, nn.Linear(int(cast(Any, enc).out_features), 2 * self.action_dim)
        )
        self.log_std_min, self.log_std_max = log_std_min, log_std_max
        self.scale: torch.Tensor
        self.bias: torch.Tensor
        self.register_buffer("scale", torch.from_numpy((high - low) / 2.0))
        self.register_buffer("bias", torch.from_numpy((high + low) / 2.0))
        self._np_fn: Callable[[np.ndarray], np.ndarray] | None = None

    def _bound(self, raw: Any, tanh: Callable[[Any], Any]) -> Any:
        lo, hi = self.log_std_min, self.log_std_max
        return lo + 0.5 * (hi - lo) * (tanh(raw) + 1.0)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mean, log_std)``, each ``(B, D)``, for observations ``(B, *obs_shape)``."""
        mean, raw = self.net(obs).chunk(2, dim=-1)
        return mean, self._bound(raw, torch.tanh)

    def sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterized ``(actions (B, D), log_prob (B,))`` (gradients flow through)."""
        mean, log_std = self(obs)
        u = mean + log_std.exp() * torch.randn_like(mean)
        log_prob = squashed_gaussian_log_prob(u, mean, log_std, log_scale=self.scale.log())
        return torch.tanh(u) * self.scale + self.bias, log_prob

    # ---------------------------------------------------------------- acting (numpy)
    def reset_numpy(self) -> None:
        """Forget the cached acting function (after moving the module to another device)."""
        self._np_fn = None

    def _forward_numpy(self, obs: np.ndarray) -> np.ndarray:
        if self._np_fn is None:
            fn = numpy_forward(self.net) if self.scale.device.type == "cpu" else None
            self._np_fn = fn or self._torch_forward
        return self._np_fn(obs)

    def _torch_forward(self, obs: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            out = self.net(torch.as_tensor(obs, device=self.scale.device))
        return out.float().cpu().numpy()

    def act(self, obs: np.ndarray, rng: np.random.Generator | None) -> np.ndarray:
        """Actions ``(B, D)`` in the env's bounds for observations ``(B, *obs_shape)``:
        sampled with ``rng``, or the deterministic ``scale * tanh(mean) + bias`` for
        ``rng=None``. Over numpy views of the live weights where the network allows it."""
        mean, raw = np.split(self._forward_numpy(obs), 2, axis=-1)
        if rng is None:
            u = mean
        else:
            std = np.exp(self._bound(raw, np.tanh))
            u = mean + std * rng.standard_normal(mean.shape, dtype=np.float32)
        scale, bias = self.scale.cpu().numpy(), self.bias.cpu().numpy()
        return (np.tanh(u) * scale + bias).astype(np.float32, copy=False)

    def __deepcopy__(self, memo: dict[int, Any]) -> SquashedGaussianActor:
        import copy

        cls = type(self)
        new = cls.__new__(cls)
        memo[id(self)] = new
        for key, value in self.__dict__.items():
            setattr(new, key, copy.deepcopy(value, memo))
        new._np_fn = None  # closures over the original's weights
        return new


class QEnsemble(nn.Module):
    """``K`` independent critics ``Q_k(s, a) = head(encoder([s, a]))``; ``(B, ...) -> (K, B)``.

    Args:
        encoder: partial ``(in_shape=(obs_dim + action_dim,)) -> nn.Module``.
        obs_shape: single-env observation shape (flattened before the concatenation).
        action_dim: action size ``D``.
        num: number of critics (2 for SAC's clipped double Q).
    """

    def __init__(
        self,
        encoder: Callable[..., nn.Module],
        *,
        obs_shape: tuple[int, ...],
        action_dim: int,
        num: int = 2,
    ) -> None:
        super().__init__()
        in_dim = _flat_dim(obs_shape) + action_dim
        nets = []
        for _ in range(num):
            enc = encoder(in_shape=(in_dim,))
            nets.append(nn.Sequential(enc, nn.Linear(int(cast(Any, enc).out_features), 1)))
        self.critics = nn.ModuleList(nets)

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        x = torch.cat([obs.flatten(1).float(), action.float()], dim=-1)
        return torch.stack([q(x).squeeze(-1) for q in self.critics])
