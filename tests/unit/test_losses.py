"""TD targets and losses against hand-computed values."""

from __future__ import annotations

import pytest
import torch

from rlbench.losses import polyak_update, q_target, td_loss


def test_dqn_target_uses_target_max() -> None:
    target = q_target(
        reward=torch.tensor([1.0, 2.0]),
        discount=torch.tensor([0.9, 0.0]),
        next_q_target=torch.tensor([[1.0, 3.0], [10.0, 20.0]]),
    )
    torch.testing.assert_close(target, torch.tensor([1.0 + 0.9 * 3.0, 2.0]))


def test_double_q_target_evaluates_online_argmax_with_target_net() -> None:
    target = q_target(
        reward=torch.tensor([1.0]),
        discount=torch.tensor([0.5]),
        next_q_target=torch.tensor([[4.0, 2.0]]),
        next_q_online=torch.tensor([[0.0, 9.0]]),  # online prefers action 1
    )
    torch.testing.assert_close(target, torch.tensor([1.0 + 0.5 * 2.0]))


def test_n_step_discount_is_applied_as_given() -> None:
    # reward is already the n-step sum; discount gamma**3
    target = q_target(
        reward=torch.tensor([2.71]),
        discount=torch.tensor([0.9**3]),
        next_q_target=torch.tensor([[1.0, 0.0]]),
    )
    assert float(target) == pytest.approx(2.71 + 0.729)


def test_huber_and_mse_hand_values() -> None:
    pred, tgt = torch.tensor([0.0, 0.0]), torch.tensor([0.5, 3.0])
    # huber elements: 0.5 * 0.5**2 = 0.125 and 3 - 0.5 = 2.5
    assert float(td_loss(pred, tgt, kind="huber")) == pytest.approx(1.3125)
    w = torch.tensor([2.0, 1.0])
    assert float(td_loss(pred, tgt, kind="huber", weights=w)) == pytest.approx((0.25 + 2.5) / 2)
    loss = td_loss(pred, tgt, kind="mse", weights=torch.tensor([2.0, 0.0]))
    assert float(loss) == pytest.approx((2 * 0.25 + 0) / 2)
    column = td_loss(pred[:, None], tgt[:, None], kind="mse", weights=torch.tensor([[2.0], [0.0]]))
    assert float(column) == pytest.approx(float(loss))  # (B, 1) columns, as DQN passes them
    with pytest.raises(ValueError, match="allowed"):
        td_loss(pred, tgt, kind="l3")
    with pytest.raises(ValueError, match="weights"):
        td_loss(pred[:, None], tgt[:, None], weights=w)  # (B,) weights would broadcast to (B, B)


def test_polyak_update() -> None:
    online, target = [torch.tensor([1.0, 2.0])], [torch.tensor([3.0, 6.0])]
    polyak_update(online, target, tau=0.25)
    torch.testing.assert_close(target[0], torch.tensor([2.5, 5.0]))
    polyak_update(online, target, tau=1.0)
    torch.testing.assert_close(target[0], online[0])


def test_lean_clip_grad_norm_matches_torch() -> None:
    from rlbench.algos.base import clip_grad_norm_

    torch.manual_seed(0)
    a = [torch.randn(3, 4, requires_grad=True), torch.randn(5, requires_grad=True)]
    b = [t.detach().clone().requires_grad_(True) for t in a]
    for params in (a, b):
        (sum((p**2).sum() for p in params) * 10).backward()  # type: ignore[union-attr]
    norm_a = clip_grad_norm_(a, 1.0)
    norm_b = torch.nn.utils.clip_grad_norm_(b, 1.0)
    torch.testing.assert_close(norm_a, norm_b)
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x.grad, y.grad)
    small = [torch.ones(2, requires_grad=True)]
    small[0].grad = torch.full((2,), 0.1)
    clip_grad_norm_(small, 10.0)
    torch.testing.assert_close(small[0].grad, torch.full((2,), 0.1))  # under the bound: unchanged
