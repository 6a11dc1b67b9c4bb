"""RLOO: REINFORCE with a leave-one-out baseline (Kool et al. 2019; Ahmadian et al. 2024).

In the LLM setting RLOO samples ``k`` completions of one prompt, scores each with a single
reward ``R_i`` and weights every token of completion ``i`` by ``R_i - mean_{j != i} R_j``:
the other samples of the same prompt are the baseline, so no critic is needed, and the
baseline is unbiased because the other samples are independent of sample ``i``.

Adapted to control:

- prompt -> initial state: the ``k`` envs of a group are reset with the same seed, so they
  start from the same state with the same env randomness (``RolloutSpec.group_size``);
- completion -> episode, sampled from the current policy;
- one reward per sequence -> discounted returns-to-go ``G_t`` per step. With
  ``credit=step`` (default) step ``t`` of episode ``i`` is weighted by
  ``G_t^i - mean_{j != i} G_t^j``, the other episodes' returns-to-go at the same time step
  (0 for an episode that already ended). At ``t = 0`` this is exactly the LLM form; later
  steps keep per-step credit assignment, which an episodic task needs. The baseline still
  depends only on the other, independent episodes, so the gradient stays unbiased.
  ``credit=episode`` is the literal LLM form: every step of episode ``i`` gets
  ``G_0^i - mean_{j != i} G_0^j``.
- one gradient step per batch of ``episodes`` (= groups x ``k``) episodes, like
  Ahmadian et al.; truncated episodes are not bootstrapped (there is no critic).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from rlbench.algos.reinforce import PolicyGradientModule
from rlbench.errors import ConfigError
from rlbench.losses import rloo_baseline, standardize
from rlbench.specs import RolloutSpec

CREDITS = ("step", "episode")


class RLOO(PolicyGradientModule):
    """REINFORCE leave-one-out over groups of same-seed episodes.

    Args:
        episodes: episodes per update (a multiple of ``group_size`` and of
            ``env.num_envs``).
        group_size: ``k >= 2`` episodes per group (same reset seed).
        credit: ``step`` (time-aligned leave-one-out baseline) or ``episode`` (the
            sequence-level form).
        normalize_advantages: standardize the advantages over the batch.
        Other arguments: see ``PolicyGradientModule`` (there is no critic).
    """

    def __init__(
        self,
        *,
        name: str = "rloo",
        network: Callable[..., nn.Module],
        optimizer: Callable[..., torch.optim.Optimizer],
        lr: float = 1e-3,
        gamma: float = 0.99,
        episodes: int = 16,
        group_size: int = 4,
        credit: str = "step",
        normalize_advantages: bool = False,
        ent_coef: float = 0.0,
        max_grad_norm: float = 0.5,
        anneal_lr: bool = False,
        orthogonal_init: bool = True,
        init_log_std: float = 0.0,
        seed: int = 0,
    ) -> None:
        if group_size < 2:
            raise ConfigError(f"algo.group_size={group_size}: RLOO needs groups of >= 2")
        if credit not in CREDITS:
            raise ConfigError(f"algo.credit='{credit}': allowed {', '.join(CREDITS)}")
        super().__init__(
            name=name,
            network=network,
            optimizer=optimizer,
            lr=lr,
            critic=False,
            spec=RolloutSpec(
                mode="episodes", episodes=episodes, group_size=group_size, gamma=gamma
            ),
            ent_coef=ent_coef,
            max_grad_norm=max_grad_norm,
            anneal_lr=anneal_lr,
            orthogonal_init=orthogonal_init,
            init_log_std=init_log_std,
            seed=seed,
        )
        self.group_size = group_size
        self.credit = credit
        self.normalize_advantages = normalize_advantages

    def finish_rollout(self, rollout: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Advantages ``(T, E)``: own return-to-go minus the leave-one-out mean of the group
        (episode columns ``j`` with equal ``j // group_size``)."""
        valid = rollout["valid"]
        returns = rollout["return"] * valid
        if self.credit == "episode":
            returns = returns[:1].expand_as(returns)
        steps, episodes = returns.shape
        grouped = returns.reshape(steps, episodes // self.group_size, self.group_size)
        baseline = rloo_baseline(grouped, dim=-1).reshape(steps, episodes)
        adv = (returns - baseline) * valid
        if self.normalize_advantages:
            adv = standardize(adv, mask=valid)
        rollout["advantage"] = adv
        return rollout

    def update(self, batch: dict[str, Any]) -> None:
        log_prob, entropy, _ = self.ac.evaluate(batch["obs"], batch["action"])
        policy_loss = -(log_prob * batch["advantage"]).mean()
        entropy_mean = entropy.mean()
        loss = policy_loss - self.ent_coef * entropy_mean
        self.gradient_step(loss, self._params, max_grad_norm=self.max_grad_norm)
        self.metrics.add("train/loss", loss.detach())
        self.metrics.add("train/policy_loss", policy_loss.detach())
        self.metrics.add("train/entropy", entropy_mean.detach())
