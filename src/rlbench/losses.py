"""Pure loss and target functions, each unit-tested against hand-computed cases."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F


def q_target(
    *,
    reward: torch.Tensor,
    discount: torch.Tensor,
    next_q_target: torch.Tensor,
    next_q_online: torch.Tensor | None = None,
) -> torch.Tensor:
    """Bootstrapped (n-step) Q-learning target ``r + discount * Q_target(s', a*)``.

    Args:
        reward: ``(B,)`` n-step discounted reward sum.
        discount: ``(B,)`` ``gamma**L``, or 0 when the window ended in termination.
        next_q_target: ``(B, A)`` target-network values at the bootstrap observation.
        next_q_online: ``(B, A)`` online-network values there; given, ``a*`` is chosen by the
            online net and evaluated by the target net (double Q, van Hasselt et al. 2016);
            absent, ``a* = argmax Q_target`` (Mnih et al. 2015).

    Returns:
        ``(B,)`` targets (no gradient flows through them when the inputs carry none).
    """
    if next_q_online is None:
        next_v = next_q_target.amax(dim=1)  # values only: no argmax computed
    else:
        best = next_q_online.argmax(dim=1, keepdim=True)
        next_v = next_q_target.gather(1, best).squeeze(1)
    return torch.addcmul(reward, discount, next_v)


def td_loss(
    prediction: torch.Tensor,
    target: torch.Tensor,
    *,
    kind: str = "huber",
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean TD loss, importance-weighted when ``weights`` are given.

    Args:
        prediction, target: the same shape (``(B,)`` or ``(B, 1)``).
        kind: ``huber`` (smooth L1, delta 1) or ``mse``.
        weights: importance weights (prioritized replay) of that shape, or ``None``.

    Returns:
        The scalar loss. (Unweighted, the element losses are never materialized: one op
        and one autograd node fewer in a gradient step that costs well under a ms.)
    """
    fn: Callable[..., torch.Tensor]
    if kind == "huber":
        fn = F.smooth_l1_loss
    elif kind == "mse":
        fn = F.mse_loss
    else:
        raise ValueError(f"loss kind '{kind}': allowed huber, mse")
    if weights is None:
        return fn(prediction, target)
    if weights.shape != prediction.shape:
        raise ValueError(f"weights {tuple(weights.shape)} != prediction {tuple(prediction.shape)}")
    return (fn(prediction, target, reduction="none") * weights).mean()


def polyak_update(online: list[torch.Tensor], target: list[torch.Tensor], *, tau: float) -> None:
    """``target <- tau * online + (1 - tau) * target`` in place (``tau=1`` copies)."""
    with torch.no_grad():
        for t, o in zip(target, online, strict=True):
            if tau >= 1.0:
                t.copy_(o)
            else:
                t.lerp_(o, tau)


# --- policy gradients ---
# Rollouts are time-major grids: ``(T, N)`` = T steps of N envs (or N episodes). ``dones``
# is ``terminated | truncated`` as a float; a chain of returns is cut after a done step.


def returns_to_go(
    rewards: torch.Tensor,
    *,
    dones: torch.Tensor,
    gamma: float,
    bootstrap: torch.Tensor | None = None,
) -> torch.Tensor:
    """Discounted returns-to-go ``G_t = r_t + gamma * (G_{t+1} or bootstrap_t)``.

    The chain continues into ``G_{t+1}`` unless step ``t`` ended its episode or is the last
    row; there it continues into ``bootstrap_t`` instead: the value of the observation after
    step ``t`` for a truncated episode or an unfinished last row, 0 for a termination
    (Monte-Carlo methods without a critic pass ``None``: every cut bootstraps from 0).

    Args:
        rewards, dones: ``(T, N)``.
        bootstrap: ``(T, N)`` continuation values at cuts, or ``None``.

    Returns:
        ``(T, N)`` returns.
    """
    cont = 1.0 - dones
    cont[-1] = 0.0  # the last row always continues into its bootstrap
    x = rewards if bootstrap is None else rewards + gamma * (1.0 - cont) * bootstrap
    return _reverse_scan(x, gamma * cont)


def gae(
    *,
    rewards: torch.Tensor,
    values: torch.Tensor,
    next_values: torch.Tensor,
    terminated: torch.Tensor,
    dones: torch.Tensor,
    gamma: float,
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimation (Schulman et al. 2016) with truncation bootstrapping.

    ``delta_t = r_t + gamma * (1 - terminated_t) * next_values_t - values_t`` and
    ``A_t = delta_t + gamma * lam * (1 - dones_t) * A_{t+1}`` (``A_T = 0``). A truncated step
    bootstraps from the value of its real final observation (``next_values_t``); a
    terminated one does not; either way the advantage chain stops there.

    Args:
        rewards, values, terminated, dones: ``(T, N)``; ``values`` are ``V(s_t)``.
        next_values: ``(T, N)`` ``V`` of the observation each step led to (for the last row,
            the bootstrap value of the observation after the rollout).

    Returns:
        ``(advantages, returns)``, both ``(T, N)``; ``returns = advantages + values`` are
        the TD(lambda) value targets.
    """
    deltas = rewards + gamma * (1.0 - terminated) * next_values - values
    adv = _reverse_scan(deltas, gamma * lam * (1.0 - dones))
    return adv, adv + values


def _reverse_scan(x: torch.Tensor, decay: torch.Tensor) -> torch.Tensor:
    """``y_t = x_t + decay_t * y_{t+1}`` backwards over ``(T, N)`` with ``y_T = 0``.

    Loops over numpy views of CPU tensors without gradient: a torch op per row costs about
    five times a numpy one, which made this loop a visible share of a PPO update.
    """
    if x.device.type == "cpu" and not (x.requires_grad or decay.requires_grad):
        xs, ds = x.detach().numpy(), decay.detach().numpy()
        ys = np.empty_like(xs)
        last = np.zeros_like(xs[0])
        for t in range(len(xs) - 1, -1, -1):
            last = xs[t] + ds[t] * last
            ys[t] = last
        return torch.from_numpy(ys)
    rows = []
    prev = torch.zeros_like(x[0])
    for t in range(len(x) - 1, -1, -1):
        prev = x[t] + decay[t] * prev
        rows.append(prev)
    return torch.stack(rows[::-1])


def rloo_baseline(returns: torch.Tensor, *, dim: int = -1) -> torch.Tensor:
    """Leave-one-out baseline (Kool et al. 2019): for each of the ``k`` samples along ``dim``,
    the mean of the other ``k - 1``: ``(sum - own) / (k - 1)``. Needs ``k >= 2``."""
    k = returns.shape[dim]
    if k < 2:
        raise ValueError(f"rloo_baseline needs at least 2 samples per group, got {k}")
    return (returns.sum(dim=dim, keepdim=True) - returns) / (k - 1)


def standardize(
    x: torch.Tensor, *, mask: torch.Tensor | None = None, eps: float = 1e-8
) -> torch.Tensor:
    """``(x - mean) / (std + eps)`` with mean and (unbiased) std over the entries in ``mask``
    (all entries when ``None``); entries outside ``mask`` become 0. Used per minibatch by PPO
    and over the whole global batch by REINFORCE++ (Hu 2025)."""
    if mask is None:
        if x.numel() < 2:
            return x - x.mean()
        return (x - x.mean()) / (x.std() + eps)
    sel = x[mask]
    std = sel.std() if sel.numel() > 1 else torch.zeros((), dtype=x.dtype)
    return torch.where(mask, (x - sel.mean()) / (std + eps), torch.zeros_like(x))


def ppo_policy_loss(
    log_prob: torch.Tensor,
    old_log_prob: torch.Tensor,
    advantages: torch.Tensor,
    *,
    clip: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Clipped surrogate (Schulman et al. 2017): ``mean(max(-A r, -A clip(r, 1-c, 1+c)))``.

    Args:
        log_prob: ``(B,)`` log-probabilities of the taken actions under the current policy.
        old_log_prob: ``(B,)`` the same under the behaviour policy.
        advantages: ``(B,)``.

    Returns:
        ``(loss, approx_kl, clip_fraction)``: the scalar loss, the ``(r - 1) - log r``
        estimator of ``KL(old || new)`` and the fraction of ratios outside ``1 +- clip``
        (the last two without gradient).
    """
    log_ratio = log_prob - old_log_prob
    ratio = log_ratio.exp()
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip, 1.0 + clip)
    loss = torch.maximum(unclipped, clipped).mean()
    with torch.no_grad():
        approx_kl = ((ratio - 1.0) - log_ratio).mean()
        clip_fraction = ((ratio - 1.0).abs() > clip).float().mean()
    return loss, approx_kl, clip_fraction


def ppo_value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    *,
    clip: float | None,
) -> torch.Tensor:
    """``0.5 * mean((V - R)^2)``, or with ``clip`` the pessimistic clipped form of PPO
    implementations: ``0.5 * mean(max((V - R)^2, (V_old + clip(V - V_old, -c, c) - R)^2))``.

    Args:
        values: ``(B,)`` current predictions; old_values: ``(B,)`` predictions at collection;
        returns: ``(B,)`` targets.
    """
    unclipped = (values - returns) ** 2
    if clip is None:
        return 0.5 * unclipped.mean()
    clipped_values = old_values + torch.clamp(values - old_values, -clip, clip)
    return 0.5 * torch.maximum(unclipped, (clipped_values - returns) ** 2).mean()


