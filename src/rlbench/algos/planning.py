"""What the latent-planning modules (TD-MPC2 in ``algos/tdmpc2.py``, TD-MPC in
``algos/tdmpc.py``) share: the MPPI planner, the actor that plans with a module's world
model, and their base class.

Reads top to bottom: ``warm_start``, ``fit_horizon`` and ``plan_mppi`` are the planner, a
pure function of callables (dynamics, reward, terminal value, policy prior) so it is tested
on toy models; ``PlanningActor`` plans for N envs at once and owns the planner's state (each
env's previous plan and the RNG); ``PlanningModule`` is the base of the modules: bounded
continuous actions planned in ``[-1, 1]^A`` and mapped onto the env's bounds, flat
observations, sequences of ``H + 1`` observations inside one episode
(``SequenceSpec(length=H)``) learnt with two optimizers, ``main`` (the model) and ``pi``
(the policy). Its subclasses build their world model and say how to plan with it
(``planner``, ``planning_functions``) and how to learn.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from rlbench.algos.base import RLModule, split_clip
from rlbench.errors import ConfigError
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
    termination: Fn | None = None,
) -> Plan:
    """MPPI over action sequences of ``cfg.horizon`` steps from latents ``z (N, Z)``.

    Each of ``cfg.iterations`` rounds scores ``cfg.num_samples`` sequences per env --
    ``cfg.num_pi_trajs`` rolled out once with ``policy``, the rest drawn from
    ``N(mean, std)`` clamped to ``[-1, 1]`` -- by ``sum_t discount^t reward(z_t, a_t) +
    discount^H value(z_H)`` along ``z_{t+1} = dynamics(z_t, a_t)`` (with ``termination``,
    each term only while no ``z_1..z_t`` is predicted terminal), keeps the
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
        termination: ``z' (..., Z) -> p (...)``, the probability that the step into ``z'``
            ended the episode, or ``None`` (no terminations: every term counts).
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
        alive = torch.ones(n, samples, device=device, dtype=dtype)  # no termination yet
        zt, scale = z0, 1.0
        for t in range(horizon):
            returns = returns + scale * alive * reward(zt, actions[:, :, t])
            zt = dynamics(zt, actions[:, :, t])
            scale *= discount
            if termination is not None:
                alive = alive * (termination(zt) <= 0.5).to(dtype)
        returns = (returns + scale * alive * value(zt)).nan_to_num(0.0)
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
class PlanningActor:
    """Plans with a ``PlanningModule``'s live world model for ``num_envs`` envs at once.

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
class PlanningModule(RLModule):
    """Base of the latent-planning modules (``TDMPC2``, ``TDMPC``).

    A subclass validates its settings before calling ``__init__``, creates its world model
    ``model`` in ``build`` after ``build_spaces``, and sets ``discount``; it gives
    ``planning_functions`` (the model as ``plan_mppi`` takes it) and, where MPPI's
    settings follow a schedule, ``planner``. Its ``training_step`` reads a batch through
    ``time_major``.

    Args:
        optimizer: partial ``(params) -> Optimizer`` of the model with optional
            ``max_grad_norm`` (kept as ``optimizer_factory`` and ``main_clip``).
        pi_optimizer: the same for the policy (``pi_optimizer_factory``, ``pi_clip``).
        mppi: MPPI's settings (``self.mppi``).
        horizon: H, steps of the sequences learnt from.
        batch_size, learning_starts, initial_updates, train_every, gradient_steps: the
            schedule (``SequenceSpec``); ``initial_updates=None`` is as many as
            ``learning_starts``.
    """

    action_spaces = (gym.spaces.Box,)
    model: Any  # .encode(obs (N, O)) -> z (N, Z), for the actor
    discount: float
    action_scale: torch.Tensor  # [-1, 1] -> the env's bounds: a * scale + bias
    action_bias: torch.Tensor

    def __init__(
        self,
        *,
        name: str,
        seed: int,
        optimizer: Callable[..., torch.optim.Optimizer],
        pi_optimizer: Callable[..., torch.optim.Optimizer],
        mppi: MPPIConfig,
        horizon: int,
        batch_size: int,
        learning_starts: int,
        initial_updates: int | None,
        train_every: int,
        gradient_steps: int,
    ) -> None:
        self.optimizer_factory, self.main_clip = split_clip(optimizer)
        self.pi_optimizer_factory, self.pi_clip = split_clip(pi_optimizer)
        super().__init__(name=name, seed=seed)
        self.mppi = mppi
        self._spec = SequenceSpec(
            batch_size=batch_size,
            learning_starts=learning_starts,
            train_every=train_every,
            gradient_steps=gradient_steps,
            initial_updates=learning_starts if initial_updates is None else initial_updates,
            length=horizon,
            within_episode=True,
        )
        self.action_dim = 0

    @property
    def data_spec(self) -> SequenceSpec:
        return self._spec

    def build_spaces(self, observation_space: gym.Space[Any], action_space: gym.Space[Any]) -> int:
        """The part of ``build`` every planning module shares: check for flat observations
        and a 1-d Box of actions with finite bounds, set ``action_dim`` and the
        ``action_scale``, ``action_bias`` buffers, and give MPPI 2 more iterations for 20+
        action dims (TD-MPC2's heuristic for large action spaces). Returns the observation
        size."""
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
        if self.action_dim >= 20:
            self.mppi = dataclasses.replace(self.mppi, iterations=self.mppi.iterations + 2)
        self.register_buffer("action_scale", torch.from_numpy((high - low) / 2.0))
        self.register_buffer("action_bias", torch.from_numpy((high + low) / 2.0))
        return int(observation_space.shape[0])

    # ------------------------------------------------------------------ acting
    def planner(self, env_step: int | None) -> MPPIConfig:
        """MPPI's settings at training env step ``env_step`` (``None``: the module's own
        clock, for actors that do not train); here fixed, whatever the step."""
        return self.mppi

    def planning_functions(self, generator: torch.Generator) -> dict[str, Fn]:
        """The world model as ``plan_mppi`` takes it (``dynamics``, ``reward``, ``value``,
        ``policy``); random draws from ``generator``."""
        raise NotImplementedError

    def make_actor(
        self, *, num_envs: int, mode: str = "train", deterministic: bool = True, seed: int = 0
    ) -> PlanningActor:
        """Training plans with exploration noise and draws the elite by score (RNG from
        the module's seed); evaluation takes the best elite without noise, or with
        ``deterministic=False`` acts as in training; its RNG comes from ``seed``."""
        self.check_mode(mode)
        if not self.built:
            raise RuntimeError("build the module (build_for) before making actors")
        if mode == "train":
            rng = np.random.default_rng([self.seed, 1])
            return PlanningActor(
                self, num_envs=num_envs, rng=rng, explore=True, sample_elite=True, train=True
            )
        rng = np.random.default_rng([seed, 5])
        stochastic = not deterministic
        return PlanningActor(
            self, num_envs=num_envs, rng=rng, explore=stochastic, sample_elite=stochastic
        )

    # ------------------------------------------------------------------ learning
    def time_major(
        self, batch: dict[str, Any]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """A batch of sequences time first: ``obs (H+1, B, O)``, ``action (H, B, A)``
        mapped back into ``[-1, 1]``, ``reward`` and ``terminated (H, B)`` as floats."""
        obs = batch["obs"].float().transpose(0, 1)
        action = ((batch["action"].float() - self.action_bias) / self.action_scale).clamp(-1, 1)
        reward = batch["reward"].float().transpose(0, 1)
        terminated = batch["terminated"].float().transpose(0, 1)
        return obs, action.transpose(0, 1), reward, terminated
