"""TD-MPC2 (Hansen, Su and Wang, ICLR 2024): model-predictive control in the latent space
of an implicit world model, learnt by temporal differences.

The MPPI planner (``plan_mppi``), the actor that plans with the world model and the base
class shared with TD-MPC (``PlanningModule``: spaces, action scaling, data spec, actors)
are in ``algos/planning.py``. ``TDMPC2`` builds the world model
(``networks/world_model.py``) and learns from sequences of ``H + 1`` observations
(``SequenceSpec(length=H)``, inside one episode) with two optimizers:

- ``main`` (encoder at ``enc_lr_scale`` x the learning rate, dynamics, reward, Q heads):
  ``consistency_coef * C + reward_coef * R + value_coef * V`` where, over a latent rollout
  ``z_0 = enc(o_0)``, ``z_{t+1} = d(z_t, a_t)`` and with ``rho^t``-weighted means over the
  horizon (``losses.rho_weighted_mean``), ``C`` is the squared error of ``z_{t+1}`` to
  ``enc(o_{t+1})`` (no gradient into the target), ``R`` the soft cross-entropy of the
  reward head to ``r_t`` and ``V`` that of every Q head to
  ``r_t + gamma (1 - terminated_t) min(Q'_i, Q'_j)(enc(o_{t+1}), pi(enc(o_{t+1})))`` over
  two target heads drawn at random;
- ``pi`` (the policy prior), on the detached latents ``z_0..z_H``:
  ``-rho_weighted_mean(entropy_coef * H_pi + Q(z, pi(z)) / S)`` with ``Q`` the mean of two
  online heads drawn at random (their weights frozen), ``S`` a running (Polyak ``tau``)
  estimate of the 5th-95th percentile range of ``Q`` (at least 1), and ``H_pi = -dim(A) x``
  the log-density of the pre-tanh Gaussian sample, which is what the authors' "scaled
  entropy" reduces to;

then Polyak-averages the target Q heads (``tau``). With ``episodic`` (the authors' episodic
mode, for envs that terminate: Hopper, Walker2d, Ant, Humanoid) the model also has a
termination head ``z_{t+1} -> logit``, learnt in ``main`` by ``termination_coef`` x the
binary cross-entropy to ``terminated_t`` (mean over the horizon and batch, unweighted, as
the authors), and the planner counts an imagined sequence's rewards and terminal value only
until the head first predicts a termination (probability above 0.5).

Rewards and values are regressed as two-hot distributions over ``num_bins`` bins in
symlog space (``losses.two_hot``). The discount is ``(L/5 - 1) / (L/5)`` clipped to
``[discount_min, discount_max]`` (the authors: [0.95, 0.995]) for episodes of ``L =
episode_length`` steps unless ``discount`` is given. ``learning_starts`` (null:
``max(1000, 5 L)``) random steps are followed by a burst of ``initial_updates`` (null: as
many) updates, then ``gradient_steps / train_every`` per env step. Actions are planned in
``[-1, 1]^A`` and mapped onto the env's bounds.

Without ``episodic``, terminations only stop the TD bootstrap (the authors' default, which
their published DMC curves use). Not here (yet): multi-task embeddings, pixel observations.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import gymnasium as gym
import torch
from torch.nn.functional import binary_cross_entropy_with_logits

from rlbench.algos.planning import (
    Fn,
    Latent,
    MPPIConfig,
    Plan,
    PlanningModule,
    fit_horizon,
    plan_mppi,
    warm_start,
)
from rlbench.algos.planning import PlanningActor as TDMPC2Actor
from rlbench.errors import ConfigError
from rlbench.losses import (
    episode_discount,
    percentile_range,
    polyak_update,
    rho_weighted_mean,
    soft_cross_entropy,
    two_hot_inv,
)
from rlbench.networks.world_model import MODEL_SIZES, WorldModel, size_of

# the planner's names, importable from here as before they moved to algos/planning.py
__all__ = [
    "TDMPC2",
    "Fn",
    "Latent",
    "MPPIConfig",
    "Plan",
    "PlanningModule",
    "TDMPC2Actor",
    "fit_horizon",
    "plan_mppi",
    "warm_start",
]


# ---------------------------------------------------------------------- the module
class TDMPC2(PlanningModule):
    """TD-MPC2 for flat observations and bounded continuous actions.

    Args:
        optimizer: partial ``(params) -> Optimizer`` of the world model (``lr``, optional
            ``max_grad_norm``); the encoder's group runs at ``enc_lr_scale`` x its lr.
        pi_optimizer: the same for the policy prior.
        size: a preset of the authors' (``1M``, ``5M``, ``19M``, ``48M``, ``317M``);
            ``enc_dim``, ``mlp_dim``, ``latent_dim``, ``num_enc_layers``, ``num_q`` override
            its widths when not ``None``.
        simnorm_dim: SimNorm group size.
        dropout: dropout after the first layer of each Q head.
        num_bins, vmin, vmax: discrete regression of rewards and values (symlog space).
        log_std_min, log_std_max: the policy prior's log-std bounds.
        entropy_coef: weight of the policy prior's entropy.
        horizon: H, steps of the latent rollouts (learning and planning).
        rho: weight decay over the horizon.
        consistency_coef, reward_coef, value_coef: weights of the world-model losses.
        episodic: a termination head, learnt and planned with (see above).
        termination_coef: weight of its loss.
        tau: Polyak coefficient of the target Q heads (and of the Q scale).
        discount: per-step discount, or ``None`` to derive it from ``episode_length``
            (``losses.episode_discount`` with ``discount_denom``, ``discount_min``,
            ``discount_max``).
        iterations, num_samples, num_elites, num_pi_trajs, temperature, min_std, max_std:
            MPPI (``MPPIConfig``); as the authors, 2 more iterations for 20+ action dims.
        batch_size, learning_starts, initial_updates, train_every, gradient_steps: the
            schedule; ``learning_starts=None`` is ``max(1000, 5 * episode_length)``,
            ``initial_updates=None`` as many as ``learning_starts``.
    """

    model: WorldModel

    def __init__(
        self,
        *,
        name: str = "tdmpc2",
        optimizer: Callable[..., torch.optim.Optimizer],
        pi_optimizer: Callable[..., torch.optim.Optimizer],
        enc_lr_scale: float = 0.3,
        size: str = "1M",
        enc_dim: int | None = None,
        mlp_dim: int | None = None,
        latent_dim: int | None = None,
        num_enc_layers: int | None = None,
        num_q: int | None = None,
        simnorm_dim: int = 8,
        dropout: float = 0.01,
        num_bins: int = 101,
        vmin: float = -10.0,
        vmax: float = 10.0,
        log_std_min: float = -10.0,
        log_std_max: float = 2.0,
        entropy_coef: float = 1e-4,
        horizon: int = 3,
        rho: float = 0.5,
        consistency_coef: float = 20.0,
        reward_coef: float = 0.1,
        value_coef: float = 0.1,
        episodic: bool = False,
        termination_coef: float = 1.0,
        tau: float = 0.01,
        discount: float | None = None,
        episode_length: int = 1000,
        discount_denom: float = 5.0,
        discount_min: float = 0.95,
        discount_max: float = 0.995,
        iterations: int = 6,
        num_samples: int = 512,
        num_elites: int = 64,
        num_pi_trajs: int = 24,
        temperature: float = 0.5,
        min_std: float = 0.05,
        max_std: float = 2.0,
        batch_size: int = 256,
        learning_starts: int | None = None,
        initial_updates: int | None = None,
        train_every: int = 1,
        gradient_steps: int = 1,
        seed: int = 0,
    ) -> None:
        if size not in MODEL_SIZES:
            raise ConfigError(f"algo.size={size}: allowed {', '.join(MODEL_SIZES)}")
        sizes = size_of(
            size,
            enc_dim=enc_dim,
            mlp_dim=mlp_dim,
            latent_dim=latent_dim,
            num_enc_layers=num_enc_layers,
            num_q=num_q,
            simnorm_dim=simnorm_dim,
        )
        if sizes.latent_dim % simnorm_dim:
            raise ConfigError(
                f"algo.latent_dim={sizes.latent_dim}: must be a multiple of "
                f"algo.simnorm_dim={simnorm_dim}"
            )
        if min(sizes.enc_dim, sizes.mlp_dim, sizes.num_enc_layers, sizes.num_q) < 1:
            raise ConfigError(f"algo.size={size}: every width must be >= 1, got {sizes}")
        if horizon < 1 or num_bins < 2 or not vmin < vmax:
            raise ConfigError(
                f"algo.horizon={horizon}, algo.num_bins={num_bins}, algo.vmin={vmin}, "
                f"algo.vmax={vmax}: need horizon >= 1, num_bins >= 2, vmin < vmax"
            )
        if not 0 <= num_pi_trajs < num_samples or not 1 <= num_elites <= num_samples:
            raise ConfigError(
                f"algo.num_samples={num_samples}, algo.num_elites={num_elites}, "
                f"algo.num_pi_trajs={num_pi_trajs}: need 0 <= num_pi_trajs < num_samples "
                "and 1 <= num_elites <= num_samples"
            )
        if iterations < 1 or not 0 < min_std <= max_std:
            raise ConfigError(
                f"algo.iterations={iterations}, algo.min_std={min_std}, algo.max_std={max_std}: "
                "need iterations >= 1 and 0 < min_std <= max_std"
            )
        if discount is not None and not 0.0 <= discount <= 1.0:
            raise ConfigError(f"algo.discount={discount}: must be in [0, 1] or null")
        if episode_length < 1:
            raise ConfigError(f"algo.episode_length={episode_length}: must be >= 1")
        seed_steps = max(1000, 5 * episode_length) if learning_starts is None else learning_starts
        super().__init__(
            name=name,
            seed=seed,
            optimizer=optimizer,
            pi_optimizer=pi_optimizer,
            mppi=MPPIConfig(
                horizon=horizon,
                iterations=iterations,
                num_samples=num_samples,
                num_elites=num_elites,
                num_pi_trajs=num_pi_trajs,
                temperature=temperature,
                min_std=min_std,
                max_std=max_std,
            ),
            horizon=horizon,
            batch_size=batch_size,
            learning_starts=seed_steps,
            initial_updates=initial_updates,
            train_every=train_every,
            gradient_steps=gradient_steps,
        )
        self.size = sizes
        self.discount = (
            discount
            if discount is not None
            else episode_discount(
                episode_length, denom=discount_denom, low=discount_min, high=discount_max
            )
        )
        self.enc_lr_scale = enc_lr_scale
        self.dropout, self.num_bins, self.vmin, self.vmax = dropout, num_bins, vmin, vmax
        self.log_std_bounds = (log_std_min, log_std_max)
        self.entropy_coef, self.rho, self.tau = entropy_coef, rho, tau
        self.coefs = (consistency_coef, reward_coef, value_coef)
        self.episodic, self.termination_coef = episodic, termination_coef
        self.q_scale: torch.Tensor
        self.register_buffer("q_scale", torch.ones(()))  # running 5-95% range of Q

    def build(self, observation_space: gym.Space[Any], action_space: gym.Space[Any]) -> None:
        obs_dim = self.build_spaces(observation_space, action_space)
        self.model = WorldModel(
            obs_dim=obs_dim,
            action_dim=self.action_dim,
            size=self.size,
            num_bins=self.num_bins,
            dropout=self.dropout,
            log_std_min=self.log_std_bounds[0],
            log_std_max=self.log_std_bounds[1],
            episodic=self.episodic,
        )

    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        model = self.model
        encoder: list[torch.Tensor] = list(model.encoder.parameters())
        rest: list[torch.Tensor] = [
            *model.dynamics.parameters(),
            *model.reward.parameters(),
            *(model.termination.parameters() if model.termination is not None else ()),
            *model.qs.parameters(),
        ]
        self._main_params: list[torch.Tensor] = encoder + rest
        self._pi_params: list[torch.Tensor] = list(model.pi.parameters())
        main = self.optimizer_factory([{"params": encoder}, {"params": rest}])
        main.param_groups[0]["lr"] *= self.enc_lr_scale
        return {"main": main, "pi": self.pi_optimizer_factory(self._pi_params)}

    # ------------------------------------------------------------------ acting
    def decode(self, logits: torch.Tensor) -> torch.Tensor:
        """Scalars from reward or Q logits (``losses.two_hot_inv``)."""
        return two_hot_inv(logits, num_bins=self.num_bins, vmin=self.vmin, vmax=self.vmax)

    def two_heads(self, generator: torch.Generator | None = None) -> torch.Tensor | None:
        """Two distinct Q heads drawn at random; ``None`` (all of them, no draw) when there
        are at most two: their min and mean do not depend on the order."""
        if self.size.num_q <= 2:
            return None
        return torch.randperm(self.size.num_q, generator=generator, device=self.device)[:2]

    def planning_functions(self, generator: torch.Generator) -> dict[str, Fn]:
        """The world model as ``plan_mppi`` takes it; random draws from ``generator``."""
        model = self.model

        def policy(z: Latent) -> torch.Tensor:
            return model.pi(z, generator=generator)[0]

        def reward(z: Latent, a: torch.Tensor) -> torch.Tensor:
            return self.decode(model.reward_logits(z, a))

        def value(z: Latent) -> torch.Tensor:
            q = model.q_logits(z, policy(z), heads=self.two_heads(generator))
            return self.decode(q).mean(0)

        def termination(z: Latent) -> torch.Tensor:
            return torch.sigmoid(model.termination_logit(z))

        fns: dict[str, Fn] = {
            "dynamics": model.next,
            "reward": reward,
            "value": value,
            "policy": policy,
        }
        if self.episodic:
            fns["termination"] = termination
        return fns

    # ------------------------------------------------------------------ learning
    def soft_ce(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return soft_cross_entropy(
            logits, target, num_bins=self.num_bins, vmin=self.vmin, vmax=self.vmax
        )

    def training_step(self, dataloader_iter: Iterator[Any]) -> None:
        batch, _, _ = next(dataloader_iter)
        model, rho = self.model, self.rho
        obs, action, reward, terminated = self.time_major(self.batch_to_device(batch))

        with torch.no_grad():
            next_z = model.encode(obs[1:])  # (H, B, Z)
            next_q = model.q_logits(
                next_z, model.pi(next_z)[0], heads=self.two_heads(), target=True
            )
            td_target = reward + self.discount * (1.0 - terminated) * self.decode(next_q).amin(0)

        z = model.encode(obs[0])
        zs = [z]
        for t in range(action.shape[0]):
            z = model.next(z, action[t])
            zs.append(z)
        latents = torch.stack(zs)  # (H+1, B, Z)
        consistency = rho_weighted_mean((latents[1:] - next_z).pow(2), rho=rho)
        reward_ce = self.soft_ce(model.reward_logits(latents[:-1], action), reward)  # (H, B)
        q_logits = model.q_logits(latents[:-1], action, dropout=True)  # (K, H, B, bins)
        value_ce = self.soft_ce(q_logits, td_target).transpose(0, 1)  # (H, K, B)
        reward_loss = rho_weighted_mean(reward_ce, rho=rho)
        value_loss = rho_weighted_mean(value_ce, rho=rho)
        c_coef, r_coef, v_coef = self.coefs
        model_loss = c_coef * consistency + r_coef * reward_loss + v_coef * value_loss
        if self.episodic:  # does the transition into z_{t+1} end the episode? (H, B)
            termination_loss = binary_cross_entropy_with_logits(
                model.termination_logit(latents[1:]), terminated
            )
            model_loss = model_loss + self.termination_coef * termination_loss
            self.metrics.add("train/termination_loss", termination_loss.detach())
        self.gradient_step(model_loss, self._main_params, max_grad_norm=self.main_clip)
        metrics = self.metrics
        metrics.add("train/consistency_loss", consistency.detach())
        metrics.add("train/reward_loss", reward_loss.detach())
        metrics.add("train/value_loss", value_loss.detach())
        metrics.add("train/model_loss", model_loss.detach())

        self._policy_update(latents.detach())
        polyak_update(list(model.qs.parameters()), list(model.target_qs.parameters()), tau=self.tau)

    def _policy_update(self, latents: torch.Tensor) -> None:
        """One step of the policy prior on ``latents (H+1, B, Z)``, the Q heads frozen."""
        model = self.model
        action, log_prob, gauss_log_prob = model.pi(latents)
        model.qs.requires_grad_(False)
        q = self.decode(model.q_logits(latents, action, heads=self.two_heads(), dropout=True))
        model.qs.requires_grad_(True)
        q = q.mean(0)  # (H+1, B)
        with torch.no_grad():
            self.q_scale.lerp_(percentile_range(q[0]), self.tau)
        entropy = -self.action_dim * gauss_log_prob  # the authors' "scaled entropy"
        pi_loss = -rho_weighted_mean(self.entropy_coef * entropy + q / self.q_scale, rho=self.rho)
        self.gradient_step(pi_loss, self._pi_params, max_grad_norm=self.pi_clip, optimizer="pi")
        self.metrics.add("train/pi_loss", pi_loss.detach())
        self.metrics.add("train/entropy", -log_prob.detach().mean())
        self.metrics.add("train/q_mean", q.detach()[0].mean())

    def train_stats(self, *, env_step: int) -> dict[str, float]:
        return {"train/q_scale": float(self.q_scale)}