def explained_variance(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``1 - Var(target - prediction) / Var(target)`` over ``(B,)``; NaN when ``Var(target)``
    is 0 (1 is perfect, 0 no better than a constant, negative worse)."""
    var = target.var()
    return torch.where(var > 0, 1.0 - (target - prediction).var() / var, torch.nan)


# --- distributional ---


def categorical_projection(
    *,
    next_probs: torch.Tensor,
    reward: torch.Tensor,
    discount: torch.Tensor,
    support: torch.Tensor,
) -> torch.Tensor:
    """Project the shifted distribution ``reward + discount * Z`` onto the fixed support (C51).

    Bellemare et al. 2017, Algorithm 1: each atom ``z_j`` with probability ``p_j`` moves to
    ``Tz_j = clip(r + discount * z_j, v_min, v_max)``, at fractional index
    ``b_j = (Tz_j - v_min) / dz``, and its mass is split between the neighbouring atoms
    ``l = floor(b_j)`` and ``u = ceil(b_j)`` in proportion to closeness: ``p_j (u - b_j)`` to
    ``l`` and ``p_j (b_j - l)`` to ``u``. When ``Tz_j`` lands exactly on an atom
    (``l == u``, e.g. at the support's edges after clipping) all of ``p_j`` goes there.
    Terminal transitions (``discount = 0``) put all mass at the projection of ``r``.

    Args:
        next_probs: ``(B, K)`` probabilities of the bootstrap action's return distribution.
        reward: ``(B,)`` n-step discounted reward sums.
        discount: ``(B,)`` ``gamma**L``, or 0 after termination.
        support: ``(K,)`` evenly spaced atoms ``v_min ... v_max`` (``K >= 2``).

    Returns:
        ``(B, K)`` projected probabilities (each row sums to the row sum of ``next_probs``).
    """
    k = support.shape[0]
    if k < 2:
        raise ValueError(f"support needs at least 2 atoms, got {k}")
    v_min, v_max = support[0], support[-1]
    tz = (reward[:, None] + discount[:, None] * support[None, :]).clamp(v_min, v_max)  # (B, K)
    b = ((tz - v_min) * ((k - 1) / (v_max - v_min))).clamp(0, k - 1)
    lower, upper = b.floor(), b.ceil()
    on_atom = (lower == upper).to(b.dtype)
    out = torch.zeros_like(next_probs)
    out.scatter_add_(1, lower.long(), next_probs * (upper - b + on_atom))
    out.scatter_add_(1, upper.long(), next_probs * (b - lower))
    return out


def categorical_loss(
    log_probs: torch.Tensor,
    target_probs: torch.Tensor,
    *,
    weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample KL divergence ``KL(target || predicted)`` and its (importance-weighted) mean.

    The KL differs from the cross-entropy ``-sum target * log_probs`` only by the target's
    entropy, which carries no gradient, so the gradient is C51's; the KL is what Rainbow
    uses as the replay priority (Hessel et al. 2018), and it is 0 for a perfect prediction.

    Args:
        log_probs: ``(B, K)`` predicted log-probabilities (``log_softmax`` of the logits).
        target_probs: ``(B, K)`` projected target probabilities (no gradient needed).
        weights: ``(B,)`` importance weights (prioritized replay) or ``None``.

    Returns:
        ``(loss, per_sample)``: scalar mean and ``(B,)`` divergences.
    """
    entropy_part = torch.special.xlogy(target_probs, target_probs)
    per_sample = (entropy_part - target_probs * log_probs).sum(-1)
    loss = (per_sample * weights).mean() if weights is not None else per_sample.mean()
    return loss, per_sample


# --- soft actor-critic ---


def tanh_log_det_jacobian(u: torch.Tensor) -> torch.Tensor:
    """``log(1 - tanh(u)^2)`` summed over the last axis, in the stable form
    ``2 (log 2 - u - softplus(-2u))`` (no ``1 - tanh^2`` underflow for large ``|u|``).

    ``u (B, D)`` -> ``(B,)``.
    """
    return (2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))).sum(dim=-1)


