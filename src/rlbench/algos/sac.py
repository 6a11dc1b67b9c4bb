"""Soft actor-critic (Haarnoja et al. 2018) with automatic entropy tuning, the CleanRL way.

Reads top to bottom: ``build`` makes a tanh-squashed Gaussian actor, twin Q critics with
Polyak-averaged targets and the log-temperature; ``make_actor`` hands out ``SACActor``s
(sampling in training, ``scale * tanh(mean) + bias`` in evaluation); ``training_step``
turns one replay batch into three losses with three optimizers:

- critics: ``sum_k MSE(Q_k(s, a), r + discount * (min_k Q'_k(s', a') - alpha log pi(a'|s')))``
  with ``a' ~ pi(s')``; ``discount`` is ``gamma**L``, 0 after termination, so truncated
  episodes bootstrap from their final observation;
- actor (every ``policy_frequency`` steps, then ``policy_frequency`` times, CleanRL's
  compensation for the delay): ``mean(alpha log pi(a|s) - min_k Q_k(s, a))``, ``a ~ pi(s)``
  reparameterized, the critics frozen;
- temperature (with each actor update, ``autotune``): ``mean(-alpha (log pi + H_target))``
  with ``H_target = -dim(A)``;

then Polyak-averages the target critics (``tau``) every ``target_update_every`` steps.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from rlbench.algos.base import RLModule, split_clip
from rlbench.errors import ConfigError
from rlbench.losses import polyak_update, sac_critic_target, sac_temperature_loss
from rlbench.networks.continuous import QEnsemble, SquashedGaussianActor
from rlbench.specs import TransitionSpec


class SACActor:
    """Acts through a ``SAC`` module's live policy; stateless but for its RNG.

    Args:
        module: the SAC whose policy it reads.
        rng: the generator of the Gaussian draws, or ``None`` for the deterministic policy.
    """

    def __init__(self, module: SAC, *, rng: np.random.Generator | None) -> None:
        self.module = module
        self.rng = rng
        self.env_step = 0

    def act(self, obs: np.ndarray, *, first: np.ndarray) -> np.ndarray:
        """Actions ``(N, D)`` within the env's bounds for observations ``(N, *obs_shape)``."""
        return self.module.actor.act(obs, self.rng)

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state} if self.rng is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.rng is not None:
            self.rng.bit_generator.state = state["rng"]


