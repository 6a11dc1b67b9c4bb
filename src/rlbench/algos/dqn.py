"""DQN (Mnih et al. 2015) with a double-Q toggle (van Hasselt et al. 2016).

Reads top to bottom: ``build`` makes the online and target Q networks, ``act`` picks
actions through the configured sampler, ``training_step`` turns one replay batch of n-step
transitions into a Huber (or MSE) TD loss and one Adam step. Target sync (hard copy or
Polyak averaging) is keyed on env steps like CleanRL and Stable-Baselines3.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from rlbench.algos.base import ReplaySpec, RLModule, clip_grad_norm_
from rlbench.data.protocol import datamodule_of
from rlbench.errors import ConfigError
from rlbench.losses import polyak_update, q_target, td_loss
from rlbench.networks import feature_dim, numpy_forward
from rlbench.samplers import ActionSampler, LazyScores


class DQN(RLModule):
    """Deep Q-learning over n-step replay batches.

    Args:
        network: encoder partial ``(in_shape=obs_shape) -> nn.Module`` with ``out_features``;
            a linear Q head ``(B, out_features) -> (B, num_actions)`` goes on top.
        optimizer: partial ``(params, lr) -> Optimizer``.
        sampler: exploration policy over Q-values.
        gamma: discount per env step.
        double: choose the bootstrap action with the online net (double DQN).
        target_update_every: env steps between target updates.
        tau: Polyak coefficient; 1.0 is a hard copy.
        batch_size, learning_starts, train_every, gradient_steps: replay schedule.
        max_grad_norm: gradient clipping by global norm (``<= 0`` disables).
        loss: ``huber`` or ``mse``.
    """

    def __init__(
        self,
        *,
        name: str = "dqn",
        network: Callable[..., nn.Module],
        optimizer: Callable[..., torch.optim.Optimizer],
        sampler: ActionSampler,
        lr: float = 2.5e-4,
        gamma: float = 0.99,
        double: bool = False,
        target_update_every: int = 500,
        tau: float = 1.0,
        batch_size: int = 128,
        learning_starts: int = 10_000,
        train_every: int = 10,
        gradient_steps: int = 1,
        max_grad_norm: float = 10.0,
        loss: str = "huber",
        seed: int = 0,
    ) -> None:
        super().__init__(name=name, lr=lr, seed=seed)
        self.automatic_optimization = False
        self.network_factory = network
        self.optimizer_factory = optimizer
        self.sampler = sampler
        self.gamma = gamma
        self.double_q = double
        self.target_update_every = target_update_every
        self.tau = tau
        self.max_grad_norm = max_grad_norm
        self.loss_kind = loss
        self.replay_spec: ReplaySpec = ReplaySpec(
            batch_size=batch_size,
            learning_starts=learning_starts,
            train_every=train_every,
            gradient_steps=gradient_steps,
            gamma=gamma,
        )
        self.last_target_update = 0  # env step of the last target update
        self._numpy_q: Callable[[np.ndarray], np.ndarray] | None = None

    def build(self, observation_space: gym.Space[Any], action_space: gym.Space[Any]) -> None:
        if not isinstance(action_space, gym.spaces.Discrete):
            raise ConfigError(
                f"algo={self.name} needs a discrete action space; this env has {action_space} "
                "(use a continuous-control algorithm such as SAC or PPO)"
            )
        assert observation_space.shape is not None
        self.num_actions = int(action_space.n)
        encoder = self.network_factory(in_shape=tuple(observation_space.shape))
        self.q_net = nn.Sequential(encoder, nn.Linear(feature_dim(encoder), self.num_actions))
        self.target_net = copy.deepcopy(self.q_net).requires_grad_(False)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer_factory(self.q_net.parameters(), lr=self.lr)

    # ------------------------------------------------------------------ acting
    def _q_values(self, obs: np.ndarray) -> np.ndarray:
        """Q-values ``(B, A)``: numpy views of the live weights when the net allows it."""
        if self._numpy_q is None and self.device.type == "cpu":
            self._numpy_q = numpy_forward(self.q_net) or self._torch_q
        fn = self._numpy_q or self._torch_q
        return fn(obs)

    def _torch_q(self, obs: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            q = self.q_net(torch.as_tensor(obs, device=self.device))
        return q.cpu().numpy()

    def act(self, obs: np.ndarray, *, explore: bool, env_step: int) -> np.ndarray:
        scores = LazyScores(lambda: self._q_values(obs), len(obs), self.num_actions)
        return self.sampler(scores, step=env_step, rng=self.act_rng, explore=explore)

    # ------------------------------------------------------------------ learning
    def training_step(self, dataloader_iter: Iterator[Any]) -> None:
        batch, _, _ = next(dataloader_iter)
        env_step = int(batch["env_step"])
        if (
            env_step // self.target_update_every
            > self.last_target_update // self.target_update_every
        ):
            polyak_update(
                list(self.q_net.parameters()), list(self.target_net.parameters()), tau=self.tau
            )
            self.last_target_update = env_step

        obs, next_obs = batch["obs"], batch["next_obs"]
        q = self.q_net(obs)
        q_taken = q.gather(1, batch["action"].long().unsqueeze(1)).squeeze(1)
        with torch.no_grad():
            target = q_target(
                reward=batch["reward"],
                discount=batch["discount"],
                next_q_target=self.target_net(next_obs),
                next_q_online=self.q_net(next_obs) if self.double_q else None,
            )
        weights = batch.get("weights")  # importance weights: prioritized replay only
        loss, per_sample = td_loss(q_taken, target, kind=self.loss_kind, weights=weights)

        opt = self.optimizers()
        assert not isinstance(opt, list)
        opt.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        if self.max_grad_norm > 0:
            clip_grad_norm_(list(self.q_net.parameters()), self.max_grad_norm)
        opt.step()

        datamodule_of(self.trainer).update_priorities(batch["indices"], per_sample.detach())
        self.metrics.add("train/loss", loss.detach())
        self.metrics.add("train/q_mean", q_taken.detach().mean())

    def train_stats(self, *, env_step: int) -> dict[str, float]:
        """Schedule values logged with each flush (``train/epsilon``, ...)."""
        return {f"train/{k}": v for k, v in self.sampler.stats(env_step).items()}

    # ------------------------------------------------------------------ state
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["rlbench_module"]["last_target_update"] = self.last_target_update

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        self.last_target_update = checkpoint["rlbench_module"]["last_target_update"]