def squashed_gaussian_log_prob(
    u: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor, *, log_scale: torch.Tensor
) -> torch.Tensor:
    """Log-density of ``a = scale * tanh(u) + bias`` for ``u ~ N(mean, exp(log_std))``.

    By the change of variables ``log p(a) = log N(u) - sum log(scale * (1 - tanh(u)^2))``
    (Haarnoja et al. 2018, appendix C). All of ``u, mean, log_std`` are ``(B, D)``;
    ``log_scale (D,)`` is ``log`` of the half-range of the action bounds. Returns ``(B,)``.
    """
    normal = -0.5 * ((u - mean) / log_std.exp()).pow(2) - log_std - 0.5 * math.log(2 * math.pi)
    return normal.sum(dim=-1) - tanh_log_det_jacobian(u) - log_scale.sum()


def sac_critic_target(
    *,
    reward: torch.Tensor,
    discount: torch.Tensor,
    next_q: torch.Tensor,
    next_log_prob: torch.Tensor,
    alpha: torch.Tensor | float,
) -> torch.Tensor:
    """Soft Bellman target ``r + discount * (min_i Q'_i(s', a') - alpha * log pi(a'|s'))``.

    Args:
        reward: ``(B,)`` (n-step) reward.
        discount: ``(B,)`` ``gamma**L``, 0 after termination (truncation bootstraps).
        next_q: ``(K, B)`` target critics' values of ``(s', a' ~ pi(s'))``.
        next_log_prob: ``(B,)`` ``log pi(a'|s')``.
        alpha: the entropy temperature.

    Returns:
        ``(B,)`` targets.
    """
    soft_value = next_q.amin(dim=0) - alpha * next_log_prob
    return torch.addcmul(reward, discount, soft_value)


