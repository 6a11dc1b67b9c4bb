"""TD-MPC2 (Hansen, Su and Wang, ICLR 2024): model-predictive control in the latent space
of an implicit world model, learnt by temporal differences.

Reads top to bottom: ``warm_start`` and ``plan_mppi`` are the planner, a pure function of
callables (dynamics, reward, terminal value, policy prior) so it is tested on toy models;
``TDMPC2Actor`` plans for N envs at once and owns the planner's state (each env's previous
plan and the RNG); ``TDMPC2`` builds the world model (``networks/world_model.py``) and
learns from sequences of ``H + 1`` observations (``SequenceSpec(length=H)``, inside one
episode) with two optimizers:

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

then Polyak-averages the target Q heads (``tau``). Rewards and values are regressed as
two-hot distributions over ``num_bins`` bins in symlog space (``losses.two_hot``). The
discount is ``(L/5 - 1) / (L/5)`` clipped to ``[0.95, 0.995]`` for episodes of ``L =
episode_length`` steps unless ``discount`` is given. ``learning_starts`` (null: ``max(1000,
5 L)``) random steps are followed by a burst of ``initial_updates`` (null: as many) updates,
then ``gradient_steps / train_every`` per env step. Actions are planned in ``[-1, 1]^A``
and mapped onto the env's bounds.

Not here (yet): the termination head of the authors' ``episodic`` mode (terminations only
stop the TD bootstrap), multi-task embeddings, pixel observations.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import gymnasium as gym
import numpy as np
import torch

from rlbench.algos.base import RLModule, split_clip
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
from rlbench.specs import SequenceSpec

Latent = torch.Tensor
Fn = Callable[..., torch.Tensor]


# ---------------------------------------------------------------------- the planner
@dataclass(frozen=True)
class MPPIConfig:
    """MPPI's settings (the authors' defaults). ``temperature`` multiplies the values in
    the elites' softmax weights ``exp(temperature * (v - max v))``, as in the authors' code.
    ``momentum`` keeps that share of the previous iteration's mean in each refit (TD-MPC:
    0.1; TD-MPC2: 0)."""

    horizon: int = 3
    iterations: int = 6
    num_samples: int = 512
    num_elites: int = 64
    num_pi_trajs: int = 24
    temperature: float = 0.5
    min_std: float = 0.05
    max_std: float = 2.0
    momentum: float = 0.0


@dataclass
class Plan:
    """``action (N, A)`` to take now; ``mean``, ``std (N, H, A)`` of the final iteration."""

    action: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor


def warm_start(prev_mean: torch.Tensor, first: torch.Tensor) -> torch.Tensor:
    """The initial MPPI mean ``(N, H, A)``: each env's previous plan shifted one step
    ahead (its last step 0), and all zeros for envs whose observation is an episode's
    ``first (N,)`` bool."""
    keep = (~first).to(prev_mean.dtype)[:, None, None]
    return torch.cat([prev_mean[:, 1:], torch.zeros_like(prev_mean[:, :1])], dim=1) * keep


def fit_horizon(prev_mean: torch.Tensor, horizon: int) -> torch.Tensor:
    """``prev_mean (N, H', A)`` cut or zero-padded at its end to ``(N, horizon, A)``: a
    scheduled planning horizon (TD-MPC) may change between two steps of an episode."""
    n, old, action_dim = prev_mean.shape
    if old == horizon:
        return prev_mean
    if old > horizon:
        return prev_mean[:, :horizon]
    return torch.cat([prev_mean, prev_mean.new_zeros(n, horizon - old, action_dim)], dim=1)


def plan_mppi(
    z: Latent,
    *,
    init_mean: torch.Tensor,
    dynamics: Fn,
    reward: Fn,
    value: Fn,
    policy: Fn | None,
    discount: float,
    cfg: MPPIConfig,
    generator: torch.Generator,
    explore: bool,
    sample_elite: bool,
) -> Plan:
    """MPPI over action sequences of ``cfg.horizon`` steps from latents ``z (N, Z)``.

    Each of ``cfg.iterations`` rounds scores ``cfg.num_samples`` sequences per env --
    ``cfg.num_pi_trajs`` rolled out once with ``policy``, the rest drawn from
    ``N(mean, std)`` clamped to ``[-1, 1]`` -- by ``sum_t discount^t reward(z_t, a_t) +
    discount^H value(z_H)`` along ``z_{t+1} = dynamics(z_t, a_t)``, keeps the
    ``cfg.num_elites`` best and refits ``mean`` and ``std`` (clamped to ``[min_std,
    max_std]``) to them weighted by ``exp(temperature * (v - max v))``; with
    ``cfg.momentum = m`` the new mean is ``m * mean + (1 - m) * refit`` (the std is the
    refit's, around the refit mean, as in TD-MPC's code).

    The action is the first step of an elite drawn by those weights (``sample_elite``) or
    of the best one, plus ``std_0 * N(0, 1)`` noise when ``explore``, clamped to ``[-1, 1]``.

    Args:
        z: ``(N, Z)`` latent of each env's current observation.
        init_mean: ``(N, H, A)`` initial mean (``warm_start``); the std starts at ``max_std``.
        dynamics: ``(z (..., Z), a (..., A)) -> z' (..., Z)``.
        reward: ``(z, a) -> r (...)``.
        value: ``z (..., Z) -> v (...)``, the terminal value.
        policy: ``z (..., Z) -> a (..., A)`` in ``[-1, 1]``, or ``None`` (no policy samples).
        discount: per-step discount of the returns.
        cfg: the sample counts, temperature and std bounds.
        generator: every random draw (samples, elite, noise) comes from it.
        explore, sample_elite: see above (training: both; deterministic evaluation: neither).
    """
    n, horizon, action_dim = init_mean.shape
    samples, num_pi = cfg.num_samples, cfg.num_pi_trajs if policy is not None else 0
    device, dtype = init_mean.device, init_mean.dtype
    actions = torch.empty(n, samples, horizon, action_dim, device=device, dtype=dtype)
    if num_pi > 0:
        assert policy is not None
        zp = z.unsqueeze(1).expand(n, num_pi, z.shape[-1])
        for t in range(horizon):
            actions[:, :num_pi, t] = policy(zp)
            if t < horizon - 1:
                zp = dynamics(zp, actions[:, :num_pi, t])
    z0 = z.unsqueeze(1).expand(n, samples, z.shape[-1])
    mean = init_mean
    std = torch.full_like(init_mean, cfg.max_std)
    for _ in range(cfg.iterations):
        noise = torch.randn(
            n,
            samples - num_pi,
            horizon,
            action_dim,
            generator=generator,
            device=device,
            dtype=dtype,
        )
        actions[:, num_pi:] = (mean.unsqueeze(1) + std.unsqueeze(1) * noise).clamp(-1.0, 1.0)
        returns = torch.zeros(n, samples, device=device, dtype=dtype)
        zt, scale = z0, 1.0
        for t in range(horizon):
            returns = returns + scale * reward(zt, actions[:, :, t])
            zt = dynamics(zt, actions[:, :, t])
            scale *= discount
        returns = (returns + scale * value(zt)).nan_to_num(0.0)
        elite_value, elite_idx = torch.topk(returns, cfg.num_elites, dim=1)  # (N, E)
        elites = torch.gather(
            actions, 1, elite_idx[:, :, None, None].expand(-1, -1, horizon, action_dim)
        )  # (N, E, H, A)
        score = torch.softmax(cfg.temperature * elite_value, dim=1)  # = exp(T(v - max)) / sum
        w = score[:, :, None, None]
        refit = (w * elites).sum(1)
        std = (w * (elites - refit.unsqueeze(1)).pow(2)).sum(1).sqrt()
        std = std.clamp(cfg.min_std, cfg.max_std)
        mean = refit if cfg.momentum == 0 else torch.lerp(refit, mean, cfg.momentum)
    if sample_elite:
        pick = torch.multinomial(score, 1, generator=generator).squeeze(1)
    else:
        pick = score.argmax(dim=1)
    action = elites[torch.arange(n, device=device), pick, 0]
    if explore:
        eps = torch.randn(n, action_dim, generator=generator, device=device, dtype=dtype)
        action = action + std[:, 0] * eps
    return Plan(action=action.clamp(-1.0, 1.0), mean=mean, std=std)


# ---------------------------------------------------------------------- the actor
class PlanningModule(Protocol):
    """What ``TDMPC2Actor`` reads of its module (``TDMPC2``, ``TDMPC``)."""

    model: Any  # .encode(obs (N, O)) -> z (N, Z)
    discount: float
    action_dim: int
    action_scale: torch.Tensor
    action_bias: torch.Tensor

    @property
    def device(self) -> torch.device: ...

    def planner(self, env_step: int | None) -> MPPIConfig:
        """MPPI's settings at training env step ``env_step`` (``None``: the module's own
        clock, for actors that do not train)."""
        ...

    def planning_functions(self, generator: torch.Generator) -> dict[str, Fn]: ...


class TDMPC2Actor:
    """Plans with a ``TDMPC2`` (or ``TDMPC``) module's live world model for ``num_envs``
    envs at once.

    Its state is the planner's: each env's previous plan mean ``(N, H, A)`` (the warm
    start, reset at ``first``) and a numpy generator that seeds a torch generator on the
    module's device for each call, so every draw of a plan is reproducible and the state
    is small and exact to checkpoint. The planner's settings come from
    ``module.planner(env_step)``: the training actor passes the training clock its
    DataModule sets, other actors ``None`` (schedules then follow the module's clock).

    Args:
        module: the module whose world model it plans with.
        num_envs: N.
        rng: the generator of the plans' random draws.
        explore: add the final std's Gaussian noise to the action (training).
        sample_elite: draw the action's elite by score, else take the best (evaluation).
        train: the training actor (reads ``env_step``).
    """

    def __init__(
        self,
        module: PlanningModule,
        *,
        num_envs: int,
        rng: np.random.Generator,
        explore: bool,
        sample_elite: bool,
        train: bool = False,
    ) -> None:
        self.module = module
        self.rng = rng
        self.explore, self.sample_elite, self.train = explore, sample_elite, train
        self.env_step = 0
        horizon = module.planner(0 if train else None).horizon
        self.prev_mean = torch.zeros(num_envs, horizon, module.action_dim)

    def act(self, obs: np.ndarray, *, first: np.ndarray) -> np.ndarray:
        """Actions ``(N, A)`` within the env's bounds for observations ``(N, obs_dim)``."""
        module = self.module
        device = module.device
        cfg = module.planner(self.env_step if self.train else None)
        with torch.inference_mode():
            generator = torch.Generator(device=device)
            generator.manual_seed(int(self.rng.integers(2**63 - 1)))
            z = module.model.encode(torch.as_tensor(obs, device=device).float())
            init = warm_start(
                fit_horizon(self.prev_mean.to(device), cfg.horizon),
                torch.as_tensor(np.asarray(first, np.bool_), device=device),
            )
            plan = plan_mppi(
                z,
                init_mean=init,
                discount=module.discount,
                cfg=cfg,
                generator=generator,
                explore=self.explore,
                sample_elite=self.sample_elite,
                **module.planning_functions(generator),
            )
            self.prev_mean = plan.mean.clone()
            action = plan.action * module.action_scale + module.action_bias
        return action.cpu().numpy()

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state, "prev_mean": self.prev_mean.cpu().clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.prev_mean = state["prev_mean"].clone()


# ---------------------------------------------------------------------- the module
class TDMPC2(RLModule):
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

    action_spaces = (gym.spaces.Box,)

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
        self.optimizer_factory, self.main_clip = split_clip(optimizer)
        self.pi_optimizer_factory, self.pi_clip = split_clip(pi_optimizer)
        super().__init__(name=name, seed=seed)
        if size not in MODEL_SIZES:
            raise ConfigError(f"algo.size={size}: allowed {', '.join(MODEL_SIZES)}")
        self.size = size_of(
            size,
            enc_dim=enc_dim,
            mlp_dim=mlp_dim,
            latent_dim=latent_dim,
            num_enc_layers=num_enc_layers,
            num_q=num_q,
            simnorm_dim=simnorm_dim,
        )
        if self.size.latent_dim % simnorm_dim:
            raise ConfigError(
                f"algo.latent_dim={self.size.latent_dim}: must be a multiple of "
                f"algo.simnorm_dim={simnorm_dim}"
            )
        if min(self.size.enc_dim, self.size.mlp_dim, self.size.num_enc_layers, self.size.num_q) < 1:
            raise ConfigError(f"algo.size={size}: every width must be >= 1, got {self.size}")
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
        self.mppi = MPPIConfig(
            horizon=horizon,
            iterations=iterations,
            num_samples=num_samples,
            num_elites=num_elites,
            num_pi_trajs=num_pi_trajs,
            temperature=temperature,
            min_std=min_std,
            max_std=max_std,
        )
        seed_steps = max(1000, 5 * episode_length) if learning_starts is None else learning_starts
        self._spec = SequenceSpec(
            batch_size=batch_size,
            learning_starts=seed_steps,
            train_every=train_every,
            gradient_steps=gradient_steps,
            initial_updates=seed_steps if initial_updates is None else initial_updates,
            length=horizon,
            within_episode=True,
        )
        self.action_dim = 0
        self.q_scale: torch.Tensor
        self.register_buffer("q_scale", torch.ones(()))  # running 5-95% range of Q

    @property
    def data_spec(self) -> SequenceSpec:
        return self._spec

    def build(self, observation_space: gym.Space[Any], action_space: gym.Space[Any]) -> None:
        assert isinstance(action_space, gym.spaces.Box)
        if not isinstance(observation_space, gym.spaces.Box) or len(observation_space.shape) != 1:
            raise ConfigError(
                f"algo={self.name} takes flat observations (a 1-d Box), not {observation_space}"
            )
        low, high = action_space.low.astype(np.float32), action_space.high.astype(np.float32)
        if len(action_space.shape) != 1 or not (np.isfinite(low).all() and np.isfinite(high).all()):
            raise ConfigError(
                f"algo={self.name} needs a 1-d Box action space with finite bounds, "
                f"not {action_space}"
            )
        self.action_dim = int(action_space.shape[0])
        if self.action_dim >= 20:  # the authors' heuristic for large action spaces
            self.mppi = dataclasses.replace(self.mppi, iterations=self.mppi.iterations + 2)
        self.action_scale: torch.Tensor
        self.action_bias: torch.Tensor
        self.register_buffer("action_scale", torch.from_numpy((high - low) / 2.0))
        self.register_buffer("action_bias", torch.from_numpy((high + low) / 2.0))
        self.model = WorldModel(
            obs_dim=int(observation_space.shape[0]),
            action_dim=self.action_dim,
            size=self.size,
            num_bins=self.num_bins,
            dropout=self.dropout,
            log_std_min=self.log_std_bounds[0],
            log_std_max=self.log_std_bounds[1],
        )

    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        model = self.model
        encoder: list[torch.Tensor] = list(model.encoder.parameters())
        rest: list[torch.Tensor] = [
            *model.dynamics.parameters(),
            *model.reward.parameters(),
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

    def planner(self, env_step: int | None) -> MPPIConfig:
        """MPPI's settings (fixed in TD-MPC2, whatever the step)."""
        return self.mppi

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

        return {"dynamics": model.next, "reward": reward, "value": value, "policy": policy}

    def make_actor(
        self, *, num_envs: int, mode: str = "train", deterministic: bool = True, seed: int = 0
    ) -> TDMPC2Actor:
        """Training plans with exploration noise and draws the elite by score (RNG from
        the module's seed); evaluation takes the best elite without noise, or with
        ``deterministic=False`` acts as in training; its RNG comes from ``seed``."""
        self.check_mode(mode)
        if not self.built:
            raise RuntimeError("build the module (build_for) before making actors")
        if mode == "train":
            rng = np.random.default_rng([self.seed, 1])
            return TDMPC2Actor(
                self, num_envs=num_envs, rng=rng, explore=True, sample_elite=True, train=True
            )
        rng = np.random.default_rng([seed, 5])
        stochastic = not deterministic
        return TDMPC2Actor(
            self, num_envs=num_envs, rng=rng, explore=stochastic, sample_elite=stochastic
        )

    # ------------------------------------------------------------------ learning
    def soft_ce(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return soft_cross_entropy(
            logits, target, num_bins=self.num_bins, vmin=self.vmin, vmax=self.vmax
        )

    def training_step(self, dataloader_iter: Iterator[Any]) -> None:
        batch, _, _ = next(dataloader_iter)
        batch = self.batch_to_device(batch)
        model, rho = self.model, self.rho
        obs = batch["obs"].float().transpose(0, 1)  # (H+1, B, O)
        action = ((batch["action"].float() - self.action_bias) / self.action_scale).clamp(-1, 1)
        action = action.transpose(0, 1)  # (H, B, A) in [-1, 1]
        reward = batch["reward"].float().transpose(0, 1)  # (H, B)
        terminated = batch["terminated"].float().transpose(0, 1)

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
