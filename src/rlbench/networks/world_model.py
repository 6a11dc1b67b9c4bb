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

``TOLD`` is TD-MPC's (Hansen, Wang and Su 2022) model: ELU MLPs without normalization or
SimNorm, scalar reward and Q heads, two Q heads whose first layer is ``Linear -> LayerNorm
-> Tanh`` (the same ``QEnsemble``, parameterized), a deterministic tanh policy, orthogonal
initialisation, and a target copy of the encoder and the Q heads.
"""

from __future__ import annotations

import copy
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


ACTIVATIONS = ("mish", "elu", "tanh")
Q_INITS = ("trunc_normal", "orthogonal")


def _activate(x: torch.Tensor, name: str) -> torch.Tensor:
    if name == "mish":
        return mish(x)
    if name == "elu":
        return F.elu(x)
    return torch.tanh(x)


class QEnsemble(nn.Module):
    """``K`` Q heads ``(z, a) -> out_dim`` (logits, or one value), each ``in -> [mlp_dim] *
    depth -> out_dim``, as stacked weights ``weights[i] (K, in_i, out_i)``. Hidden layer
    ``i`` is ``Linear -> [Dropout, first layer] -> [LayerNorm if norms[i]] -> acts[i]``;
    the defaults are TD-MPC2's (LayerNorm and Mish everywhere, truncated-normal init), TD-MPC
    takes ``acts=("tanh", "elu")``, ``norms=(True, False)``, ``init="orthogonal"``. The
    last layer starts at zero (TD-MPC2: the middle bin; TD-MPC: a value of 0).

    ``forward(x, heads=None, dropout=False)``: ``x (..., in)`` -> ``(k, ..., out_dim)``
    for the ``k`` heads selected by ``heads`` (all when ``None``); dropout is applied only
    when asked (training losses), never while planning.
    """

    def __init__(
        self,
        in_dim: int,
        hidden: list[int],
        out_dim: int,
        *,
        num_q: int,
        dropout: float,
        acts: tuple[str, ...] | None = None,
        norms: tuple[bool, ...] | None = None,
        init: str = "trunc_normal",
    ) -> None:
        super().__init__()
        self.num_q, self.dropout = num_q, dropout
        self.acts = acts if acts is not None else ("mish",) * len(hidden)
        self.norms = norms if norms is not None else (True,) * len(hidden)
        if len(self.acts) != len(hidden) or len(self.norms) != len(hidden):
            raise ValueError(
                f"acts={self.acts}, norms={self.norms}: need one per hidden layer ({len(hidden)})"
            )
        if bad := [a for a in self.acts if a not in ACTIVATIONS]:
            raise ValueError(f"Q activation {bad[0]!r}: allowed {', '.join(ACTIVATIONS)}")
        if init not in Q_INITS:
            raise ValueError(f"Q init {init!r}: allowed {', '.join(Q_INITS)}")
        dims = [in_dim, *hidden, out_dim]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.ln_weights = nn.ParameterList()
        self.ln_biases = nn.ParameterList()
        self._ln_index: list[int] = []  # hidden layer -> its LayerNorm's index (-1: none)
        for i, (a, b) in enumerate(itertools.pairwise(dims)):
            weight = torch.empty(num_q, a, b)
            if i == len(dims) - 2:
                nn.init.zeros_(weight)  # last layer: zero (the middle bin, 0)
            elif init == "orthogonal":  # per head, on torch's (out, in) layout
                for k in range(num_q):
                    weight[k] = nn.init.orthogonal_(torch.empty(b, a)).T
            else:
                nn.init.trunc_normal_(weight, std=0.02)
            self.weights.append(nn.Parameter(weight))
            self.biases.append(nn.Parameter(torch.zeros(num_q, 1, b)))
            if i < len(dims) - 2:
                self._ln_index.append(len(self.ln_weights) if self.norms[i] else -1)
                if self.norms[i]:
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
            j = self._ln_index[i]
            if j >= 0:
                h = torch.addcmul(
                    pick(self.ln_biases[j]), F.layer_norm(h, h.shape[-1:]), pick(self.ln_weights[j])
                )
            h = _activate(h, self.acts[i])
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
        episodic: add a termination head ``z' -> logit`` (the authors' episodic mode; without
            it the model has no such head, and its parameters are those of before).
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
        episodic: bool = False,
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
        # created only when episodic, so a model without it draws the same initial weights
        self.termination = mlp(latent, hidden, 1) if episodic else None
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

    def termination_logit(self, z: torch.Tensor) -> torch.Tensor:
        """``(...)`` logit that the transition into latent ``z (..., Z)`` ended its episode
        (episodic models only)."""
        if self.termination is None:
            raise RuntimeError("this world model has no termination head (episodic=False)")
        logit: torch.Tensor = self.termination(z).squeeze(-1)
        return logit

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


def elu_mlp(in_dim: int, hidden: list[int], out_dim: int) -> nn.Sequential:
    """``Linear -> ELU`` hidden layers, then a plain ``Linear`` (TD-MPC's ``helper.mlp``)."""
    dims = [in_dim, *hidden]
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise(dims):
        layers += [nn.Linear(a, b), nn.ELU()]
    layers.append(nn.Linear(dims[-1], out_dim))
    return nn.Sequential(*layers)


def orthogonal_init(module: nn.Module) -> None:
    """TD-MPC's init: orthogonal Linear weights, zero biases."""
    if isinstance(module, nn.Linear):
        nn.init.orthogonal_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def truncated_normal_action(
    mean: torch.Tensor, std: float, eps: torch.Tensor, *, clip: float
) -> torch.Tensor:
    """TD-MPC's exploratory policy sample (``helper.TruncatedNormal.sample``): ``mean +
    clamp(std * eps, -clip, clip)`` clamped to ``[-1 + 1e-6, 1 - 1e-6]`` with a
    straight-through gradient (the clamp passes gradients unchanged); all ``(..., A)``."""
    x = mean + torch.clamp(std * eps, -clip, clip)
    clamped = torch.clamp(x, -1.0 + 1e-6, 1.0 - 1e-6)
    return x - x.detach() + clamped.detach() if x.requires_grad else clamped


class TOLD(nn.Module):
    """TD-MPC's Task-Oriented Latent Dynamics model for flat observations and actions in
    ``[-1, 1]^action_dim``: encoder ``obs -> enc_dim -> latent`` and dynamics, reward and
    policy MLPs over ``[mlp_dim] * 2`` (ELU, no normalization, no SimNorm), ``num_q``
    scalar Q heads with a ``Linear -> LayerNorm -> Tanh`` first layer and an ELU second,
    orthogonal init with zero last layers for reward and Q. ``target_encoder`` and
    ``target_qs`` are Polyak-averaged copies (no grads): the consistency targets and the
    TD target's heads (the only parts of the authors' target model they read).
    """

    def __init__(
        self,
        *,
        obs_dim: int,
        action_dim: int,
        enc_dim: int,
        mlp_dim: int,
        latent_dim: int,
        num_q: int = 2,
    ) -> None:
        super().__init__()
        hidden = 2 * [mlp_dim]
        self.encoder = elu_mlp(obs_dim, [enc_dim], latent_dim)
        self.dynamics = elu_mlp(latent_dim + action_dim, hidden, latent_dim)
        self.reward = elu_mlp(latent_dim + action_dim, hidden, 1)
        self.pi_net = elu_mlp(latent_dim, hidden, action_dim)
        self.apply(orthogonal_init)
        last = self.reward[-1]
        assert isinstance(last, nn.Linear)
        nn.init.zeros_(last.weight)
        self.qs = QEnsemble(
            latent_dim + action_dim,
            hidden,
            1,
            num_q=num_q,
            dropout=0.0,
            acts=("tanh", "elu"),  # Linear -> LayerNorm -> Tanh, then Linear -> ELU
            norms=(True, False),
            init="orthogonal",
        )
        self.target_encoder = copy.deepcopy(self.encoder).requires_grad_(False)
        self.target_qs = copy.deepcopy(self.qs).requires_grad_(False)

    def encode(self, obs: torch.Tensor, *, target: bool = False) -> torch.Tensor:
        """Latents ``(..., latent)`` of observations ``(..., obs_dim)``."""
        return (self.target_encoder if target else self.encoder)(obs)

    def next(self, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """Next latents ``(..., latent)`` from ``z (..., latent)`` and ``a (..., A)``."""
        return self.dynamics(torch.cat([z, a], dim=-1))

    def reward_value(self, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """Predicted rewards ``(...)``."""
        return self.reward(torch.cat([z, a], dim=-1)).squeeze(-1)

    def q(self, z: torch.Tensor, a: torch.Tensor, *, target: bool = False) -> torch.Tensor:
        """Values ``(num_q, ...)`` of every online (or target) head."""
        qs = self.target_qs if target else self.qs
        return qs(torch.cat([z, a], dim=-1)).squeeze(-1)

    def pi(
        self,
        z: torch.Tensor,
        *,
        std: float = 0.0,
        clip: float = 0.3,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """``tanh(pi(z)) (..., A)``, plus clipped Gaussian noise of ``std`` when ``std > 0``
        (``truncated_normal_action``)."""
        mean = torch.tanh(self.pi_net(z))
        if std <= 0:
            return mean
        if generator is None:
            eps = torch.randn_like(mean)
        else:
            eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return truncated_normal_action(mean, std, eps, clip=clip)

    def num_params(self) -> int:
        """Learnable parameters (the target copies excluded)."""
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
    "TOLD",
    "NormedLinear",
    "PolicyPrior",
    "QEnsemble",
    "SimNorm",
    "WorldModel",
    "WorldModelSize",
    "mlp",
    "size_of",
]
