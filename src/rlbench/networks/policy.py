"""Policy and value heads, and the actor-critic that combines them.

Heads go on top of any encoder (``network(in_shape=obs_shape)`` with ``out_features``):

- ``CategoricalHead``: ``(B, F) -> (B, A)`` logits for ``Discrete`` actions.
- ``GaussianHead``: ``(B, F) -> (B, D)`` means of a diagonal Gaussian whose log standard
  deviation is a state-independent parameter ``(D,)`` (Schulman et al. 2017; CleanRL's
  ``ppo_continuous_action.py``).
- ``ValueHead``: ``(B, F) -> (B,)`` state values.

Every head is an ``nn.Linear`` (the Gaussian one with an extra ``log_std``), so
``numpy_forward`` runs ``Sequential(encoder, head)`` over views of the live weights; the
numpy samplers below then draw actions with the caller's ``np.random.Generator``. The torch
methods (``log_prob_entropy``) compute the same quantities for training, without
``torch.distributions`` (whose argument validation costs more than the maths here).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any, cast

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from rlbench.errors import ConfigError
from rlbench.networks.numpy_forward import numpy_forward

LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)

NumpyFn = Callable[[np.ndarray], np.ndarray]


# ---------------------------------------------------------------------- pure functions
def categorical_log_prob_entropy(
    logits: torch.Tensor, actions: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probabilities ``(B,)`` of ``actions`` ``(B,)`` and entropies ``(B,)`` of the
    categorical distributions with ``logits`` ``(B, A)``."""
    log_p = torch.log_softmax(logits, dim=-1)
    log_prob = log_p.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)
    entropy = -(log_p.exp() * log_p).sum(-1)
    return log_prob, entropy


def gaussian_log_prob(
    mean: torch.Tensor, log_std: torch.Tensor, actions: torch.Tensor
) -> torch.Tensor:
    """Log-density ``(B,)`` of ``actions`` ``(B, D)`` under ``N(mean, diag(exp(log_std)^2))``
    with ``mean`` ``(B, D)`` and ``log_std`` ``(D,)`` or ``(B, D)``: the sum over dimensions
    of ``-(a - mu)^2 / (2 sigma^2) - log sigma - log sqrt(2 pi)``."""
    z = (actions - mean) * torch.exp(-log_std)
    return (-0.5 * z.pow(2) - log_std - LOG_SQRT_2PI).sum(-1)


def gaussian_entropy(log_std: torch.Tensor) -> torch.Tensor:
    """Entropy of a diagonal Gaussian: ``sum(0.5 + log sqrt(2 pi) + log_std)`` over the last
    dimension (``(D,) -> ()``, ``(B, D) -> (B,)``)."""
    return (0.5 + LOG_SQRT_2PI + log_std).sum(-1)