def sac_temperature_loss(
    log_alpha: torch.Tensor, log_prob: torch.Tensor, *, target_entropy: float
) -> torch.Tensor:
    """Automatic entropy tuning: ``mean(-alpha * (log pi(a|s) + target_entropy))`` with
    ``alpha = exp(log_alpha)``; ``log_prob (B,)`` carries no gradient. Minimizing it raises
    alpha while the policy's entropy is below ``target_entropy`` (``-dim(A)``)."""
    return -(log_alpha.exp() * (log_prob.detach() + target_entropy)).mean()


# --- TD-MPC2 (Hansen, Su and Wang 2024) ---
# Rewards and values are regressed as distributions over ``num_bins`` evenly spaced bins
# on ``[vmin, vmax]`` in symlog space: a scalar target becomes a two-hot vector (its mass
# split between the two nearest bins), predictions are logits trained by soft
# cross-entropy and decoded as ``symexp(sum softmax(logits) * bins)``.


def symlog(x: torch.Tensor) -> torch.Tensor:
    """``sign(x) log(1 + |x|)``: compresses large magnitudes, keeps the sign (DreamerV3)."""
    return torch.sign(x) * torch.log1p(torch.abs(x))


def symexp(x: torch.Tensor) -> torch.Tensor:
    """``sign(x) (exp(|x|) - 1)``, the inverse of ``symlog``."""
    return torch.sign(x) * torch.expm1(torch.abs(x))


def two_hot(x: torch.Tensor, *, num_bins: int, vmin: float, vmax: float) -> torch.Tensor:
    """Two-hot encoding of ``symlog(x)`` (clamped to ``[vmin, vmax]``) over ``num_bins``
    evenly spaced bins: ``x (...)`` -> ``(..., num_bins)``, each row summing to one, whose
    expectation over the bin centres is ``symlog(x)`` exactly (inside the range)."""
    bin_size = (vmax - vmin) / (num_bins - 1)
    pos = (torch.clamp(symlog(x), vmin, vmax) - vmin) / bin_size  # in [0, num_bins - 1]
    lower = torch.floor(pos).clamp(max=num_bins - 2)
    upper_weight = (pos - lower).unsqueeze(-1)
    lower_idx = lower.long().unsqueeze(-1)
    out = torch.zeros(*x.shape, num_bins, dtype=x.dtype, device=x.device)
    out.scatter_(-1, lower_idx, 1.0 - upper_weight)
    out.scatter_(-1, lower_idx + 1, upper_weight)
    return out


