"""TD-MPC2's implicit world model (Hansen, Su and Wang 2024): encoder, latent dynamics,
reward head, an ensemble of Q heads and a Gaussian policy prior.

Every hidden layer is ``Linear -> LayerNorm -> Mish`` (``NormedLinear``); the encoder and
the dynamics end in ``Linear -> LayerNorm -> SimNorm``, so latents are ``latent_dim / 8``
softmax groups of 8. Reward and Q heads output ``num_bins`` logits (discrete regression,
``losses.two_hot``), their last layers initialised to zero (predicting the middle bin,
0); the first layer of each Q head has dropout. Every other weight starts from a
truncated normal of std 0.02, biases at zero (the authors' ``init.weight_init``). The Q
ensemble is one set of stacked weights ``(K, in, out)`` evaluated with batched matmuls,
so a subset of heads costs only its own share.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from rlbench.losses import gaussian_log_prob, tanh_log_det_jacobian

# the authors' presets (tdmpc2/common/__init__.py MODEL_SIZE; num_q defaults to 5)
MODEL_SIZES: dict[str, dict[str, int]] = {
    "1M": {"enc_dim": 256, "mlp_dim": 384, "latent_dim": 128, "num_enc_layers": 2, "num_q": 2},
    "5M": {"enc_dim": 256, "mlp_dim": 512, "latent_dim": 512, "num_enc_layers": 2, "num_q": 5},
    "19M": {"enc_dim": 1024, "mlp_dim": 1024, "latent_dim": 768, "num_enc_layers": 3, "num_q": 5},
    "48M": {"enc_dim": 1792, "mlp_dim": 1792, "latent_dim": 768, "num_enc_layers": 4, "num_q": 5},
    "317M": {"enc_dim": 4096, "mlp_dim": 4096, "latent_dim": 1376, "num_enc_layers": 5, "num_q": 8},
}


@dataclass(frozen=True)
class WorldModelSize:
    """Widths of the world model (``MODEL_SIZES`` holds the authors' presets)."""

    enc_dim: int
    mlp_dim: int
    latent_dim: int
    num_enc_layers: int
    num_q: int
    simnorm_dim: int = 8


def mish(x: torch.Tensor) -> torch.Tensor:
    """``x tanh(softplus(x))``. Without autograd (planning) as ``x n / (n + 2)`` with ``n =
    e^x (e^x + 2)``, in place on fresh buffers: on the CPU about 1.7x faster than torch's
    kernel, which took a quarter of a 1M-model plan; equal to it to float rounding."""
    if torch.is_grad_enabled() and x.requires_grad:
        return F.mish(x)
    e = x.clamp(max=20.0).exp_()  # mish(x) = x to float precision beyond 20
    n = (e + 2.0).mul_(e)
    return n.div_(n + 2.0).mul_(x)


class SimNorm(nn.Module):
    """Simplicial normalization: a softmax over each consecutive group of ``dim`` features
    (Lavoie et al. 2022), so a latent is a point on a product of simplices."""

    def __init__(self, dim: int = 8) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        return torch.softmax(x.reshape(*shape[:-1], -1, self.dim), dim=-1).reshape(shape)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class NormedLinear(nn.Linear):
    """``Linear -> [Dropout] -> LayerNorm -> activation`` (``mish`` unless ``act`` is given)."""

    def __init__(
        self, in_features: int, out_features: int, *, dropout: float = 0.0, act: nn.Module | None
    ) -> None:
        super().__init__(in_features, out_features)
        self.ln = nn.LayerNorm(out_features)
        self.act = act
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = super().forward(x)
        if self.dropout is not None:
            x = self.dropout(x)
        x = self.ln(x)
        return mish(x) if self.act is None else self.act(x)


def mlp(
    in_dim: int, hidden: list[int], out_dim: int, *, out_act: nn.Module | None = None
) -> nn.Sequential:
    """``NormedLinear`` hidden layers, then a plain ``Linear`` (or, with ``out_act``, a
    ``NormedLinear`` ending in that activation: the encoder's and dynamics' SimNorm)."""
    dims = [in_dim, *hidden]
    layers: list[nn.Module] = [NormedLinear(a, b, act=None) for a, b in itertools.pairwise(dims)]
    layers.append(
        nn.Linear(dims[-1], out_dim)
        if out_act is None
        else NormedLinear(dims[-1], out_dim, act=out_act)
    )
    return nn.Sequential(*layers)


def weight_init(module: nn.Module) -> None:
    """The authors' init: Linear weights from a truncated normal of std 0.02, biases 0."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class QEnsemble(nn.Module):
    """``K`` Q heads ``(z, a) -> num_bins`` logits, each ``in -> [mlp_dim] * depth ->
    num_bins`` with ``NormedLinear`` hidden layers (dropout after the first Linear), as
    stacked weights: ``weights[i] (K, in_i, out_i)``.

    ``forward(x, heads=None, dropout=False)``: ``x (..., in)`` -> ``(k, ..., num_bins)``
    for the ``k`` heads selected by ``heads`` (all when ``None``); dropout is applied only
    when asked (training losses), never while planning.
    """

    def __init__(
        self, in_dim: int, hidden: list[int], out_dim: int, *, num_q: int, dropout: float
    ) -> None:
        super().__init__()
        self.num_q, self.dropout = num_q, dropout
        dims = [in_dim, *hidden, out_dim]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.ln_weights = nn.ParameterList()
        self.ln_biases = nn.ParameterList()
        for i, (a, b) in enumerate(itertools.pairwise(dims)):
            weight = torch.empty(num_q, a, b)
            nn.init.trunc_normal_(weight, std=0.02)
            if i == len(dims) - 2:
                nn.init.zeros_(weight)  # last layer: zero (the middle bin, 0)
            self.weights.append(nn.Parameter(weight))
            self.biases.append(nn.Parameter(torch.zeros(num_q, 1, b)))
            if i < len(dims) - 2:
                self.ln_weights.append(nn.Parameter(torch.ones(num_q, 1, b)))
                self.ln_biases.append(nn.Parameter(torch.zeros(num_q, 1, b)))

    def forward(
        self, x: torch.Tensor, *, heads: torch.Tensor | None = None, dropout: bool = False
    ) -> torch.Tensor:
        lead = x.shape[:-1]
        h = x.reshape(1, -1, x.shape[-1])  # broadcast over the heads

        def pick(p: torch.Tensor) -> torch.Tensor:
            return p if heads is None else p[heads]

        last = len(self.weights) - 1
        for i in range(last + 1):
            weight, bias = pick(self.weights[i]), pick(self.biases[i])
            h = torch.baddbmm(bias, h.expand(weight.shape[0], -1, -1), weight)
            if i == last:
                break
            if i == 0 and dropout and self.dropout > 0:
                h = F.dropout(h, self.dropout, training=True)
            h = torch.addcmul(
                pick(self.ln_biases[i]), F.layer_norm(h, h.shape[-1:]), pick(self.ln_weights[i])
            )
            h = mish(h)
        return h.reshape(h.shape[0], *lead, h.shape[-1])


class PolicyPrior(nn.Module):
    """Tanh-squashed Gaussian ``pi(a | z)`` on ``[-1, 1]^A``: ``mlp -> (mean, log_std)``,
    ``log_std = min + (max - min) (tanh(raw) + 1) / 2``."""

    def __init__(
        self,
        latent_dim: int,
        hidden: list[int],
        action_dim: int,
        *,
        log_std_min: float,
        log_std_max: float,
    ) -> None:
        super().__init__()
        self.net = mlp(latent_dim, hidden, 2 * action_dim)
        self.action_dim = action_dim
        self.log_std_min, self.log_std_max = log_std_min, log_std_max

    def forward(
        self, z: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(action, log_prob, gaussian_log_prob)`` for latents ``z (..., latent)``: a
        reparameterized sample ``tanh(mean + std * eps)``, its squashed log-density
        ``(...)`` and the log-density of ``mean + std * eps`` before the tanh ``(...)``."""
        mean, raw = self.net(z).chunk(2, dim=-1)
        lo, hi = self.log_std_min, self.log_std_max
        log_std = lo + 0.5 * (hi - lo) * (torch.tanh(raw) + 1.0)
        if generator is None:
            eps = torch.randn_like(mean)
        else:
            eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        u = mean + log_std.exp() * eps
        gauss = gaussian_log_prob(eps, log_std)
        return torch.tanh(u), gauss - tanh_log_det_jacobian(u), gauss


class WorldModel(nn.Module):
    """TD-MPC2's networks for flat observations of ``obs_dim`` and actions in
    ``[-1, 1]^action_dim``; ``target_qs`` is a Polyak-averaged copy of ``qs`` (no grads).

    Args:
        obs_dim, action_dim: flat observation and action sizes.
        size: the widths (``MODEL_SIZES``).
        num_bins: logits of the reward and Q heads.
        dropout: dropout after the first layer of each Q head.
        log_std_min, log_std_max: the policy prior's log-std bounds.
    """

    def __init__(
        self,
        *,
        obs_dim: int,
        action_dim: int,
        size: WorldModelSize,
        num_bins: int,
        dropout: float,
        log_std_min: float,
        log_std_max: float,
    ) -> None:
        super().__init__()
        if size.latent_dim % size.simnorm_dim:
            raise ValueError(
                f"latent_dim={size.latent_dim} must be a multiple of simnorm_dim={size.simnorm_dim}"
            )
        latent, hidden = size.latent_dim, 2 * [size.mlp_dim]
        enc_hidden = max(size.num_enc_layers - 1, 1) * [size.enc_dim]
        self.encoder = mlp(obs_dim, enc_hidden, latent, out_act=SimNorm(size.simnorm_dim))
        self.dynamics = mlp(latent + action_dim, hidden, latent, out_act=SimNorm(size.simnorm_dim))
        self.reward = mlp(latent + action_dim, hidden, num_bins)
        self.pi = PolicyPrior(
            latent, hidden, action_dim, log_std_min=log_std_min, log_std_max=log_std_max
        )
        self.apply(weight_init)
        last = self.reward[-1]
        assert isinstance(last, nn.Linear)
        nn.init.zeros_(last.weight)
        self.qs = QEnsemble(
            latent + action_dim, hidden, num_bins, num_q=size.num_q, dropout=dropout
        )
        self.target_qs = QEnsemble(
            latent + action_dim, hidden, num_bins, num_q=size.num_q, dropout=dropout
        )
        self.target_qs.load_state_dict(self.qs.state_dict())
        self.target_qs.requires_grad_(False)

    def encode(self, obs: torch.Tensor) -> torch.Tensor:
        return self.encoder(obs)

    def next(self, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return self.dynamics(torch.cat([z, a], dim=-1))

    def reward_logits(self, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return self.reward(torch.cat([z, a], dim=-1))

    def q_logits(
        self,
        z: torch.Tensor,
        a: torch.Tensor,
        *,
        heads: torch.Tensor | None = None,
        target: bool = False,
        dropout: bool = False,
    ) -> torch.Tensor:
        """``(k, ..., num_bins)`` logits of the selected online (or target) heads."""
        qs = self.target_qs if target else self.qs
        return qs(torch.cat([z, a], dim=-1), heads=heads, dropout=dropout and not target)

    def num_params(self) -> int:
        """Learnable parameters (the target heads excluded)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


def size_of(preset: str, **overrides: int | None) -> WorldModelSize:
    """``MODEL_SIZES[preset]`` with the non-``None`` ``overrides`` applied."""
    if preset not in MODEL_SIZES:
        raise KeyError(preset)
    values = dict(MODEL_SIZES[preset])
    values.update({k: v for k, v in overrides.items() if v is not None})
    return WorldModelSize(**values)


__all__ = [
    "MODEL_SIZES",
    "NormedLinear",
    "PolicyPrior",
    "QEnsemble",
    "SimNorm",
    "WorldModel",
    "WorldModelSize",
    "mlp",
    "size_of",
]
