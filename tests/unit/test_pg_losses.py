"""Policy-gradient maths against hand-computed cases (episode ends inside the rollout), and
the advantage hooks of REINFORCE, RLOO and REINFORCE++."""

from __future__ import annotations

import copy
import functools
import math
from typing import Any

import gymnasium as gym
import pytest
import torch

from rlbench.algos.reinforce import Reinforce
from rlbench.algos.reinforce_pp import ReinforcePP
from rlbench.algos.rloo import RLOO
from rlbench.losses import (
    explained_variance,
    gae,
    ppo_policy_loss,
    ppo_value_loss,
    returns_to_go,
    rloo_baseline,
    standardize,
)
from rlbench.networks import MLP


def t(*rows: list[float]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


# env 0: an episode terminates at t=1, the next one is unfinished after t=3 (bootstrap 10)
# env 1: an episode is truncated at t=2 (value of its final observation 8), the next one is
#        unfinished after t=3 (bootstrap 2)
REWARDS = t([1, 0], [1, 2], [1, 0], [1, 4])
DONES = t([0, 0], [1, 0], [0, 1], [0, 0])
BOOTSTRAP = t([0, 0], [0, 0], [0, 8], [10, 2])


def test_returns_to_go_cut_at_episode_ends_and_bootstrapped_where_given() -> None:
    out = returns_to_go(REWARDS, dones=DONES, gamma=0.5, bootstrap=BOOTSTRAP)
    # env 0: G3 = 1 + .5*10 = 6, G2 = 1 + .5*6 = 4, G1 = 1 (terminated), G0 = 1 + .5*1
    # env 1: G3 = 4 + .5*2 = 5, G2 = 0 + .5*8 = 4 (truncated), G1 = 2 + .5*4, G0 = .5*4
    torch.testing.assert_close(out, t([1.5, 2], [1, 4], [4, 4], [6, 5]))


def test_returns_to_go_without_bootstrap_is_monte_carlo() -> None:
    out = returns_to_go(REWARDS, dones=DONES, gamma=0.5)
    torch.testing.assert_close(out, t([1.5, 1], [1, 2], [1.5, 0], [1, 4]))


def test_gae_bootstraps_truncation_but_not_termination() -> None:
    rewards, values = t([1], [2], [3]), t([0.5], [1.0], [2.0])
    next_values = t([1.0], [4.0], [5.0])  # row 1's next value: V(final observation) = 4
    dones = t([0], [1], [0])
    # truncated at t=1: d0 = 1 + .9*1 - .5 = 1.4, d1 = 2 + .9*4 - 1 = 4.6, d2 = 3 + .9*5 - 2
    adv, ret = gae(
        rewards=rewards,
        values=values,
        next_values=next_values,
        terminated=t([0], [0], [0]),
        dones=dones,
        gamma=0.9,
        lam=0.5,
    )
    # A2 = 5.5; A1 = 4.6 (the chain stops at the episode end); A0 = 1.4 + .45 * 4.6
    torch.testing.assert_close(adv, t([3.47], [4.6], [5.5]))
    torch.testing.assert_close(ret, adv + values)
    # terminated at t=1: no bootstrap, d1 = 2 - 1 = 1, A0 = 1.4 + .45 * 1
    adv, _ = gae(
        rewards=rewards,
        values=values,
        next_values=next_values,
        terminated=t([0], [1], [0]),
        dones=dones,
        gamma=0.9,
        lam=0.5,
    )
    torch.testing.assert_close(adv, t([1.85], [1.0], [5.5]))


def test_gae_with_lambda_one_gives_bootstrapped_returns_to_go() -> None:
    torch.manual_seed(0)
    values = torch.randn(4, 2)
    next_values = torch.cat([values[1:], t([10, 2])])
    next_values[2, 1] = 8.0  # env 1 truncated at t=2: the final observation's value
    terminated = t([0, 0], [1, 0], [0, 0], [0, 0])
    _, ret = gae(
        rewards=REWARDS,
        values=values,
        next_values=next_values,
        terminated=terminated,
        dones=DONES,
        gamma=0.5,
        lam=1.0,
    )
    expected = returns_to_go(
        REWARDS, dones=DONES, gamma=0.5, bootstrap=next_values * (1 - terminated)
    )
    torch.testing.assert_close(ret, expected)


def reference_gae(
    rewards: list[list[float]],
    values: list[list[float]],
    next_values: list[list[float]],
    terminated: list[list[bool]],
    truncated: list[list[bool]],
    *,
    gamma: float,
    lam: float,
) -> list[list[float]]:
    """GAE written out per env and step, the textbook way, in plain Python floats."""
    steps, envs = len(rewards), len(rewards[0])
    adv = [[0.0] * envs for _ in range(steps)]
    for i in range(envs):
        later = 0.0  # A_{t+1} of the same episode
        for s in reversed(range(steps)):
            if terminated[s][i]:  # no future after a terminal state
                delta = rewards[s][i] - values[s][i]
            else:  # truncated steps bootstrap from their final observation's value
                delta = rewards[s][i] + gamma * next_values[s][i] - values[s][i]
            episode_goes_on = not (terminated[s][i] or truncated[s][i]) and s < steps - 1
            adv[s][i] = delta + (gamma * lam * later if episode_goes_on else 0.0)
            later = adv[s][i]
    return adv


@pytest.mark.parametrize("autograd", [False, True])  # _reverse_scan's numpy and torch paths
@pytest.mark.parametrize(("gamma", "lam"), [(0.99, 0.95), (0.9, 0.5), (0.8, 1.0), (0.9, 0.0)])
def test_gae_matches_a_plain_loop_on_a_random_rollout(
    gamma: float, lam: float, autograd: bool
) -> None:
    """``(T, N) = (64, 8)`` with terminations and truncations (some back to back and some in
    the last row) against ``reference_gae``."""
    gen = torch.Generator().manual_seed(7)
    steps, envs = 64, 8
    rewards = torch.randn(steps, envs, generator=gen, dtype=torch.float64)
    values = torch.randn(steps, envs, generator=gen, dtype=torch.float64)
    next_values = torch.randn(steps, envs, generator=gen, dtype=torch.float64)
    u = torch.rand(steps, envs, generator=gen)
    terminated, truncated = u < 0.08, (u >= 0.08) & (u < 0.14)
    terminated[-1, 0], truncated[-1, 1] = True, True
    terminated[10:12, 2] = True
    truncated[20:22, 3] = True
    assert terminated.sum() > 20 and truncated.sum() > 15
    dones = terminated | truncated
    adv, ret = gae(
        rewards=rewards.requires_grad_(autograd),
        values=values,
        next_values=next_values,
        terminated=terminated.double(),
        dones=dones.double(),
        gamma=gamma,
        lam=lam,
    )
    expected = torch.tensor(
        reference_gae(
            rewards.tolist(),
            values.tolist(),
            next_values.tolist(),
            terminated.tolist(),
            truncated.tolist(),
            gamma=gamma,
            lam=lam,
        ),
        dtype=torch.float64,
    )
    torch.testing.assert_close(adv.detach(), expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ret.detach(), expected + values, rtol=1e-12, atol=1e-12)
    # float32, as the rollout DataModule calls it
    adv32, _ = gae(
        rewards=rewards.detach().float(),
        values=values.float(),
        next_values=next_values.float(),
        terminated=terminated.float(),
        dones=dones.float(),
        gamma=gamma,
        lam=lam,
    )
    torch.testing.assert_close(adv32, expected.float(), rtol=1e-5, atol=1e-5)


def test_rloo_baseline_is_mean_of_the_others() -> None:
    base = rloo_baseline(t([1, 2, 3, 6], [0, 0, 4, 4]))
    torch.testing.assert_close(base, t([11 / 3, 10 / 3, 3, 2], [8 / 3, 8 / 3, 4 / 3, 4 / 3]))
    # along another dim: (T=1, groups=1, k=2)
    torch.testing.assert_close(rloo_baseline(t([5, 7]).unsqueeze(0), dim=-1), t([7, 5])[None])
    with pytest.raises(ValueError, match="at least 2"):
        rloo_baseline(t([1], [2]))


def test_standardize_over_the_mask_only() -> None:
    torch.testing.assert_close(standardize(t([1, 2, 3])), t([-1, 0, 1]), atol=1e-6, rtol=0)
    mask = torch.tensor([[True, True], [True, False]])
    out = standardize(t([1, 2], [3, 100]), mask=mask)
    torch.testing.assert_close(out, t([-1, 0], [1, 0]), atol=1e-6, rtol=0)


def test_ppo_policy_loss_hand_case() -> None:
    ratio = t(1.5, 0.5, 1.1)
    new = ratio.log().requires_grad_(True)
    loss, kl, clip_frac = ppo_policy_loss(new, torch.zeros(3), t(1, 1, -2), clip=0.2)
    # max(-A r, -A clip(r)): [-1.2 (clipped), -0.5 (unclipped), 2.2]
    assert float(loss.detach()) == pytest.approx((-1.2 - 0.5 + 2.2) / 3)
    assert float(clip_frac) == pytest.approx(2 / 3)
    expected_kl = sum((r - 1) - math.log(r) for r in (1.5, 0.5, 1.1)) / 3
    assert float(kl) == pytest.approx(expected_kl, rel=1e-5)
    loss.backward()
    assert new.grad is not None  # d/dlogp of -A r is -A r; zero where the clip is active
    torch.testing.assert_close(new.grad, t(0.0, -0.5 / 3, 2.2 / 3))


def test_ppo_value_loss_plain_and_clipped() -> None:
    values, old, returns = t(1, 3), t(2, 2), t(0, 0)
    assert float(ppo_value_loss(values, old, returns, clip=None)) == pytest.approx(2.5)
    # clipped predictions 1.5 and 2.5: max([1, 9], [2.25, 6.25]) = [2.25, 9]
    assert float(ppo_value_loss(values, old, returns, clip=0.5)) == pytest.approx(2.8125)


def test_explained_variance() -> None:
    target = t(1, 2, 3, 4)
    assert float(explained_variance(target, target)) == pytest.approx(1.0)
    assert float(explained_variance(torch.zeros(4), target)) == pytest.approx(0.0)
    assert float(explained_variance(target + 1, target)) == pytest.approx(1.0)
    assert math.isnan(float(explained_variance(target, torch.ones(4))))


# ---------------------------------------------------------------- algorithm advantage hooks
def _grid(returns: torch.Tensor, valid: torch.Tensor, **extra: torch.Tensor) -> dict[str, Any]:
    return {"return": returns, "advantage": returns.clone(), "valid": valid, **extra}


def _module(cls: type, **kwargs: Any) -> Any:
    encoder = functools.partial(MLP, hidden=(8,), activation="tanh")
    return cls(network=encoder, optimizer=functools.partial(torch.optim.Adam), **kwargs)


def test_rloo_advantage_is_own_return_minus_the_mean_of_the_others() -> None:
    # 2 groups of 2 episodes; episode 1 ended after 1 step, episode 3 after 2
    returns = t([3, 1, 4, 2], [2, 0, 2, 1], [1, 0, 1, 0])
    valid = torch.tensor([[True] * 4, [True, False, True, True], [True, False, True, False]])
    rloo = _module(RLOO, episodes=4, group_size=2)
    adv = rloo.finish_rollout(_grid(returns, valid))["advantage"]
    # time-aligned: the partner's return-to-go at the same step (0 once it has ended)
    torch.testing.assert_close(adv, t([2, -2, 2, -2], [2, 0, 1, -1], [1, 0, 1, 0]))
    rloo = _module(RLOO, episodes=4, group_size=2, credit="episode")
    adv = rloo.finish_rollout(_grid(returns, valid))["advantage"]
    # the LLM form: every step of an episode gets G_0 minus the partner's G_0
    torch.testing.assert_close(adv, t([2, -2, 2, -2], [2, 0, 2, -2], [2, 0, 2, 0]))


def test_reinforce_pp_normalizes_over_the_whole_batch() -> None:
    returns = t([1, 5], [3, 100])
    valid = torch.tensor([[True, True], [True, False]])
    module = _module(ReinforcePP, episodes=2)
    adv = module.finish_rollout(_grid(returns, valid))["advantage"]
    torch.testing.assert_close(adv, t([-1, 1], [0, 0]), atol=1e-6, rtol=0)


def test_reinforce_pp_folds_the_kl_to_the_previous_policy_into_the_rewards() -> None:
    torch.manual_seed(0)
    module = _module(ReinforcePP, episodes=2, kl_coef=0.5)
    module.build(gym.spaces.Box(-1, 1, (3,)), gym.spaces.Discrete(2))
    obs, actions = torch.randn(2, 2, 3), torch.randint(0, 2, (2, 2))
    valid = torch.tensor([[True, True], [True, False]])

    def rollout() -> dict[str, torch.Tensor]:
        with torch.no_grad():
            behaviour = module.ac.log_prob(obs.flatten(0, 1), actions.flatten(0, 1))
        return {
            "obs": obs,
            "action": actions,
            "log_prob": behaviour.view(2, 2),
            "reward": torch.ones(2, 2),
            "valid": valid,
        }

    first = module.prepare_rollout(rollout())  # the reference starts as the policy itself
    torch.testing.assert_close(first["reward"], torch.ones(2, 2))
    previous = copy.deepcopy(module.ac.policy)
    with torch.no_grad():  # an update changes the policy
        for p in module.ac.policy.parameters():
            p.add_(torch.randn_like(p))
    second = rollout()
    with torch.no_grad():
        ref = module.ac.log_prob(obs.flatten(0, 1), actions.flatten(0, 1), policy=previous)
    kl = (second["log_prob"] - ref.view(2, 2)) * valid
    assert kl.abs().max() > 0.01
    out = module.prepare_rollout(second)
    torch.testing.assert_close(out["reward"], torch.ones(2, 2) - 0.5 * kl)


def test_reinforce_baseline_and_return_normalization() -> None:
    returns, values = t([3, 5], [1, 9]), t([1, 1], [1, 1])
    valid = torch.tensor([[True, True], [True, False]])
    plain = _module(Reinforce, episodes=2, baseline=False, normalize_returns=False)
    adv = plain.finish_rollout(_grid(returns, valid, value=values))["advantage"]
    torch.testing.assert_close(adv, returns)
    baseline = _module(Reinforce, episodes=2, baseline=True, normalize_returns=False)
    adv = baseline.finish_rollout(_grid(returns, valid, value=values))["advantage"]
    torch.testing.assert_close(adv, returns - values)
    both = _module(Reinforce, episodes=2, baseline=True, normalize_returns=True)
    adv = both.finish_rollout(_grid(returns, valid, value=values))["advantage"]
    torch.testing.assert_close(adv, t([0, 1], [-1, 0]), atol=1e-6, rtol=0)  # from [2, 4, 0]


def test_scans_agree_on_the_numpy_and_the_autograd_paths() -> None:
    torch.manual_seed(0)
    rewards, values, next_values = torch.randn(6, 3), torch.randn(6, 3), torch.randn(6, 3)
    dones = (torch.rand(6, 3) < 0.3).float()
    terminated = dones * (torch.rand(6, 3) < 0.5).float()
    fast, _ = gae(
        rewards=rewards,
        values=values,
        next_values=next_values,
        terminated=terminated,
        dones=dones,
        gamma=0.9,
        lam=0.8,
    )
    slow, _ = gae(
        rewards=rewards.clone().requires_grad_(True),
        values=values,
        next_values=next_values,
        terminated=terminated,
        dones=dones,
        gamma=0.9,
        lam=0.8,
    )
    torch.testing.assert_close(fast, slow.detach())
    fast = returns_to_go(rewards, dones=dones, gamma=0.9, bootstrap=next_values)
    slow = returns_to_go(
        rewards.requires_grad_(True), dones=dones, gamma=0.9, bootstrap=next_values
    )
    torch.testing.assert_close(fast, slow.detach())
