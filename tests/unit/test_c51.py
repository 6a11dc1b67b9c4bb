"""C51: the categorical projection and the KL loss against hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rlbench.losses import categorical_loss, categorical_projection

SUPPORT = torch.tensor([0.0, 1.0, 2.0])


def project(
    probs: list[float], reward: float, discount: float, support: torch.Tensor = SUPPORT
) -> torch.Tensor:
    return categorical_projection(
        next_probs=torch.tensor([probs]),
        reward=torch.tensor([reward]),
        discount=torch.tensor([discount]),
        support=support,
    )[0]


def test_mass_between_atoms_is_split_by_distance() -> None:
    # Tz = 0.5 + z = [0.5, 1.5, 2.5 -> 2]; all mass sits on z=1 -> Tz=1.5, half to 1 and 2
    torch.testing.assert_close(project([0.0, 1.0, 0.0], 0.5, 1.0), torch.tensor([0.0, 0.5, 0.5]))
    # a quarter of the way: Tz = 0.25 -> 0.75 on atom 0, 0.25 on atom 1
    torch.testing.assert_close(project([1.0, 0.0, 0.0], 0.25, 1.0), torch.tensor([0.75, 0.25, 0.0]))


def test_mass_landing_exactly_on_atoms_stays_there() -> None:
    # Tz = 1 + z = [1, 2, 3 -> clipped to 2]
    torch.testing.assert_close(project([0.2, 0.3, 0.5], 1.0, 1.0), torch.tensor([0.0, 0.2, 0.8]))


def test_support_edges_clip_all_mass_to_the_end_atoms() -> None:
    torch.testing.assert_close(project([0.2, 0.3, 0.5], 10.0, 1.0), torch.tensor([0.0, 0.0, 1.0]))
    torch.testing.assert_close(project([0.2, 0.3, 0.5], -10.0, 1.0), torch.tensor([1.0, 0.0, 0.0]))
    # v_max exactly, and just inside the lower edge
    torch.testing.assert_close(project([0.5, 0.5, 0.0], 2.0, 0.0), torch.tensor([0.0, 0.0, 1.0]))
    torch.testing.assert_close(project([0.5, 0.5, 0.0], 0.1, 0.0), torch.tensor([0.9, 0.1, 0.0]))


def test_terminal_transition_puts_everything_at_the_reward() -> None:
    # discount 0 (terminated): the next distribution is ignored, Tz = r for every atom
    torch.testing.assert_close(project([0.1, 0.2, 0.7], 1.25, 0.0), torch.tensor([0.0, 0.75, 0.25]))


def test_discount_contracts_the_distribution() -> None:
    support = torch.tensor([-1.0, 0.0, 1.0])
    p0, p1, p2 = 0.2, 0.3, 0.5
    # Tz = 0.5 z = [-0.5, 0, 0.5]
    expected = torch.tensor([0.5 * p0, 0.5 * p0 + p1 + 0.5 * p2, 0.5 * p2])
    torch.testing.assert_close(project([p0, p1, p2], 0.0, 0.5, support), expected)


def reference_projection(
    probs: np.ndarray, reward: np.ndarray, discount: np.ndarray, support: np.ndarray
) -> np.ndarray:
    """Bellemare et al. 2017, Algorithm 1, written as loops with floor/ceil."""
    batch, k = probs.shape
    v_min, v_max = support[0], support[-1]
    dz = (v_max - v_min) / (k - 1)
    out = np.zeros_like(probs)
    for b in range(batch):
        for j in range(k):
            tz = min(max(reward[b] + discount[b] * support[j], v_min), v_max)
            pos = (tz - v_min) / dz
            lo, hi = math.floor(pos), math.ceil(pos)
            if lo == hi:
                out[b, lo] += probs[b, j]
            else:
                out[b, lo] += probs[b, j] * (hi - pos)
                out[b, hi] += probs[b, j] * (pos - lo)
    return out


def test_matches_the_papers_algorithm_on_random_inputs() -> None:
    rng = np.random.default_rng(0)
    support = np.linspace(-10.0, 10.0, 51)
    probs = rng.dirichlet(np.ones(51), size=64)
    reward = rng.normal(0.0, 5.0, size=64)
    discount = rng.choice([0.0, 0.99, 0.99**3], size=64)
    got = categorical_projection(
        next_probs=torch.from_numpy(probs),
        reward=torch.from_numpy(reward),
        discount=torch.from_numpy(discount),
        support=torch.from_numpy(support),
    ).numpy()
    np.testing.assert_allclose(
        got, reference_projection(probs, reward, discount, support), atol=1e-12
    )
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-12)


def test_projection_needs_two_atoms() -> None:
    with pytest.raises(ValueError, match="at least 2 atoms"):
        project([1.0], 0.0, 1.0, torch.tensor([0.0]))


def test_kl_loss_hand_case_and_weights() -> None:
    log_probs = torch.log(torch.tensor([[0.5, 0.5], [0.25, 0.75]]))
    target = torch.tensor([[1.0, 0.0], [0.25, 0.75]])
    loss, per_sample = categorical_loss(log_probs, target)
    torch.testing.assert_close(per_sample, torch.tensor([math.log(2.0), 0.0]))
    torch.testing.assert_close(loss, torch.tensor(math.log(2.0) / 2))
    weighted, _ = categorical_loss(log_probs, target, weights=torch.tensor([0.5, 1.0]))
    torch.testing.assert_close(weighted, torch.tensor(0.5 * math.log(2.0) / 2))


def test_kl_gradient_equals_cross_entropy_gradient() -> None:
    logits = torch.tensor([[0.3, -1.0, 2.0]], requires_grad=True)
    target = torch.tensor([[0.2, 0.5, 0.3]])
    kl, _ = categorical_loss(torch.log_softmax(logits, dim=-1), target)
    (grad_kl,) = torch.autograd.grad(kl, logits)
    ce = -(target * torch.log_softmax(logits, dim=-1)).sum()
    (grad_ce,) = torch.autograd.grad(ce, logits)
    torch.testing.assert_close(grad_kl, grad_ce)
    torch.testing.assert_close(grad_ce, torch.softmax(logits, dim=-1).detach() - target)
