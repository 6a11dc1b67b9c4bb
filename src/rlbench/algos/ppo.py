"""PPO with the clipped surrogate (Schulman et al. 2017), the CleanRL way.

Reads top to bottom: the ``RolloutDataModule`` collects ``num_steps`` steps of every env with
the current policy and computes GAE(lambda) advantages (truncated episodes bootstrap from
the value of their final observation); ``finish_rollout`` logs the value function's
explained variance; each ``training_step`` takes one of ``epochs x minibatches`` shuffled
minibatches and makes one Adam step on
``clipped policy loss - ent_coef * entropy + vf_coef * (optionally clipped) value loss``.
Categorical policies for ``Discrete`` actions, diagonal Gaussians with a state-independent
log-std for ``Box`` actions. Options cover CleanRL's ``ppo.py``, ``ppo_atari.py`` (shared
CNN encoder) and ``ppo_continuous_action.py`` (with the env's observation and reward
normalization, ``env.normalize_obs`` / ``env.normalize_reward``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from rlbench.algos.reinforce import PolicyGradientModule, check_range
from rlbench.losses import ppo_policy_loss, ppo_value_loss, standardize
from rlbench.specs import RolloutSpec


class PPO(PolicyGradientModule):
    """Proximal policy optimization.

    Args:
        num_steps: steps per env per rollout.
        epochs, minibatches: passes over each rollout and minibatches per pass.
        gamma, gae_lambda: discount and GAE lambda.
        clip_coef: ratio clip ``epsilon`` (also the value clip with ``clip_value_loss``).
        anneal_clip: anneal ``clip_coef`` linearly to 0 over the run, as ``anneal_lr`` does
            the learning rate (SB3's ``clip_range: lin_<x>``, used by rl-baselines3-zoo).
        clip_value_loss: PPO's clipped value loss.
        normalize_advantages: standardize advantages per minibatch.
        Other arguments: see ``PolicyGradientModule``.
    """

    def __init__(
        self,
        *,
        name: str = "ppo",
        network: Callable[..., nn.Module],
        optimizer: Callable[..., torch.optim.Optimizer],
        lr: float = 2.5e-4,
        gamma: float = 0.99,
        gae_lambda: float = 0.95,
        num_steps: int = 128,
        epochs: int = 4,
        minibatches: int = 4,
        clip_coef: float = 0.2,
        clip_value_loss: bool = True,
        normalize_advantages: bool = True,
        ent_coef: float = 0.01,
        vf_coef: float = 0.5,
        max_grad_norm: float = 0.5,
        anneal_lr: bool = True,
        anneal_clip: bool = False,
        shared_encoder: bool = False,
        orthogonal_init: bool = True,
        init_log_std: float = 0.0,
        seed: int = 0,
    ) -> None:
        check_range("algo.clip_coef", clip_coef, low=0.0)
        check_range("algo.gae_lambda", gae_lambda, low=0.0, high=1.0, low_inclusive=True)
        super().__init__(
            name=name,
            network=network,
            optimizer=optimizer,
            lr=lr,
            critic=True,
            spec=RolloutSpec(
                mode="steps",
                num_steps=num_steps,
                epochs=epochs,
                minibatches=minibatches,
                gamma=gamma,
                gae_lambda=gae_lambda,
            ),
            ent_coef=ent_coef,
            vf_coef=vf_coef,
            max_grad_norm=max_grad_norm,
            anneal_lr=anneal_lr,
            shared_encoder=shared_encoder,
            orthogonal_init=orthogonal_init,
            init_log_std=init_log_std,
            seed=seed,
        )
        self.clip_coef = clip_coef
        self.anneal_clip = anneal_clip
        self.current_clip = clip_coef  # clip_coef x (1 - progress) with anneal_clip
        self.clip_value_loss = clip_value_loss
        self.normalize_advantages = normalize_advantages

    def set_progress(self, progress: float) -> None:
        super().set_progress(progress)
        if self.anneal_clip:
            self.current_clip = self.clip_coef * (1.0 - progress)

    def train_stats(self, *, env_step: int) -> dict[str, float]:
        stats = super().train_stats(env_step=env_step)
        if self.anneal_clip:
            stats["train/clip_coef"] = self.current_clip
        return stats

    def update(self, batch: dict[str, Any]) -> None:
        log_prob, entropy, value = self.ac.evaluate(batch["obs"], batch["action"])
        assert value is not None
        adv = batch["advantage"]
        if self.normalize_advantages:
            adv = standardize(adv)
        policy_loss, approx_kl, clip_fraction = ppo_policy_loss(
            log_prob, batch["log_prob"], adv, clip=self.current_clip
        )
        value_loss = ppo_value_loss(
            value,
            batch["value"],
            batch["return"],
            clip=self.current_clip if self.clip_value_loss else None,
        )
        entropy_mean = entropy.mean()
        loss = policy_loss - self.ent_coef * entropy_mean + self.vf_coef * value_loss
        self.gradient_step(loss, self._params, max_grad_norm=self.max_grad_norm)
        self.metrics.add("train/loss", loss.detach())
        self.metrics.add("train/policy_loss", policy_loss.detach())
        self.metrics.add("train/value_loss", value_loss.detach())
        self.metrics.add("train/entropy", entropy_mean.detach())
        self.metrics.add("train/approx_kl", approx_kl)
        self.metrics.add("train/clip_fraction", clip_fraction)
