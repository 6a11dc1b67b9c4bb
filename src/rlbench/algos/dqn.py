"""DQN (Mnih et al. 2015) and the Rainbow family (Hessel et al. 2018), each part a toggle.

Reads top to bottom: ``build`` makes the online and target Q networks (an encoder with a
``QHead`` on top), ``make_actor`` hands out ``QActor``s that pick actions through the
configured sampler, ``training_step`` turns one replay batch of n-step transitions into a
loss and one Adam step. Target sync
(hard copy or Polyak averaging) is keyed on env steps like CleanRL and Stable-Baselines3.

The Rainbow components and where they live:

- double Q (van Hasselt et al. 2016): ``algo.double``, here (``q_target``).
- prioritized replay (Schaul et al. 2016): ``buffer=prioritized``; the batch brings
  importance ``weights`` and a ``priorities`` handle, through which this module returns
  per-sample priorities after each step: ``|TD error|`` for scalar heads, the KL loss for
  distributional heads (as in Rainbow).
- dueling heads (Wang et al. 2016) and noisy nets (Fortunato et al. 2018):
  ``network.dueling`` / ``network.noisy``, in ``networks/heads.py``. Noise is redrawn
  before every exploring action and every gradient step (online and target nets from
  their own generators); deterministic evaluation uses the mean weights.
- multi-step returns: ``buffer.n_step``, from the trajectory buffer.
- distributional C51 (Bellemare et al. 2017): ``algo.distributional`` with ``num_atoms``
  atoms on ``[v_min, v_max]``; ``categorical_projection`` and ``categorical_loss`` in
  ``losses.py``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any, cast

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from rlbench.algos.base import RLModule
from rlbench.errors import ConfigError
from rlbench.losses import (
    categorical_loss,
    categorical_projection,
    polyak_update,
    q_target,
    td_loss,
)
from rlbench.networks import feature_dim, numpy_forward
from rlbench.networks.heads import QHead, derive_seed, split_head_options
from rlbench.samplers import ActionSampler, LazyScores
from rlbench.specs import TransitionSpec


class QActor:
    """Acts through a ``DQN``'s online Q network and sampler (stateless but for its RNG).

    Args:
        module: the DQN whose live weights it reads.
        explore: pick actions with the sampler's exploration at ``env_step`` (training, or
            a sampled evaluation at the end of the schedule); else greedy on the mean
            weights.
        rng: the generator of exploration draws.
    """

    def __init__(
        self,
        module: DQN,
        *,
        explore: bool,
        rng: np.random.Generator,
        noise_seed: int | None = None,
    ) -> None:
        self.module = module
        self.explore = explore
        self.rng = rng
        self.env_step = 0
        # A sampled evaluation draws noisy-net noise from generators of its own, so it never
        # moves the training actor's noise stream and stays a function of weights and seed.
        self.noise_generators: list[torch.Generator] | None = None
        if noise_seed is not None and module.head_options.noisy:
            self.noise_generators = [
                torch.Generator().manual_seed(derive_seed(noise_seed, 7, i))
                for i, _ in enumerate(module.head.noisy_layers())
            ]

    def _redraw_noise(self) -> None:
        head = self.module.head
        if self.noise_generators is None:
            head.reset_noise()
            return
        layers = list(head.noisy_layers())
        own = [layer.generator for layer in layers]
        for layer, g in zip(layers, self.noise_generators, strict=True):
            layer.generator = g
        try:
            head.reset_noise()
        finally:
            for layer, g in zip(layers, own, strict=True):
                layer.generator = g

    def act(self, obs: np.ndarray, *, first: np.ndarray) -> np.ndarray:
        """Actions ``(N,)`` for observations ``(N, *obs_shape)``."""
        m = self.module
        if m.head_options.noisy:  # fresh noise per exploring step; mean weights otherwise
            m.head.set_noise(self.explore)
            if self.explore:
                self._redraw_noise()
        scores = LazyScores(m._q_fn(), obs, m.num_actions)
        return m.sampler(scores, step=self.env_step, rng=self.rng, explore=self.explore)

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"rng": self.rng.bit_generator.state}
        if self.noise_generators is not None:
            state["noise"] = [g.get_state() for g in self.noise_generators]
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
        for g, saved in zip(self.noise_generators or [], state.get("noise", []), strict=False):
            g.set_state(saved)


#: env step that puts every exploration schedule at its end (sampled evaluation)
SCHEDULE_END = 2**62


class DQN(RLModule):
    """Deep Q-learning over n-step replay batches, with the Rainbow components as toggles.

    Args:
        network: encoder partial ``(in_shape=obs_shape) -> nn.Module`` with ``out_features``;
            a ``QHead`` ``(B, out_features) -> (B, num_actions)`` goes on top, configured by
            the partial's head options (``network.dueling``, ``noisy``, ``sigma0``,
            ``head_hidden``).
        optimizer: partial ``(params, lr) -> Optimizer``.
        sampler: exploration policy over Q-values.
        gamma: discount per env step.
        double: choose the bootstrap action with the online net (double DQN).
        target_update_every: env steps between target updates.
        tau: Polyak coefficient; 1.0 is a hard copy.
        batch_size, learning_starts, train_every, gradient_steps: replay schedule.
        max_grad_norm: gradient clipping by global norm (``<= 0`` disables).
        loss: ``huber`` or ``mse`` (scalar heads; distributional heads use the KL loss).
        distributional: C51 head with ``num_atoms`` atoms evenly spaced on ``[v_min, v_max]``.
        clip_rewards: learn from per-step rewards clipped to ``[-1, 1]`` (Mnih et al. 2015).
            The replay buffer clips at sample time (``buffer.clip_rewards`` follows this
            key), so stored rewards and logged episode returns stay raw.
    """

    def __init__(
        self,
        *,
        name: str = "dqn",
        network: Callable[..., nn.Module],
        optimizer: Callable[..., torch.optim.Optimizer],
        sampler: ActionSampler,
        lr: float = 6.3e-4,
        gamma: float = 0.99,
        double: bool = False,
        target_update_every: int = 4,
        tau: float = 0.01,
        batch_size: int = 128,
        learning_starts: int = 1_000,
        train_every: int = 4,
        gradient_steps: int = 1,
        max_grad_norm: float = 10.0,
        loss: str = "huber",
        distributional: bool = False,
        num_atoms: int = 51,
        v_min: float = -10.0,
        v_max: float = 10.0,
        clip_rewards: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__(name=name, lr=lr, seed=seed)
        if distributional and num_atoms < 2:
            raise ConfigError(f"algo.num_atoms={num_atoms}: a distribution needs >= 2 atoms")
        if distributional and not v_min < v_max:
            raise ConfigError(f"algo.v_min={v_min}, algo.v_max={v_max}: need v_min < v_max")
        self.network_factory, self.head_options = split_head_options(network)
        if self.head_options.sigma0 <= 0:
            raise ConfigError(f"network.sigma0={self.head_options.sigma0}: must be > 0")
        self.distributional = distributional
        self.num_atoms, self.v_min, self.v_max = num_atoms, v_min, v_max
        self.clip_rewards = clip_rewards  # applied by the replay buffer (see Args)
        self.optimizer_factory = optimizer
        self.sampler = sampler
        self.gamma = gamma
        self.double_q = double
        self.target_update_every = target_update_every
        self.tau = tau
        self.max_grad_norm = max_grad_norm
        self.loss_kind = loss
        self._spec = TransitionSpec(
            batch_size=batch_size,
            learning_starts=learning_starts,
            train_every=train_every,
            gradient_steps=gradient_steps,
            gamma=gamma,
        )
        self.last_target_update = 0  # env step of the last target update
        self._numpy_q: Callable[[np.ndarray], np.ndarray] | None = None

    action_spaces = (gym.spaces.Discrete,)

    @property
    def data_spec(self) -> TransitionSpec:
        return self._spec

    def build(self, observation_space: gym.Space[Any], action_space: gym.Space[Any]) -> None:
        assert isinstance(action_space, gym.spaces.Discrete)
        assert observation_space.shape is not None
        self.num_actions = int(action_space.n)
        encoder = self.network_factory(in_shape=tuple(observation_space.shape))
        opts = self.head_options
        head = QHead(
            feature_dim(encoder),
            self.num_actions,
            dueling=opts.dueling,
            noisy=opts.noisy,
            sigma0=opts.sigma0,
            num_atoms=self.num_atoms if self.distributional else 1,
            v_min=self.v_min,
            v_max=self.v_max,
            hidden=opts.head_hidden,
            seed=derive_seed(self.seed, 3, 0),
        )
        self.q_net = nn.Sequential(encoder, head)
        self.target_net = copy.deepcopy(self.q_net).requires_grad_(False)
        self.target_head.seed_noise(derive_seed(self.seed, 3, 1))  # its own noise stream

    @property
    def head(self) -> QHead:
        return cast(QHead, self.q_net[1])

    @property
    def target_head(self) -> QHead:
        return cast(QHead, self.target_net[1])

    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        self._params: list[torch.Tensor] = list(self.q_net.parameters())
        return {"main": self.optimizer_factory(self._params, lr=self.lr)}

    # ------------------------------------------------------------------ acting
    def _q_fn(self) -> Callable[[np.ndarray], np.ndarray]:
        """``obs (B, *obs) -> Q (B, A)``: on the CPU, numpy over views of the live weights
        when the net allows it (decided once; the views follow every update)."""
        if self._numpy_q is None:
            if self.device.type != "cpu":
                return self._torch_q
            self._numpy_q = numpy_forward(self.q_net) or self._torch_q
        return self._numpy_q

    def _torch_q(self, obs: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            q = self.q_net(torch.as_tensor(obs, device=self.device))
        return q.cpu().numpy()

    def make_actor(
        self, *, num_envs: int, mode: str = "train", deterministic: bool = True, seed: int = 0
    ) -> QActor:
        """Training: the sampler's exploration schedule (RNG from the module's seed). Eval:
        greedy on the mean weights, or (``deterministic=False``) the sampler at the end of
        its schedule (e.g. epsilon's final value), drawn from a generator of ``seed``."""
        self.check_mode(mode)
        if mode == "train":
            return QActor(self, explore=True, rng=np.random.default_rng([self.seed, 1]))
        actor = QActor(
            self, explore=not deterministic, rng=np.random.default_rng([seed, 5]), noise_seed=seed
        )
        actor.env_step = SCHEDULE_END
        return actor

    # ------------------------------------------------------------------ learning
    def training_step(self, dataloader_iter: Iterator[Any]) -> None:
        batch, _, _ = next(dataloader_iter)
        batch = self.batch_to_device(batch)
        env_step = int(batch["env_step"])
        if (
            env_step // self.target_update_every
            > self.last_target_update // self.target_update_every
        ):
            polyak_update(
                list(self.q_net.parameters()), list(self.target_net.parameters()), tau=self.tau
            )
            self.last_target_update = env_step
        if self.head_options.noisy:
            for head in (self.head, self.target_head):
                head.set_noise(True)
                head.reset_noise()

        weights = batch.get("weights")  # importance weights: prioritized replay only
        if self.distributional:
            loss, priority, q_taken = self._categorical_loss(batch, weights)
        else:
            loss, priority, q_taken = self._td_loss(batch, weights)

        self.gradient_step(loss, self._params, max_grad_norm=self.max_grad_norm)

        if priority is not None:
            batch["priorities"].update(priority)
        self.metrics.add("train/loss", loss.detach())
        self.metrics.add("train/q_mean", q_taken.mean())

    def _td_loss(
        self, batch: dict[str, Any], weights: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Scalar heads: ``(loss, priorities (B,), Q(s, a) (B, 1))``; the priorities are
        ``|TD error|`` for a prioritized batch (one with ``weights``), else ``None``.

        Q(s, a) and the target stay ``(B, 1)`` columns: no squeeze node in the graph."""
        next_obs = batch["next_obs"]
        q = self.q_net(batch["obs"])
        q_taken = q.gather(1, batch["action"].long().unsqueeze(1))
        with torch.no_grad():
            target = q_target(
                reward=batch["reward"],
                discount=batch["discount"],
                next_q_target=self.target_net(next_obs),
                next_q_online=self.q_net(next_obs) if self.double_q else None,
            ).unsqueeze(1)
        if weights is not None:
            weights = weights.unsqueeze(1)
        loss = td_loss(q_taken, target, kind=self.loss_kind, weights=weights)
        q_taken = q_taken.detach()
        priority = (q_taken - target).abs().squeeze(1) if weights is not None else None
        return loss, priority, q_taken

    def _categorical_loss(
        self, batch: dict[str, Any], weights: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """C51: ``(loss, KL (B,), E[Z(s, a)] (B,))`` against the projected target (the KL
        is the priority of a prioritized batch, ``None`` otherwise)."""
        next_obs = batch["next_obs"]
        log_p = self.head.log_probs(self.q_net[0](batch["obs"]))  # (B, A, K)
        rows = torch.arange(log_p.shape[0], device=log_p.device)
        log_p_taken = log_p[rows, batch["action"].long()]  # (B, K)
        with torch.no_grad():
            next_p = self.target_head.log_probs(self.target_net[0](next_obs)).exp()  # (B, A, K)
            next_q = self.q_net(next_obs) if self.double_q else self.target_head.expected(next_p)
            target_p = categorical_projection(
                next_probs=next_p[rows, next_q.argmax(dim=1)],
                reward=batch["reward"],
                discount=batch["discount"],
                support=cast(torch.Tensor, self.head.support),
            )
        loss, kl = categorical_loss(log_p_taken, target_p, weights=weights)
        priority = kl.detach() if weights is not None else None
        return loss, priority, self.head.expected(log_p_taken.detach().exp())

    def train_stats(self, *, env_step: int) -> dict[str, float]:
        return {f"train/{k}": v for k, v in self.sampler.stats(env_step).items()}

    # ------------------------------------------------------------------ state
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["rlbench_module"]["last_target_update"] = self.last_target_update

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        self.last_target_update = checkpoint["rlbench_module"]["last_target_update"]
