"""Q-value heads: linear, dueling, noisy and distributional, in any combination.

A head sits on an encoder's features ``(B, in_features)`` (see ``networks/mlp.py`` for the
encoder protocol). ``QHead.forward`` always returns Q-values ``(B, A)``, so acting code and
action samplers see the same thing whatever the head; distributional heads expose the atom
log-probabilities through ``QHead.log_probs`` for the C51 loss.

- Dueling (Wang et al. 2016): ``Q = V + A - mean_a A``; with atoms, per atom on the logits
  (as in Rainbow, Hessel et al. 2018).
- Noisy nets (Fortunato et al. 2018): ``NoisyLinear`` with factorized Gaussian noise.
  Noise comes from a ``torch.Generator`` owned by the layer and saved in its ``state_dict``
  (extra state), so a resumed run draws the same noise. ``set_noise(False)`` selects the
  deterministic mean weights (evaluation).
- Distributional (C51, Bellemare et al. 2017): ``num_atoms`` logits per action over an
  evenly spaced support ``v_min ... v_max``; Q is the expectation.
- Per-stream hidden layer (``hidden > 0``, ``network.head_hidden``): each stream is
  ``Linear(in, hidden) -> ReLU -> Linear(hidden, out)`` instead of one linear layer, both
  layers noisy when the head is. With an encoder that stops at the conv features
  (``network.hidden: 0``) this is the network of Rainbow (Hessel et al. 2018) and of the
  dueling paper (Wang et al. 2016): the value and advantage streams each have their own
  fully connected layer, and noisy nets replace every fully connected layer.

Every module here has ``numpy_ops()`` so the fast numpy acting path
(``networks/numpy_forward.py``) covers it, reading the live weights and noise.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rlbench.errors import ConfigError
from rlbench.networks.numpy_forward import numpy_ops, relu

__all__ = ["HeadOptions", "NoisyLinear", "QHead", "derive_seed", "split_head_options"]

Op = Callable[[np.ndarray], np.ndarray]

#: Keys of the ``network`` config read by Q heads, not passed to the encoder.
HEAD_KEYS: tuple[str, ...] = ("dueling", "noisy", "sigma0", "head_hidden")


@dataclass(frozen=True, kw_only=True)
class HeadOptions:
    """``network.dueling``, ``network.noisy``, ``network.sigma0`` and ``network.head_hidden``
    (width of each stream's hidden layer; 0: none, the stream is one linear layer)."""

    dueling: bool = False
    noisy: bool = False
    sigma0: float = 0.5
    head_hidden: int = 0

    def __post_init__(self) -> None:
        if self.head_hidden < 0:
            raise ConfigError(f"network.head_hidden={self.head_hidden}: must be >= 0 (0: none)")


def derive_seed(*entropy: int) -> int:
    """A 64-bit seed derived from ``entropy`` (one independent stream per tuple)."""
    return int(np.random.SeedSequence(list(entropy)).generate_state(1, dtype=np.uint64)[0])


def split_head_options(
    network: Callable[..., nn.Module],
) -> tuple[Callable[..., nn.Module], HeadOptions]:
    """Separate the head options from an encoder partial built from the ``network`` config.

    ``network=`` configs carry the ``HEAD_KEYS`` beside the encoder's own
    arguments. Returns the encoder partial without them (so any encoder can be called as
    ``encoder(in_shape=...)``) and the options. The returned partial also carries the
    options as its ``head_options`` attribute, so a partial that was split once (the CLI
    does it for every algorithm) still tells a Q-learning module its head options.
    """
    options = getattr(network, "head_options", None)
    if not isinstance(network, functools.partial):
        return network, options if isinstance(options, HeadOptions) else HeadOptions()
    kwargs = dict(network.keywords)
    found = {k: kwargs.pop(k) for k in HEAD_KEYS if k in kwargs}
    if found or not isinstance(options, HeadOptions):
        options = HeadOptions(**found)
    encoder = functools.partial(network.func, *network.args, **kwargs)
    encoder.head_options = options  # type: ignore[attr-defined]
    return encoder, options


class NoisyLinear(nn.Module):
    """Linear layer with factorized Gaussian noise on weights and biases.

    ``y = x W_mu^T + b_mu + ((x * eps_in) W_sigma^T + b_sigma) * eps_out`` with
    ``eps = f(N(0, 1))``, ``f(x) = sign(x) sqrt|x|`` (Fortunato et al. 2018, eq. 10-11),
    which equals a linear layer with weights ``W_mu + W_sigma * outer(eps_out, eps_in)``
    without forming that matrix. Initialization: ``mu ~ U(-1/sqrt(p), 1/sqrt(p))``,
    ``sigma = sigma0 / sqrt(p)`` for ``p = in_features``.

    Args:
        in_features, out_features: ``(B, in_features) -> (B, out_features)``.
        sigma0: initial noise scale (0.5 in the paper and in Rainbow).
        seed: seed of the layer's own noise generator.
    """

    noise: torch.Tensor

    def __init__(
        self, in_features: int, out_features: int, *, sigma0: float = 0.5, seed: int = 0
    ) -> None:
        super().__init__()
        if sigma0 <= 0:
            raise ValueError(f"sigma0={sigma0}: must be > 0")
        self.in_features, self.out_features, self.sigma0 = in_features, out_features, sigma0
        self.weight_mu = nn.Parameter(torch.empty(out_features, in_features))
        self.weight_sigma = nn.Parameter(torch.empty(out_features, in_features))
        self.bias_mu = nn.Parameter(torch.empty(out_features))
        self.bias_sigma = nn.Parameter(torch.empty(out_features))
        self.register_buffer("noise", torch.zeros(in_features + out_features))  # eps_in, eps_out
        self.generator = torch.Generator().manual_seed(seed)
        self.noise_enabled = True
        self.reset_parameters()
        self.reset_noise()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.in_features)
        with torch.no_grad():
            self.weight_mu.uniform_(-bound, bound)
            self.bias_mu.uniform_(-bound, bound)
            self.weight_sigma.fill_(self.sigma0 / math.sqrt(self.in_features))
            self.bias_sigma.fill_(self.sigma0 / math.sqrt(self.in_features))

    def seed_noise(self, seed: int) -> None:
        """Restart the noise generator from ``seed`` (does not redraw the current noise)."""
        self.generator.manual_seed(seed)

    @property
    def eps_in(self) -> torch.Tensor:
        """``(in_features,)`` input noise ``f(eps)`` (a view of the ``noise`` buffer)."""
        return self.noise[: self.in_features]

    @property
    def eps_out(self) -> torch.Tensor:
        """``(out_features,)`` output noise ``f(eps)`` (a view of the ``noise`` buffer)."""
        return self.noise[self.in_features :]

    def reset_noise(self) -> None:
        """Draw new ``eps_in`` and ``eps_out`` from the layer's generator (in place)."""
        with torch.no_grad():
            if self.noise.device.type == "cpu":
                eps = torch.randn(self.noise.shape, generator=self.generator, out=self.noise)
            else:  # the generator lives on the CPU
                eps = self.noise.copy_(torch.randn(self.noise.shape, generator=self.generator))
            sign = eps.sign()
            eps.abs_().sqrt_().mul_(sign)  # f(x) = sign(x) sqrt|x|

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.linear(x, self.weight_mu, self.bias_mu)
        if not self.noise_enabled:
            return y
        noise = F.linear(x * self.eps_in, self.weight_sigma, self.bias_sigma)
        return y + noise * self.eps_out

    def numpy_ops(self) -> list[Op]:
        """The same computation over numpy views of the live parameters and noise."""
        w_mu, b_mu = self.weight_mu.detach().numpy().T, self.bias_mu.detach().numpy()
        w_sigma, b_sigma = self.weight_sigma.detach().numpy().T, self.bias_sigma.detach().numpy()
        noise = self.noise.numpy()
        eps_in, eps_out = noise[: self.in_features], noise[self.in_features :]

        def op(x: np.ndarray) -> np.ndarray:
            y = x @ w_mu + b_mu
            if not self.noise_enabled:
                return y
            return y + ((x * eps_in) @ w_sigma + b_sigma) * eps_out

        return [op]

    def get_extra_state(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"sigma0={self.sigma0}"
        )