class SAC(RLModule):
    """Soft actor-critic for bounded continuous actions.

    Args:
        network: encoder partial ``(in_shape=...) -> nn.Module`` with ``out_features``,
            used for the actor (observations) and each critic (observation ++ action).
        actor_optimizer, critic_optimizer, alpha_optimizer: optimizer partials
            ``(params) -> Optimizer`` with their own ``lr`` (and optional
            ``max_grad_norm``, 0 = no clipping).
        gamma: discount per env step.
        tau: Polyak coefficient of the target critics.
        target_update_every: gradient steps between target updates.
        policy_frequency: the actor (and temperature) learn every this many gradient
            steps, that many times (TD3-style delay with CleanRL's compensation).
        alpha: the fixed temperature (without ``autotune``).
        alpha_init: the temperature ``autotune`` starts from (1, as CleanRL and SB3).
        autotune: learn the temperature towards the entropy ``target_entropy``
            (``None``: ``-dim(A)``).
        log_std_min, log_std_max: bounds of the policy's log standard deviation.
        batch_size, learning_starts, train_every, gradient_steps: replay schedule
            (``gradient_steps / train_every`` gradient steps per env step).
    """

    action_spaces = (gym.spaces.Box,)

    def __init__(
        self,
        *,
        name: str = "sac",
        network: Callable[..., nn.Module],
        actor_optimizer: Callable[..., torch.optim.Optimizer],
        critic_optimizer: Callable[..., torch.optim.Optimizer],
        alpha_optimizer: Callable[..., torch.optim.Optimizer],
        gamma: float = 0.99,
        tau: float = 0.005,
        target_update_every: int = 1,
        policy_frequency: int = 2,
        alpha: float = 0.2,
        alpha_init: float = 1.0,
        autotune: bool = True,
        target_entropy: float | None = None,
        log_std_min: float = -5.0,
        log_std_max: float = 2.0,
        batch_size: int = 256,
        learning_starts: int = 5_000,
        train_every: int = 1,
        gradient_steps: int = 1,
        seed: int = 0,
    ) -> None:
        self.actor_optimizer, self.actor_clip = split_clip(actor_optimizer)
        self.critic_optimizer, self.critic_clip = split_clip(critic_optimizer)
        self.alpha_optimizer, self.alpha_clip = split_clip(alpha_optimizer)
        super().__init__(name=name, seed=seed)
        if policy_frequency < 1 or target_update_every < 1:
            raise ConfigError(
                f"algo.policy_frequency={policy_frequency}, algo.target_update_every="
                f"{target_update_every}: must be >= 1"
            )
        if not log_std_min < log_std_max:
            raise ConfigError(
                f"algo.log_std_min={log_std_min}, algo.log_std_max={log_std_max}: need min < max"
            )
        for key, value in (("alpha", alpha), ("alpha_init", alpha_init)):
            if value <= 0:
                raise ConfigError(f"algo.{key}={value}: must be > 0")
        self.network_factory = network
        self.gamma, self.tau = gamma, tau
        self.target_update_every = target_update_every
        self.policy_frequency = policy_frequency
        self.initial_alpha, self.autotune = (alpha_init if autotune else alpha), autotune
        self.target_entropy_option = target_entropy
        self.log_std_bounds = (log_std_min, log_std_max)
        self._spec = TransitionSpec(
            batch_size=batch_size,
            learning_starts=learning_starts,
            train_every=train_every,
            gradient_steps=gradient_steps,
            gamma=gamma,
        )
        self.updates = 0  # gradient steps taken (keys the policy delay and target updates)

    @property
    def data_spec(self) -> TransitionSpec:
        return self._spec

    def build(self, observation_space: gym.Space[Any], action_space: gym.Space[Any]) -> None:
        assert isinstance(action_space, gym.spaces.Box) and observation_space.shape is not None
        if len(action_space.shape) != 1:
            raise ConfigError(f"algo={self.name} needs a 1-d Box action space, not {action_space}")
        obs_shape = tuple(observation_space.shape)
        dim = int(action_space.shape[0])
        try:
            self.actor = SquashedGaussianActor(
                self.network_factory,
                obs_shape=obs_shape,
                action_space=action_space,
                log_std_min=self.log_std_bounds[0],
                log_std_max=self.log_std_bounds[1],
            )
        except ValueError as e:
            raise ConfigError(f"algo={self.name}: {e}") from None
        self.critic = QEnsemble(self.network_factory, obs_shape=obs_shape, action_dim=dim)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.log_alpha = nn.Parameter(torch.tensor(float(np.log(self.initial_alpha))))
        self.target_entropy = (
            -float(dim) if self.target_entropy_option is None else self.target_entropy_option
        )

    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        self._actor_params: list[torch.Tensor] = list(self.actor.parameters())
        self._critic_params: list[torch.Tensor] = list(self.critic.parameters())
        optimizers = {
            "actor": self.actor_optimizer(self._actor_params),
            "critic": self.critic_optimizer(self._critic_params),
        }
        self._alpha_params: list[torch.Tensor] = [self.log_alpha]
        if self.autotune:
            optimizers["alpha"] = self.alpha_optimizer(self._alpha_params)
        return optimizers

    def on_train_start(self) -> None:
        self.actor.reset_numpy()  # acting functions are rebuilt for the module's device

    # ------------------------------------------------------------------ acting
    def make_actor(
        self, *, num_envs: int, mode: str = "train", deterministic: bool = True, seed: int = 0
    ) -> SACActor:
        """Training samples (RNG from the module's seed); evaluation acts with
        ``scale * tanh(mean) + bias``, or with ``deterministic=False`` samples from a
        generator of ``seed``."""
        self.check_mode(mode)
        if mode == "train":
            return SACActor(self, rng=np.random.default_rng([self.seed, 1]))
        return SACActor(self, rng=None if deterministic else np.random.default_rng([seed, 5]))

    # ------------------------------------------------------------------ learning
    def training_step(self, dataloader_iter: Iterator[Any]) -> None:
        batch, _, _ = next(dataloader_iter)
        batch = self.batch_to_device(batch)
        obs, action = batch["obs"], batch["action"]
        alpha = self.log_alpha.detach().exp()

        with torch.no_grad():
            next_action, next_log_prob = self.actor.sample(batch["next_obs"])
            target = sac_critic_target(
                reward=batch["reward"],
                discount=batch["discount"],
                next_q=self.critic_target(batch["next_obs"], next_action),
                next_log_prob=next_log_prob,
                alpha=alpha,
            )
        q = self.critic(obs, action)  # (2, B)
        critic_loss = (q - target).pow(2).mean(dim=1).sum()  # MSE of each critic, summed
        self.gradient_step(
            critic_loss, self._critic_params, max_grad_norm=self.critic_clip, optimizer="critic"
        )
        self.metrics.add("train/critic_loss", critic_loss.detach())
        self.metrics.add("train/q_mean", q.detach().mean())

        self.updates += 1
        if self.updates % self.policy_frequency == 0:
            for _ in range(self.policy_frequency):
                self._policy_update(obs)
        if self.updates % self.target_update_every == 0:
            polyak_update(self._critic_params, list(self.critic_target.parameters()), tau=self.tau)

    def _policy_update(self, obs: torch.Tensor) -> None:
        """One actor step (critics frozen: no weight gradients computed for them) and, with
        ``autotune``, one temperature step on fresh samples of the updated policy."""
        alpha = self.log_alpha.detach().exp()
        self.critic.requires_grad_(False)
        action, log_prob = self.actor.sample(obs)
        min_q = self.critic(obs, action).amin(dim=0)
        self.critic.requires_grad_(True)
        actor_loss = (alpha * log_prob - min_q).mean()
        self.gradient_step(
            actor_loss, self._actor_params, max_grad_norm=self.actor_clip, optimizer="actor"
        )
        self.metrics.add("train/actor_loss", actor_loss.detach())
        self.metrics.add("train/entropy", -log_prob.detach().mean())
        if self.autotune:
            with torch.no_grad():
                _, log_prob = self.actor.sample(obs)
            alpha_loss = sac_temperature_loss(
                self.log_alpha, log_prob, target_entropy=self.target_entropy
            )
            self.gradient_step(
                alpha_loss, self._alpha_params, max_grad_norm=self.alpha_clip, optimizer="alpha"
            )
            self.metrics.add("train/alpha_loss", alpha_loss.detach())

    def train_stats(self, *, env_step: int) -> dict[str, float]:
        return {"train/alpha": float(self.log_alpha.detach().exp())}

    # ------------------------------------------------------------------ state
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["rlbench_module"]["updates"] = self.updates

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        self.updates = checkpoint["rlbench_module"]["updates"]
