"""TD-MPC (Hansen, Wang and Su, ICML 2022): model-predictive control in the latent space of
a task-oriented latent dynamics model (TOLD), learnt by temporal differences.

What TD-MPC shares with TD-MPC2 is in ``algos/planning.py``: the MPPI planner
(``plan_mppi``, with ``momentum``), the planner's warm start, the actor
(``PlanningActor``) and the base class (``PlanningModule``: the checks of the spaces, the
action scaling, the sequence data spec of windows of ``H`` steps inside one episode); the
rho-weighted horizon losses are in ``losses.py``. What differs is here, following the
authors' code
(nicklashansen/tdmpc: ``src/algorithm/tdmpc.py``, ``src/algorithm/helper.py``,
``cfgs/default.yaml``):

- the model is ``networks.world_model.TOLD``: ELU MLPs, latent 50, no SimNorm, scalar
  reward and two scalar Q heads (``Linear -> LayerNorm -> Tanh`` first layer), a
  deterministic tanh policy explored with clipped Gaussian noise of ``min_std``
  (``truncated_normal_action``); the target model (encoder and Q heads) is
  Polyak-averaged every ``target_update_every`` updates;
- MSE losses instead of discrete regression. Over a latent rollout ``z_0 = enc(o_0)``,
  ``z_{t+1} = d(z_t, a_t)``, per sample ``b`` and with ``sum_t rho^t``
  (``losses.rho_weighted_sum``): consistency ``mean_Z (z_{t+1} - enc'(o_{t+1}))^2`` (the
  target encoder), reward ``(R(z_t, a_t) - r_t)^2``, value ``sum_k (Q_k(z_t, a_t) -
  y_t)^2`` with ``y_t = r_t + gamma (1 - terminated_t) min_k Q'_k(enc(o_{t+1}),
  pi(enc(o_{t+1})))``; each sum is clamped at ``loss_clamp``, weighted by
  ``consistency_coef``, ``reward_coef``, ``value_coef``, multiplied by the sample's
  prioritized-replay importance weight, averaged over the batch and divided by ``H``
  (the authors' gradient hook); the new priority of a window is ``sum_t rho^t sum_k |Q_k
  - y_t|``;
- the policy loss is ``-sum_t rho^t mean_b min_k Q_k(z_t, pi(z_t))`` on the detached
  latents (no entropy, no Q scale);
- planning: ``num_samples`` Gaussian sequences plus ``mixture_coef x num_samples``
  policy ones, the mean refit with ``momentum``, the std's lower bound scheduled linearly
  from ``std_start`` to ``min_std`` over ``std_schedule_steps`` env steps, the horizon from
  1 to ``horizon`` over ``horizon_schedule_steps`` (``int(min(H, linear(...)))``), the
  terminal value the min of the two Q heads;
- prioritized replay over sequences (``buffer.sequence_length = H``, alpha 0.6, beta 0.4
  fixed: the yaml sets ``buffer=prioritized``); with a uniform buffer the weights are 1;
- ``learning_starts`` random env steps, a burst of ``initial_updates`` updates, then
  ``gradient_steps / train_every`` per env step; a fixed discount.

Schedules read env steps (simulator steps: with an action repeat ``k`` the authors' step
counts are ``k`` times smaller). The training actor schedules by its env step, other
actors by the env step of the latest batch learnt from (``clock``). Evaluation plans with
the best elite (the authors draw it by score there too) and no noise.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import gymnasium as gym
import torch

from rlbench.algos.planning import Fn, Latent, MPPIConfig, PlanningModule
from rlbench.errors import ConfigError
from rlbench.losses import polyak_update, rho_weighted_sum
from rlbench.networks.world_model import TOLD


def linear_schedule(start: float, end: float, duration: int, step: int) -> float:
    """``start`` moving linearly to ``end`` over ``duration`` steps, then ``end`` (the
    authors' ``linear(start, end, duration)``)."""
    mix = min(max(step / duration, 0.0), 1.0)
    return (1.0 - mix) * start + mix * end


def planning_horizon(step: int, *, horizon: int, duration: int) -> int:
    """TD-MPC's scheduled planning horizon: ``int(min(horizon, linear(1, horizon,
    duration)))``, 1 at step 0 and ``horizon`` from ``duration`` on."""
    return int(min(horizon, linear_schedule(1.0, horizon, duration, step)))


class TDMPC(PlanningModule):
    """TD-MPC for flat observations and bounded continuous actions.

    Args:
        optimizer: partial ``(params) -> Optimizer`` of the model (encoder, dynamics,
            reward, Q heads) with optional ``max_grad_norm``.
        pi_optimizer: the same for the policy.
        enc_dim, mlp_dim, latent_dim: TOLD's widths.
        horizon: H, steps of the latent rollouts learnt from, and the planning horizon
            reached by the schedule.
        rho: weight decay over the horizon.
        consistency_coef, reward_coef, value_coef: weights of the model losses.
        loss_clamp: each per-sample loss (and priority) is clamped at this value.
        tau: Polyak coefficient of the target encoder and Q heads...
        target_update_every: ...updated every this many gradient steps.
        discount: per-step discount.
        iterations, num_samples, num_elites, temperature, momentum, max_std: MPPI
            (``num_samples`` Gaussian sequences); as in TD-MPC2, 2 more iterations for 20+
            action dims.
        mixture_coef: policy sequences as a share of ``num_samples`` (rounded down).
        min_std: the std the planner's schedule ends at, and the policy's noise std.
        std_start, std_schedule_steps: the planner's std floor moves linearly from
            ``std_start`` to ``min_std`` over this many env steps.
        horizon_schedule_steps: the planning horizon grows from 1 to ``horizon`` over this
            many env steps.
        policy_noise_clip: the policy's noise is clipped to +-this.
        batch_size, learning_starts, initial_updates, train_every, gradient_steps: the
            schedule; ``initial_updates=None`` is as many as ``learning_starts``.
    """

    model: TOLD

    def __init__(
        self,
        *,
        name: str = "tdmpc",
        optimizer: Callable[..., torch.optim.Optimizer],
        pi_optimizer: Callable[..., torch.optim.Optimizer],
        enc_dim: int = 256,
        mlp_dim: int = 512,
        latent_dim: int = 50,
        horizon: int = 5,
        rho: float = 0.5,
        consistency_coef: float = 2.0,
        reward_coef: float = 0.5,
        value_coef: float = 0.1,
        loss_clamp: float = 1e4,
        tau: float = 0.01,
        target_update_every: int = 2,
        discount: float = 0.99,
        iterations: int = 6,
        num_samples: int = 512,
        num_elites: int = 64,
        mixture_coef: float = 0.05,
        temperature: float = 0.5,
        momentum: float = 0.1,
        min_std: float = 0.05,
        max_std: float = 2.0,
        std_start: float = 0.5,
        std_schedule_steps: int = 25_000,
        horizon_schedule_steps: int = 25_000,
        policy_noise_clip: float = 0.3,
        batch_size: int = 512,
        learning_starts: int = 5000,
        initial_updates: int | None = None,
        train_every: int = 1,
        gradient_steps: int = 1,
        seed: int = 0,
    ) -> None:
        if min(enc_dim, mlp_dim, latent_dim) < 1:
            raise ConfigError(
                f"algo.enc_dim={enc_dim}, algo.mlp_dim={mlp_dim}, algo.latent_dim={latent_dim}: "
                "every width must be >= 1"
            )
        if horizon < 1:
            raise ConfigError(f"algo.horizon={horizon}: must be >= 1")
        if not 0.0 <= mixture_coef < 1.0:
            raise ConfigError(f"algo.mixture_coef={mixture_coef}: must be in [0, 1)")
        if num_samples < 1 or not 1 <= num_elites <= num_samples:
            raise ConfigError(
                f"algo.num_samples={num_samples}, algo.num_elites={num_elites}: need "
                "1 <= num_elites <= num_samples"
            )
        if iterations < 1 or not 0 < min_std <= max_std or not 0 < std_start <= max_std:
            raise ConfigError(
                f"algo.iterations={iterations}, algo.min_std={min_std}, algo.std_start="
                f"{std_start}, algo.max_std={max_std}: need iterations >= 1 and "
                "0 < min_std, std_start <= max_std"
            )
        if not 0.0 <= momentum < 1.0:
            raise ConfigError(f"algo.momentum={momentum}: must be in [0, 1)")
        if not 0.0 <= discount <= 1.0:
            raise ConfigError(f"algo.discount={discount}: must be in [0, 1]")
        if min(std_schedule_steps, horizon_schedule_steps, target_update_every) < 1:
            raise ConfigError(
                f"algo.std_schedule_steps={std_schedule_steps}, algo.horizon_schedule_steps="
                f"{horizon_schedule_steps}, algo.target_update_every={target_update_every}: "
                "must be >= 1"
            )
        num_pi = int(mixture_coef * num_samples)
        super().__init__(
            name=name,
            seed=seed,
            optimizer=optimizer,
            pi_optimizer=pi_optimizer,
            # plan_mppi draws its policy sequences out of num_samples: the authors add them
            mppi=MPPIConfig(
                horizon=horizon,
                iterations=iterations,
                num_samples=num_samples + num_pi,
                num_elites=num_elites,
                num_pi_trajs=num_pi,
                temperature=temperature,
                min_std=min_std,
                max_std=max_std,
                momentum=momentum,
            ),
            horizon=horizon,
            batch_size=batch_size,
            learning_starts=learning_starts,
            initial_updates=initial_updates,
            train_every=train_every,
            gradient_steps=gradient_steps,
        )
        self.widths = (enc_dim, mlp_dim, latent_dim)
        self.horizon, self.rho, self.tau, self.discount = horizon, rho, tau, discount
        self.coefs = (consistency_coef, reward_coef, value_coef)
        self.loss_clamp, self.target_update_every = loss_clamp, target_update_every
        self.min_std, self.std_start, self.policy_noise_clip = min_std, std_start, policy_noise_clip
        self.std_schedule_steps, self.horizon_schedule_steps = (
            std_schedule_steps,
            horizon_schedule_steps,
        )
        self.clock: torch.Tensor  # env step of the latest batch learnt from
        self.updates: torch.Tensor  # gradient steps of the model taken
        self.register_buffer("clock", torch.zeros((), dtype=torch.int64))
        self.register_buffer("updates", torch.zeros((), dtype=torch.int64))

    def build(self, observation_space: gym.Space[Any], action_space: gym.Space[Any]) -> None:
        obs_dim = self.build_spaces(observation_space, action_space)
        enc_dim, mlp_dim, latent_dim = self.widths
        self.model = TOLD(
            obs_dim=obs_dim,
            action_dim=self.action_dim,
            enc_dim=enc_dim,
            mlp_dim=mlp_dim,
            latent_dim=latent_dim,
        )

    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        model = self.model
        self._main_params: list[torch.Tensor] = [
            *model.encoder.parameters(),
            *model.dynamics.parameters(),
            *model.reward.parameters(),
            *model.qs.parameters(),
        ]
        self._pi_params: list[torch.Tensor] = list(model.pi_net.parameters())
        return {
            "main": self.optimizer_factory(self._main_params),
            "pi": self.pi_optimizer_factory(self._pi_params),
        }

    # ------------------------------------------------------------------ acting
    def planning_std(self, env_step: int) -> float:
        """The planner's std floor at ``env_step`` (``std_start`` -> ``min_std``)."""
        return linear_schedule(self.std_start, self.min_std, self.std_schedule_steps, env_step)

    def planner(self, env_step: int | None) -> MPPIConfig:
        """MPPI's settings at ``env_step`` (``None``: at ``clock``): the scheduled horizon
        and std floor."""
        step = int(self.clock) if env_step is None else env_step
        return dataclasses.replace(
            self.mppi,
            horizon=planning_horizon(
                step, horizon=self.horizon, duration=self.horizon_schedule_steps
            ),
            min_std=self.planning_std(step),
        )

    def planning_functions(self, generator: torch.Generator) -> dict[str, Fn]:
        """TOLD as ``plan_mppi`` takes it: the policy explores with ``min_std`` noise, the
        terminal value is the min of the Q heads; random draws from ``generator``."""
        model = self.model

        def policy(z: Latent) -> torch.Tensor:
            return model.pi(z, std=self.min_std, clip=self.policy_noise_clip, generator=generator)

        def value(z: Latent) -> torch.Tensor:
            return model.q(z, policy(z)).amin(0)

        return {
            "dynamics": model.next,
            "reward": model.reward_value,
            "value": value,
            "policy": policy,
        }

    # ------------------------------------------------------------------ learning
    def training_step(self, dataloader_iter: Iterator[Any]) -> None:
        batch, _, _ = next(dataloader_iter)
        self.clock.fill_(int(batch["env_step"]))
        batch = self.batch_to_device(batch)
        model, rho, horizon = self.model, self.rho, self.horizon
        obs, action, reward, terminated = self.time_major(batch)
        weights = batch.get("weights")  # (B,) importance weights: prioritized replay only

        with torch.no_grad():
            next_target_z = model.encode(obs[1:], target=True)  # (H, B, Z)
            next_z = model.encode(obs[1:])
            next_a = model.pi(next_z, std=self.min_std, clip=self.policy_noise_clip)
            next_q = model.q(next_z, next_a, target=True).amin(0)
            td_target = reward + self.discount * (1.0 - terminated) * next_q  # (H, B)

        z = model.encode(obs[0])
        zs, qs, rewards = [z], [], []
        for t in range(horizon):
            qs.append(model.q(z, action[t]))  # (K, B)
            rewards.append(model.reward_value(z, action[t]))
            z = model.next(z, action[t])
            zs.append(z)
        latents = torch.stack(zs)  # (H+1, B, Z)
        q = torch.stack(qs)  # (H, K, B)
        q_error = q - td_target.unsqueeze(1)
        clamp = self.loss_clamp
        consistency = rho_weighted_sum((latents[1:] - next_target_z).pow(2).mean(-1), rho=rho)
        reward_loss = rho_weighted_sum((torch.stack(rewards) - reward).pow(2), rho=rho)
        value_loss = rho_weighted_sum(q_error.pow(2).sum(1), rho=rho)  # (B,)
        priority = rho_weighted_sum(q_error.detach().abs().sum(1), rho=rho).clamp(max=clamp)
        c_coef, r_coef, v_coef = self.coefs
        per_sample = (
            c_coef * consistency.clamp(max=clamp)
            + r_coef * reward_loss.clamp(max=clamp)
            + v_coef * value_loss.clamp(max=clamp)
        )  # (B,)
        weighted = per_sample if weights is None else per_sample * weights.float()
        model_loss = weighted.mean() / horizon  # the authors scale the gradient by 1/H
        self.gradient_step(model_loss, self._main_params, max_grad_norm=self.main_clip)
        if "priorities" in batch:
            batch["priorities"].update(priority)
        metrics = self.metrics
        metrics.add("train/consistency_loss", consistency.detach().mean())
        metrics.add("train/reward_loss", reward_loss.detach().mean())
        metrics.add("train/value_loss", value_loss.detach().mean())
        metrics.add("train/model_loss", model_loss.detach())

        self._policy_update(latents.detach())
        self.updates += 1
        if int(self.updates) % self.target_update_every == 0:
            polyak_update(
                [*model.encoder.parameters(), *model.qs.parameters()],
                [*model.target_encoder.parameters(), *model.target_qs.parameters()],
                tau=self.tau,
            )

    def _policy_update(self, latents: torch.Tensor) -> None:
        """One step of the policy on ``latents (H+1, B, Z)``, the Q heads frozen."""
        model = self.model
        action = model.pi(latents, std=self.min_std, clip=self.policy_noise_clip)
        model.qs.requires_grad_(False)
        q = model.q(latents, action).amin(0)  # (H+1, B)
        model.qs.requires_grad_(True)
        pi_loss = -rho_weighted_sum(q, rho=self.rho).mean()
        self.gradient_step(pi_loss, self._pi_params, max_grad_norm=self.pi_clip, optimizer="pi")
        self.metrics.add("train/pi_loss", pi_loss.detach())
        self.metrics.add("train/q_mean", q.detach()[0].mean())

    def train_stats(self, *, env_step: int) -> dict[str, float]:
        cfg = self.planner(env_step)
        return {"train/plan_std": cfg.min_std, "train/plan_horizon": float(cfg.horizon)}
