"""Pure loss and target functions, each unit-tested against hand-computed cases."""

from __future__ import annotations

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
        next_v = next_q_target.max(dim=1).values
    else:
        best = next_q_online.argmax(dim=1, keepdim=True)
        next_v = next_q_target.gather(1, best).squeeze(1)
    return reward + discount * next_v


def td_loss(
    prediction: torch.Tensor,
    target: torch.Tensor,
    *,
    kind: str = "huber",
    weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample and (importance-weighted) mean TD loss.

    Args:
        prediction, target: ``(B,)``.
        kind: ``huber`` (smooth L1, delta 1) or ``mse``.
        weights: ``(B,)`` importance weights (prioritized replay) or ``None``.

    Returns:
        ``(loss, per_sample)``: scalar mean and ``(B,)`` element losses.
    """
    if kind == "huber":
        per_sample = F.smooth_l1_loss(prediction, target, reduction="none")
    elif kind == "mse":
        per_sample = F.mse_loss(prediction, target, reduction="none")
    else:
        raise ValueError(f"loss kind '{kind}': allowed huber, mse")
    loss = (per_sample * weights).mean() if weights is not None else per_sample.mean()
    return loss, per_sample


def polyak_update(online: list[torch.Tensor], target: list[torch.Tensor], *, tau: float) -> None:
    """``target <- tau * online + (1 - tau) * target`` in place (``tau=1`` copies)."""
    with torch.no_grad():
        if tau >= 1.0:
            torch._foreach_copy_(target, online)
        else:
            torch._foreach_lerp_(target, online, tau)