class QHead(nn.Module):
    """Q-values ``(B, A)`` from features ``(B, in_features)``; see the module docstring.

    Layers, ``K = num_atoms``: ``out`` gives the Q-values (the advantages if dueling),
    ``(B, width) -> (B, A * K)``, and ``value`` (dueling only) the state value,
    ``(B, width) -> (B, K)``. With ``hidden = 0`` each stream is that one layer on the
    features (``width = in_features``); with ``hidden > 0`` its own hidden layer
    ``out_hidden`` / ``value_hidden``, ``(B, in_features) -> (B, hidden)`` followed by a
    ReLU, comes first (``width = hidden``). Noisy heads make every one of these noisy.

    Attributes:
        support: ``(K,)`` atom values of a distributional head, else ``None``.

    Args:
        in_features: encoder output width.
        num_actions: ``A``.
        dueling: separate value and advantage streams.
        noisy: ``NoisyLinear`` layers instead of ``nn.Linear``.
        sigma0: initial noise scale of noisy layers.
        num_atoms: ``K``; 1 is a scalar Q head, ``K >= 2`` a C51 distributional head.
        v_min, v_max: support of the distributional head.
        hidden: width of each stream's hidden layer; 0: none (one layer per stream).
        seed: seeds the noise generators of noisy layers (see ``seed_noise``).
    """

    support: torch.Tensor | None

    def __init__(
        self,
        in_features: int,
        num_actions: int,
        *,
        dueling: bool = False,
        noisy: bool = False,
        sigma0: float = 0.5,
        num_atoms: int = 1,
        v_min: float = -10.0,
        v_max: float = 10.0,
        hidden: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if num_atoms < 1:
            raise ValueError(f"num_atoms={num_atoms}: must be >= 1")
        if num_atoms > 1 and not v_min < v_max:
            raise ValueError(f"v_min={v_min}, v_max={v_max}: need v_min < v_max")
        if hidden < 0:
            raise ValueError(f"hidden={hidden}: must be >= 0 (0: no hidden layer)")
        self.num_actions, self.num_atoms = num_actions, num_atoms
        self.dueling, self.noisy = dueling, noisy
        layer: Callable[[int, int], nn.Module] = (
            functools.partial(NoisyLinear, sigma0=sigma0) if noisy else nn.Linear
        )
        width = hidden or in_features  # input width of the output layers
        # Built in forward order; without hidden layers exactly as before (out, then value),
        # so those heads draw the same initial weights.
        self.out_hidden = layer(in_features, hidden) if hidden else None
        self.out = layer(width, num_actions * num_atoms)  # Q, or advantages if dueling
        self.value_hidden = layer(in_features, hidden) if hidden and dueling else None
        self.value = layer(width, num_atoms) if dueling else None
        support = torch.linspace(v_min, v_max, num_atoms) if num_atoms > 1 else None
        self.register_buffer("support", support)
        self.seed_noise(seed)

    @property
    def distributional(self) -> bool:
        return self.num_atoms > 1

    # ------------------------------------------------------------------ noise
    def noisy_layers(self) -> Iterator[NoisyLinear]:
        """Every noisy layer in forward order: ``out_hidden, out, value_hidden, value``."""
        layers = (self.out_hidden, self.out, self.value_hidden, self.value)
        return (m for m in layers if isinstance(m, NoisyLinear))

    def seed_noise(self, seed: int) -> None:
        """Seed each noisy layer's generator from ``(seed, layer index)`` and draw noise."""
        for i, layer in enumerate(self.noisy_layers()):
            layer.seed_noise(derive_seed(seed, i))
            layer.reset_noise()

    def reset_noise(self) -> None:
        """Draw new noise in every noisy layer (no-op without noisy layers)."""
        for layer in self.noisy_layers():
            layer.reset_noise()

    def set_noise(self, enabled: bool) -> None:
        """``False``: deterministic mean weights (evaluation); ``True``: noisy weights."""
        for layer in self.noisy_layers():
            if layer.noise_enabled is not enabled:  # nn.Module.__setattr__ is slow
                layer.noise_enabled = enabled

    # ------------------------------------------------------------------ forward
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, A)`` Q-values, or ``(B, A, K)`` atom logits for a distributional head."""
        shape = (x.shape[0], self.num_actions, self.num_atoms)
        out = self.out(x if self.out_hidden is None else F.relu(self.out_hidden(x)))
        if self.value is None:
            return out.view(shape) if self.distributional else out
        adv = out.view(shape)
        value = self.value(x if self.value_hidden is None else F.relu(self.value_hidden(x)))
        q = value.view(shape[0], 1, self.num_atoms) + adv - adv.mean(dim=1, keepdim=True)
        return q if self.distributional else q.squeeze(-1)

    def log_probs(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, A, K)`` atom log-probabilities (distributional heads only)."""
        if not self.distributional:
            raise RuntimeError("log_probs needs a distributional head (num_atoms >= 2)")
        return F.log_softmax(self.logits(x), dim=-1)

    def expected(self, probs: torch.Tensor) -> torch.Tensor:
        """Q-values ``(..., )`` from atom probabilities ``(..., K)``."""
        assert self.support is not None
        return probs @ self.support

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Q-values ``(B, A)``."""
        if not self.distributional:
            return self.logits(x)
        return self.expected(F.softmax(self.logits(x), dim=-1))

    def numpy_ops(self) -> list[Op] | None:
        """Q-values ``(B, A)`` in numpy over views of the live weights (see ``numpy_forward``)."""
        out_ops = _stream_ops(self.out_hidden, self.out)
        if self.value is None and not self.distributional:
            return out_ops  # the plain head is its stream's layers
        value_ops = _stream_ops(self.value_hidden, self.value) if self.value is not None else None
        if out_ops is None or (self.value is not None and value_ops is None):
            return None
        out, value = _chain(out_ops), _chain(value_ops) if value_ops is not None else None
        a, k = self.num_actions, self.num_atoms
        support = self.support.numpy() if self.support is not None else None

        def op(x: np.ndarray) -> np.ndarray:
            q = out(x).reshape(x.shape[0], a, k)
            if value is not None:
                q = value(x).reshape(x.shape[0], 1, k) + q - q.mean(axis=1, keepdims=True)
            if support is None:
                return q[..., 0]
            e = np.exp(q - q.max(axis=-1, keepdims=True))
            return (e @ support) / e.sum(axis=-1)

        return [op]


def _stream_ops(hidden: nn.Module | None, last: nn.Module) -> list[Op] | None:
    """numpy ops of one stream, ``[hidden -> ReLU ->] last``, or ``None``."""
    ops = numpy_ops(last)
    if ops is None or hidden is None:
        return ops
    first = numpy_ops(hidden)
    return None if first is None else [*first, relu, *ops]


def _chain(ops: list[Op]) -> Op:
    """One function applying ``ops`` in order."""

    def run(x: np.ndarray) -> np.ndarray:
        for op in ops:
            x = op(x)
        return x

    return run
