"""REINFORCE (Williams 1992), and the base of the on-policy family.

``PolicyGradientModule`` is what REINFORCE, RLOO, REINFORCE++ and PPO share: an
``ActorCritic`` (policy head on the configured encoder, optional value network), acting
through numpy views of the live weights (``PolicyActor``), learning-rate annealing and one
optimizer step with gradient clipping. (Observation and reward normalization for MuJoCo
are options of the env, ``env.normalize_obs`` / ``env.normalize_reward``.) Its
``data_spec`` is a ``RolloutSpec``, so it learns from a ``RolloutDataModule``, which
calls ``prepare_rollout`` / ``finish_rollout`` once per rollout.

REINFORCE itself: collect ``episodes`` whole episodes with the current policy, weight each
step's log-probability by its discounted return-to-go ``G_t``, optionally minus a learned
value baseline ``V(s_t)`` (fit to ``G_t`` by MSE in the same step), optionally standardized
over the batch, and take one gradient step on the whole batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from rlbench.algos.base import RLModule
from rlbench.errors import ConfigError
from rlbench.losses import explained_variance, standardize
from rlbench.networks.policy import ActorCritic
from rlbench.specs import RolloutSpec


def check_range(
    name: str, value: float, *, low: float, high: float | None = None, low_inclusive: bool = False
) -> None:
    """Raise a one-line ``ConfigError`` unless ``value`` lies in the interval."""
    ok = value >= low if low_inclusive else value > low
    if high is not None:
        ok = ok and value <= high
    if not ok:
        lo = "[" if low_inclusive else "("
        bound = (
            f"in {lo}{low}, {high}]"
            if high is not None
            else (f">= {low}" if low_inclusive else f"> {low}")
        )
        raise ConfigError(f"{name}={value}: must be {bound}")


class PolicyActor:
    """Samples from (or takes the mode of) an ``ActorCritic``'s policy; stateless but for
    its RNG. Box actions are clipped to the env's bounds by ``act``; ``act_with_log_prob``
    returns the raw sample (the rollout keeps it; the DataModule clips what it sends)."""

    def __init__(
        self,
        module: PolicyGradientModule,
        *,
        explore: bool,
        rng: np.random.Generator,
    ) -> None:
        self.module = module
        self.explore = explore
        self.rng = rng
        self.env_step = 0
        space = module.action_space
        self._bounds = (space.low, space.high) if isinstance(space, gym.spaces.Box) else None

    def act_with_log_prob(
        self, obs: np.ndarray, *, first: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(actions (N, *action_shape), log_prob (N,))``; zeros for the mode."""
        return self.module.ac.act(obs, self.rng, explore=self.explore)

    def act(self, obs: np.ndarray, *, first: np.ndarray) -> np.ndarray:
        actions, _ = self.module.ac.act(obs, self.rng, explore=self.explore)
        if self._bounds is not None:
            return np.clip(actions, *self._bounds)
        return actions

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]