def sample_categorical(
    logits: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Actions ``(B,)`` int64 drawn from ``logits`` ``(B, A)`` by inverse CDF with one
    uniform per row from ``rng``, and their log-probabilities ``(B,)`` float32."""
    z = logits - logits.max(axis=1, keepdims=True)
    cdf = np.exp(z).cumsum(axis=1)
    total = cdf[:, -1]
    # the action is the number of CDF steps below u; the last one is never compared, so
    # u * total rounding up to total still gives a valid action
    actions = (cdf[:, :-1] < (rng.random(len(z)) * total)[:, None]).sum(axis=1)
    log_prob = z[np.arange(len(z)), actions] - np.log(total)
    return actions, log_prob.astype(np.float32, copy=False)


def sample_gaussian(
    mean: np.ndarray, log_std: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Actions ``(B, D)`` float32 drawn from ``N(mean, diag(exp(log_std)^2))`` and their
    log-densities ``(B,)`` float32 (actions are not clipped: the env side clips)."""
    noise = rng.standard_normal(mean.shape)
    actions = mean + np.exp(log_std) * noise
    log_prob = (-0.5 * noise**2 - log_std - LOG_SQRT_2PI).sum(axis=1)
    return actions.astype(np.float32), log_prob.astype(np.float32)


# ---------------------------------------------------------------------- modules
class CategoricalHead(nn.Linear):
    """``(B, F) -> (B, A)`` logits of a categorical policy."""

    def log_prob_entropy(
        self, logits: torch.Tensor, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return categorical_log_prob_entropy(logits, actions)

    def sample(self, logits: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        return sample_categorical(logits, rng)

    def mode(self, logits: np.ndarray) -> np.ndarray:
        return logits.argmax(axis=1).astype(np.int64)


class GaussianHead(nn.Linear):
    """``(B, F) -> (B, D)`` means of a diagonal Gaussian with a state-independent
    ``log_std`` parameter ``(D,)``, initialized to ``init_log_std``."""

    def __init__(self, in_features: int, out_features: int, *, init_log_std: float = 0.0):
        super().__init__(in_features, out_features)
        self.log_std = nn.Parameter(torch.full((out_features,), float(init_log_std)))

    def log_prob_entropy(
        self, mean: torch.Tensor, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        log_prob = gaussian_log_prob(mean, self.log_std, actions)
        return log_prob, gaussian_entropy(self.log_std).expand(mean.shape[0])

    def sample(self, mean: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        return sample_gaussian(mean, self.log_std.detach().cpu().numpy(), rng)

    def mode(self, mean: np.ndarray) -> np.ndarray:
        return mean.astype(np.float32)


class ValueHead(nn.Linear):
    """``(B, F) -> (B,)`` state values."""

    def __init__(self, in_features: int) -> None:
        super().__init__(in_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x).squeeze(-1)


def orthogonal_init_(module: nn.Module, *, gain: float) -> None:
    """Orthogonal weights with ``gain`` and zero biases for every ``nn.Linear`` and conv
    layer in ``module`` (the PPO initialization of Engstrom et al. 2020 and CleanRL)."""
    for m in module.modules():
        if isinstance(m, nn.Linear | nn.Conv2d | nn.Conv1d):
            nn.init.orthogonal_(m.weight, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class ActorCritic(nn.Module):
    """A policy ``Sequential(encoder, head)`` and, with ``critic``, a value network.

    Args:
        encoder: partial ``(in_shape=obs_shape) -> nn.Module`` with ``out_features``.
        obs_shape: single-env observation shape.
        action_space: ``Discrete`` (categorical head) or ``Box`` (Gaussian head).
        critic: build a value network ``(B, *obs_shape) -> (B,)``.
        shared_encoder: the value head sits on the policy's encoder (Atari-style) instead of
            an encoder of its own (MLP-style, CleanRL's ``ppo.py``).
        orthogonal_init: orthogonal init with gains sqrt(2) (hidden), 0.01 (policy head) and
            1 (value head).
        init_log_std: initial log standard deviation of a Gaussian policy.
    """

    def __init__(
        self,
        encoder: Callable[..., nn.Module],
        *,
        obs_shape: tuple[int, ...],
        action_space: gym.Space[Any],
        critic: bool,
        shared_encoder: bool = False,
        orthogonal_init: bool = True,
        init_log_std: float = 0.0,
    ) -> None:
        super().__init__()
        enc = encoder(in_shape=obs_shape)
        features = int(cast(Any, enc).out_features)
        self.head: CategoricalHead | GaussianHead
        if isinstance(action_space, gym.spaces.Discrete):
            self.head = CategoricalHead(features, int(action_space.n))
            self.action_start = int(action_space.start)
        elif isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1:
            self.head = GaussianHead(features, action_space.shape[0], init_log_std=init_log_std)
            self.action_start = 0
        else:
            raise ConfigError(
                f"policy heads support Discrete and 1-d Box action spaces, not {action_space}"
            )
        self.policy = nn.Sequential(enc, self.head)
        self.shared_encoder = shared_encoder and critic
        self.value: nn.Sequential | None = None
        if critic:
            v_enc = enc if shared_encoder else encoder(in_shape=obs_shape)
            self.value = nn.Sequential(v_enc, ValueHead(int(cast(Any, v_enc).out_features)))
        if orthogonal_init:
            for net in (self.policy, self.value):
                if net is not None:
                    orthogonal_init_(net[0], gain=math.sqrt(2.0))
            orthogonal_init_(self.head, gain=0.01)
            if self.value is not None:
                orthogonal_init_(self.value[1], gain=1.0)
        self._np_policy: NumpyFn | None = None
        self._np_value: NumpyFn | None = None

    @property
    def has_critic(self) -> bool:
        return self.value is not None

    # ---------------------------------------------------------------- training (torch)
    def evaluate(
        self, obs: torch.Tensor, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``(log_prob, entropy, value)``, each ``(B,)`` (``value`` ``None`` without a
        critic), for observations ``(B, *obs_shape)`` and actions ``(B, *action_shape)``."""
        encoder = self.policy[0]
        feats = encoder(obs)
        if self.action_start:
            actions = actions - self.action_start
        log_prob, entropy = self.head.log_prob_entropy(self.head(feats), actions)
        value: torch.Tensor | None = None
        if self.value is not None:
            value = self.value[1](feats) if self.shared_encoder else self.value(obs)
        return log_prob, entropy, value

    def log_prob(
        self, obs: torch.Tensor, actions: torch.Tensor, *, policy: nn.Sequential | None = None
    ) -> torch.Tensor:
        """``(B,)`` log-probabilities of ``actions`` under this policy or under ``policy``, a
        copy of ``self.policy`` (e.g. a frozen reference)."""
        net = self.policy if policy is None else policy
        if self.action_start:
            actions = actions - self.action_start
        head = cast(CategoricalHead | GaussianHead, net[-1])
        log_prob, _ = head.log_prob_entropy(net(obs), actions)
        return log_prob

    # ---------------------------------------------------------------- acting (numpy)
    def _numpy_fns(self) -> tuple[NumpyFn, NumpyFn | None]:
        if self._np_policy is None:
            self._np_policy = numpy_forward(self.policy) or self._torch_fn(self.policy)
            if self.value is not None:
                fn = numpy_forward(self.value)
                self._np_value = (lambda x: fn(x)[:, 0]) if fn else self._torch_fn(self.value)
        return self._np_policy, self._np_value

    @staticmethod
    def _torch_fn(net: nn.Module) -> NumpyFn:
        def forward(x: np.ndarray) -> np.ndarray:
            param = next(net.parameters())
            with torch.inference_mode():
                out = net(torch.as_tensor(x, device=param.device))
            return out.float().cpu().numpy()

        return forward

    def reset_numpy(self) -> None:
        """Forget the cached acting functions (after moving the module to another device)."""
        self._np_policy = self._np_value = None

    def act(
        self, obs: np.ndarray, rng: np.random.Generator, *, explore: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(actions, log_prob)`` for observations ``(B, *obs_shape)``: actions
        ``(B, *action_shape)`` sampled from ``rng`` (``explore``) or the mode, and their
        log-probabilities ``(B,)`` (zeros for the mode).

        Runs over numpy views of the live weights where the networks allow it (CPU, layers
        ``numpy_forward`` knows), otherwise a torch forward under ``inference_mode``.
        """
        params = (self._np_policy or self._numpy_fns()[0])(obs)
        if explore:
            actions, log_prob = self.head.sample(params, rng)
        else:
            actions, log_prob = self.head.mode(params), np.zeros(len(params), np.float32)
        if self.action_start:
            actions = actions + self.action_start
        return actions, log_prob

    def values(self, obs: np.ndarray) -> np.ndarray:
        """``(B,)`` values of observations ``(B, *obs_shape)`` (zeros without a critic)."""
        _, value_fn = self._numpy_fns()
        return value_fn(obs) if value_fn is not None else np.zeros(len(obs), np.float32)

    def __deepcopy__(self, memo: dict[int, Any]) -> ActorCritic:
        # cached numpy closures point at the original's weights: never copy them
        cls = type(self)
        new = cls.__new__(cls)
        memo[id(self)] = new
        for key, value in self.__dict__.items():
            setattr(new, key, copy.deepcopy(value, memo))
        new._np_policy = new._np_value = None
        return new
