"""REINFORCE++ (Hu 2025): critic-free, globally normalized advantages, PPO-style clipping.

In the LLM setting REINFORCE++ folds a per-token KL penalty to the frozen reference (SFT)
model into the reward, ``r'_t = r_t - beta * (log pi_old(a_t|s_t) - log pi_ref(a_t|s_t))``,
takes the undiscounted return-to-go of ``r'`` as each token's advantage, normalizes the
advantages over the whole global batch (not per prompt, unlike GRPO/RLOO), and optimizes
the PPO clipped surrogate over several minibatch epochs without a value network.

Adapted to control:

- a response -> an episode; batches are ``episodes`` whole episodes with discounted
  returns-to-go (``gamma``), normalized over all steps of the batch;
- control has no pretrained reference model. The optional penalty (``kl_coef > 0``) uses
  the previous iteration's behaviour policy as the reference: rewards of the rollout
  collected by ``pi_k`` get ``- kl_coef * (log pi_k(a|s) - log pi_{k-1}(a|s))`` (the k1
  estimator of ``KL(pi_k || pi_{k-1})``), a soft trust region across iterations on top of
  the per-update clip. With ``kl_coef = 0`` (default) no reference is kept;
- truncated episodes are not bootstrapped (there is no critic).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from rlbench.algos.reinforce import PolicyGradientModule, check_range
from rlbench.losses import ppo_policy_loss, standardize
from rlbench.specs import RolloutSpec


class ReinforcePP(PolicyGradientModule):
    """REINFORCE++ over whole episodes.

    Args:
        episodes: episodes per rollout (a multiple of ``env.num_envs``).
        epochs, minibatches: passes over each rollout and minibatches per pass.
        clip_coef: PPO ratio clip ``epsilon``.
        kl_coef: ``beta`` of the KL penalty folded into the reward (0 disables).
        Other arguments: see ``PolicyGradientModule`` (there is no critic).
    """

    def __init__(
        self,
        *,
        name: str = "reinforce_pp",
        network: Callable[..., nn.Module],
        optimizer: Callable[..., torch.optim.Optimizer],
        lr: float = 1e-3,
        gamma: float = 0.99,
        episodes: int = 8,
        epochs: int = 4,
        minibatches: int = 4,
        clip_coef: float = 0.2,
        kl_coef: float = 0.0,
        ent_coef: float = 0.0,
        max_grad_norm: float = 0.5,
        anneal_lr: bool = False,
        orthogonal_init: bool = True,
        init_log_std: float = 0.0,
        seed: int = 0,
    ) -> None:
        check_range("algo.clip_coef", clip_coef, low=0.0)
        check_range("algo.kl_coef", kl_coef, low=0.0, low_inclusive=True)
        super().__init__(
            name=name,
            network=network,
            optimizer=optimizer,
            lr=lr,
            critic=False,
            spec=RolloutSpec(
                mode="episodes",
                episodes=episodes,
                epochs=epochs,
                minibatches=minibatches,
                gamma=gamma,
            ),
            ent_coef=ent_coef,
            max_grad_norm=max_grad_norm,
            anneal_lr=anneal_lr,
            orthogonal_init=orthogonal_init,
            init_log_std=init_log_std,
            seed=seed,
        )
        self.clip_coef = clip_coef
        self.kl_coef = kl_coef

    def build(self, observation_space: Any, action_space: Any) -> None:
        super().build(observation_space, action_space)
        # the previous behaviour policy (the KL reference); part of the checkpoint
        self.ref_policy = (
            copy.deepcopy(self.ac.policy).requires_grad_(False) if self.kl_coef > 0 else None
        )

    def prepare_rollout(self, rollout: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Fold ``-kl_coef * (log pi_k - log pi_{k-1})`` into the rewards, then make the
        current (behaviour) policy the next rollout's reference."""
        rollout = super().prepare_rollout(rollout)
        if self.ref_policy is None:
            return rollout
        obs, actions, valid = rollout["obs"], rollout["action"], rollout["valid"]
        with torch.no_grad():
            ref_log_prob = (
                self.ac.log_prob(
                    obs.flatten(0, 1).to(self.device),
                    actions.flatten(0, 1).to(self.device),
                    policy=self.ref_policy,
                )
                .cpu()
                .view(valid.shape)
            )
            kl = (rollout["log_prob"] - ref_log_prob) * valid
            rollout["reward"] = rollout["reward"] - self.kl_coef * kl
            self.ref_policy.load_state_dict(self.ac.policy.state_dict())
        self.metrics.add("train/kl_to_reference", kl.sum() / valid.sum())
        return rollout

    def finish_rollout(self, rollout: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Advantages: returns-to-go standardized over every step of the global batch."""
        rollout["advantage"] = standardize(rollout["return"], mask=rollout["valid"])
        return rollout

    def update(self, batch: dict[str, Any]) -> None:
        log_prob, entropy, _ = self.ac.evaluate(batch["obs"], batch["action"])
        policy_loss, approx_kl, clip_fraction = ppo_policy_loss(
            log_prob, batch["log_prob"], batch["advantage"], clip=self.clip_coef
        )
        entropy_mean = entropy.mean()
        loss = policy_loss - self.ent_coef * entropy_mean
        self.gradient_step(loss, self._params, max_grad_norm=self.max_grad_norm)
        self.metrics.add("train/loss", loss.detach())
        self.metrics.add("train/policy_loss", policy_loss.detach())
        self.metrics.add("train/entropy", entropy_mean.detach())
        self.metrics.add("train/approx_kl", approx_kl)
        self.metrics.add("train/clip_fraction", clip_fraction)