class PolicyGradientModule(RLModule):
    """Shared machinery of the on-policy algorithms (see the module docstring).

    Args:
        network: encoder partial ``(in_shape=obs_shape) -> nn.Module`` with ``out_features``.
        optimizer: partial ``(params, lr) -> Optimizer`` over policy and value parameters.
        lr: learning rate (annealed linearly to 0 over ``total_env_steps`` with
            ``anneal_lr``).
        critic: build a value network.
        spec: the rollout schedule the DataModule follows.
        ent_coef: entropy bonus coefficient.
        vf_coef: value-loss coefficient (with a critic).
        max_grad_norm: gradient clipping by global norm (``<= 0`` disables).
        shared_encoder: value head on the policy's encoder (else a separate encoder).
        orthogonal_init: PPO-style orthogonal initialization.
        init_log_std: initial log standard deviation of Gaussian policies.
    """

    def __init__(
        self,
        *,
        name: str,
        network: Callable[..., nn.Module],
        optimizer: Callable[..., torch.optim.Optimizer],
        lr: float,
        critic: bool,
        spec: RolloutSpec,
        ent_coef: float = 0.0,
        vf_coef: float = 0.5,
        max_grad_norm: float = 0.5,
        anneal_lr: bool = False,
        shared_encoder: bool = False,
        orthogonal_init: bool = True,
        init_log_std: float = 0.0,
        seed: int = 0,
    ) -> None:
        super().__init__(name=name, lr=lr, seed=seed)
        check_range("algo.gamma", spec.gamma, low=0.0, high=1.0, low_inclusive=True)
        check_range("algo.ent_coef", ent_coef, low=0.0, low_inclusive=True)
        check_range("algo.vf_coef", vf_coef, low=0.0, low_inclusive=True)
        self.network_factory = network
        self.optimizer_factory = optimizer
        self.use_critic = critic
        self.rollout_spec = spec
        self.ent_coef = ent_coef
        self.vf_coef = vf_coef
        self.max_grad_norm = max_grad_norm
        self.anneal_lr = anneal_lr
        self.shared_encoder = shared_encoder
        self.orthogonal_init = orthogonal_init
        self.init_log_std = init_log_std
        self.current_lr = lr
        self._params: list[torch.Tensor] = []

    def build(self, observation_space: gym.Space[Any], action_space: gym.Space[Any]) -> None:
        assert observation_space.shape is not None
        obs_shape = tuple(observation_space.shape)
        self.ac = ActorCritic(
            self.network_factory,
            obs_shape=obs_shape,
            action_space=action_space,
            critic=self.use_critic,
            shared_encoder=self.shared_encoder,
            orthogonal_init=self.orthogonal_init,
            init_log_std=self.init_log_std,
        )

    def on_train_start(self) -> None:
        self.ac.reset_numpy()  # acting functions are rebuilt for the device the module is on

    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        self._params = list(self.ac.parameters())
        return {"main": self.optimizer_factory(self._params, lr=self.lr)}

    @property
    def data_spec(self) -> RolloutSpec:
        return self.rollout_spec

    # ------------------------------------------------------------------ acting
    def make_actor(
        self, *, num_envs: int, mode: str = "train", deterministic: bool = True, seed: int = 0
    ) -> PolicyActor:
        """Training samples from the policy (RNG from the module's seed); evaluation takes
        the mode, or with ``deterministic=False`` samples from a generator of ``seed``."""
        self.check_mode(mode)
        if mode == "train":
            return PolicyActor(self, explore=True, rng=np.random.default_rng([self.seed, 1]))
        return PolicyActor(self, explore=not deterministic, rng=np.random.default_rng([seed, 5]))

    def rollout_values(self, obs: np.ndarray) -> np.ndarray:
        """``(B,)`` values of a whole rollout's observations (zeros without a critic)."""
        return self.ac.values(obs)

    # ------------------------------------------------------------------ rollout hooks
    def prepare_rollout(self, rollout: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Before advantages, on the time-major grid ``(T, N, ...)``: e.g. reward shaping."""
        return rollout

    def finish_rollout(self, rollout: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """After advantages (``rollout["advantage"]``, ``rollout["return"]``, ``(T, N)``)."""
        if self.use_critic:
            valid = rollout["valid"]
            ev = explained_variance(rollout["value"][valid], rollout["return"][valid])
            self.metrics.add("train/explained_variance", ev)
        return rollout

    # ------------------------------------------------------------------ learning
    def training_step(self, dataloader_iter: Iterator[Any]) -> None:
        """One iteration: a gradient step (``update``) on every minibatch of the next
        rollout, which the first ``next()`` collects with the current weights. Evaluation,
        metric flushes and checkpoints (batch-end callbacks) thus run between iterations,
        and Lightning's per-batch overhead is paid once per rollout."""
        while True:
            batch, _, _ = next(dataloader_iter)
            batch = self.batch_to_device(batch)
            self.set_progress(batch["progress"])
            self.update(batch)
            if batch["last"]:
                return

    def update(self, batch: dict[str, Any]) -> None:
        """One gradient step on a minibatch (see ``RolloutDataModule`` for its keys)."""
        raise NotImplementedError

    def set_progress(self, progress: float) -> None:
        """Linear learning-rate annealing to 0 at ``progress == 1`` (with ``anneal_lr``)."""
        if not self.anneal_lr:
            return
        lr = self.lr * (1.0 - progress)
        if lr != self.current_lr:
            self.current_lr = lr
            for group in self.optimizer("main").param_groups:
                group["lr"] = lr

    def train_stats(self, *, env_step: int) -> dict[str, float]:
        return {"train/lr": self.current_lr}

    # ------------------------------------------------------------------ state
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["rlbench_module"]["current_lr"] = self.current_lr

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        self.current_lr = checkpoint["rlbench_module"]["current_lr"]


class Reinforce(PolicyGradientModule):
    """Monte-Carlo policy gradient over whole episodes.

    Args:
        episodes: whole episodes per update (a multiple of ``env.num_envs``).
        gamma: discount of the returns-to-go.
        baseline: learn ``V(s)`` and use ``G_t - V(s_t)`` (truncated episodes then
            bootstrap their return from ``V`` of the final observation).
        normalize_returns: standardize the policy-gradient weights (the returns, or the
            returns minus the baseline) over the batch.
        Other arguments: see ``PolicyGradientModule``.
    """

    def __init__(
        self,
        *,
        name: str = "reinforce",
        network: Callable[..., nn.Module],
        optimizer: Callable[..., torch.optim.Optimizer],
        lr: float = 1e-3,
        gamma: float = 0.99,
        episodes: int = 8,
        baseline: bool = True,
        normalize_returns: bool = True,
        ent_coef: float = 0.0,
        vf_coef: float = 0.5,
        max_grad_norm: float = 0.5,
        anneal_lr: bool = False,
        shared_encoder: bool = False,
        orthogonal_init: bool = True,
        init_log_std: float = 0.0,
        seed: int = 0,
    ) -> None:
        super().__init__(
            name=name,
            network=network,
            optimizer=optimizer,
            lr=lr,
            critic=baseline,
            spec=RolloutSpec(mode="episodes", episodes=episodes, gamma=gamma),
            ent_coef=ent_coef,
            vf_coef=vf_coef,
            max_grad_norm=max_grad_norm,
            anneal_lr=anneal_lr,
            shared_encoder=shared_encoder,
            orthogonal_init=orthogonal_init,
            init_log_std=init_log_std,
            seed=seed,
        )
        self.baseline = baseline
        self.normalize_returns = normalize_returns

    def finish_rollout(self, rollout: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        rollout = super().finish_rollout(rollout)
        weight = rollout["return"]
        if self.baseline:
            weight = weight - rollout["value"]
        if self.normalize_returns:
            weight = standardize(weight, mask=rollout["valid"])
        rollout["advantage"] = weight
        return rollout

    def update(self, batch: dict[str, Any]) -> None:
        log_prob, entropy, value = self.ac.evaluate(batch["obs"], batch["action"])
        policy_loss = -(log_prob * batch["advantage"]).mean()
        entropy_mean = entropy.mean()
        loss = policy_loss - self.ent_coef * entropy_mean
        if value is not None:
            value_loss = 0.5 * (value - batch["return"]).pow(2).mean()
            loss = loss + self.vf_coef * value_loss
            self.metrics.add("train/value_loss", value_loss.detach())
        self.gradient_step(loss, self._params, max_grad_norm=self.max_grad_norm)
        self.metrics.add("train/loss", loss.detach())
        self.metrics.add("train/policy_loss", policy_loss.detach())
        self.metrics.add("train/entropy", entropy_mean.detach())