def two_hot_inv(logits: torch.Tensor, *, num_bins: int, vmin: float, vmax: float) -> torch.Tensor:
    """The scalar a distribution over the bins encodes: ``symexp(sum softmax(logits) *
    bins)``; ``logits (..., num_bins)`` -> ``(...)``."""
    bins = torch.linspace(vmin, vmax, num_bins, dtype=logits.dtype, device=logits.device)
    return symexp(torch.matmul(torch.softmax(logits, dim=-1), bins))


def soft_cross_entropy(
    logits: torch.Tensor, target: torch.Tensor, *, num_bins: int, vmin: float, vmax: float
) -> torch.Tensor:
    """``-sum two_hot(target) * log_softmax(logits)``: ``logits (..., num_bins)`` against
    scalar targets ``(...)`` (broadcast to the logits' leading shape) -> ``(...)``."""
    target = torch.broadcast_to(target, logits.shape[:-1])
    soft = two_hot(target, num_bins=num_bins, vmin=vmin, vmax=vmax)
    return -(soft * F.log_softmax(logits, dim=-1)).sum(-1)


def rho_weighted_mean(per_step: torch.Tensor, *, rho: float) -> torch.Tensor:
    """``(1/T) sum_t rho^t mean(per_step[t])`` over the leading (time) axis of ``per_step
    (T, ...)``: TD-MPC2's horizon weighting, later steps of a latent rollout counting less.

    With the per-element losses of a horizon ``H`` this is the consistency loss (``T = H``,
    squared errors ``(H, B, Z)``), the reward loss (cross-entropies ``(H, B)``), the value
    loss (``(H, K, B)`` for ``K`` Q heads: the authors' sum over heads divided by ``H K``)
    and the policy loss (``T = H + 1`` latents).
    """
    steps = per_step.shape[0]
    weights = rho ** torch.arange(steps, dtype=per_step.dtype, device=per_step.device)
    return (weights * per_step.reshape(steps, -1).mean(dim=1)).sum() / steps


def rho_weighted_sum(per_step: torch.Tensor, *, rho: float) -> torch.Tensor:
    """``sum_t rho^t per_step[t]`` over the leading (time) axis of ``per_step (T, B)`` ->
    ``(B,)``: TD-MPC's per-sample horizon losses (weighted by importance weights before
    the batch mean). ``rho_weighted_mean(x) == rho_weighted_sum(x, rho=rho).mean() / T``."""
    weights = rho ** torch.arange(per_step.shape[0], dtype=per_step.dtype, device=per_step.device)
    return torch.tensordot(weights, per_step, dims=1)


def episode_discount(
    episode_length: int, *, denom: float = 5.0, low: float = 0.95, high: float = 0.995
) -> float:
    """TD-MPC2's discount from the episode length ``L``: ``(L/denom - 1) / (L/denom)``
    clipped to ``[low, high]`` (0.99 for ``L = 500``, 0.995 for ``L = 1000``); its
    effective horizon ``1 / (1 - gamma)`` is ``L / denom`` steps within the clip."""
    frac = episode_length / denom
    return min(max((frac - 1.0) / frac, low), high)


def percentile_range(x: torch.Tensor, *, low: float = 0.05, high: float = 0.95) -> torch.Tensor:
    """``max(quantile(x, high) - quantile(x, low), 1)`` over all of ``x`` (linear
    interpolation between order statistics): the robust scale TD-MPC2 divides Q-values by
    in the policy loss, kept as a running average (``torch.lerp`` by ``tau``)."""
    q = torch.quantile(x.detach().reshape(-1).float(), x.new_tensor([low, high]).float())
    return torch.clamp(q[1] - q[0], min=1.0).to(x.dtype)


def gaussian_log_prob(eps: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """Log-density of ``u = mean + exp(log_std) * eps`` under ``N(mean, exp(log_std))``,
    summed over the last axis: ``sum(-eps^2 / 2 - log_std) - D log(2 pi) / 2``."""
    return (-0.5 * eps.pow(2) - log_std).sum(-1) - 0.5 * math.log(2 * math.pi) * eps.shape[-1]
