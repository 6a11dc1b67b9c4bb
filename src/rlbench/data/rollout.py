"""On-policy data path: the DataModule collects rollouts with the current policy and streams
them to the module as minibatches.

A rollout is collected when the previous one has been used up, inside the ``next()`` that
fetches the first batch of a training step; on-policy modules take ``dataloader_iter`` in
``training_step`` so Lightning does not prefetch, and every rollout is therefore collected
with the weights left by the last gradient step. Two collection modes:

- ``steps`` (PPO): ``num_steps`` vector steps of all N envs, continuing across rollouts.
  Advantages are GAE(lambda) with truncated episodes bootstrapped from the value of their
  real final observation. With Gymnasium's NEXT_STEP autoreset the step after an episode
  end only resets its env; that row is used as the bootstrap observation and then dropped
  from the batch (it is not a transition).
- ``episodes`` (REINFORCE family): ``episodes`` whole episodes, collected in waves of N envs
  that start together from a reset; an env whose episode ended waits (its further steps are
  discarded and not counted) until the wave's last episode ends. Episodes ``j`` with the same
  ``j // group_size`` start from a reset with the same seed (RLOO's groups). Returns-to-go
  are the advantages unless the module changes them.

Values of all of a rollout's observations come from one batched ``rollout_values`` call
after collecting (the weights do not change meanwhile), not one forward per step. Per
rollout the module sees the time-major grid ``(T, N)`` twice: ``prepare_rollout`` (before
the advantages; e.g. REINFORCE++'s KL penalty in the rewards) and ``finish_rollout``
(after; e.g. baselines, normalization). The batch is then flattened to its valid rows and
yielded ``epochs`` times, each epoch as ``minibatches`` random minibatches (or the whole
batch in order when ``minibatches == 1``); the last one is marked ``last``, so a module can
take a whole rollout in one training step. All stream state -- envs, counters, the current
rollout and position in it, every RNG -- lives here and is checkpointed, so a run resumed
from any gradient step continues bit-identically.
"""

from __future__ import annotations

import dataclasses
import pickle
from collections.abc import Callable
from typing import Any, Protocol

import gymnasium as gym
import numpy as np
import torch

from rlbench.data.base import EnvStreamDataModule
from rlbench.data.protocol import MetricSink, RolloutActor
from rlbench.envs import EnvFactory
from rlbench.errors import ConfigError
from rlbench.losses import gae, returns_to_go
from rlbench.specs import RolloutSpec

MODES = ("steps", "episodes")
#: grid-only keys, not part of the flat training batch
GRID_ONLY = ("valid", "terminated", "truncated", "dones", "next_value", "reward")
#: an episode-mode wave longer than this means the env never ends its episodes
MAX_WAVE_STEPS = 1_000_000


class RolloutLearner(Protocol):
    """The learner-side hooks the rollout DataModule calls once per rollout (the module)."""

    def rollout_values(self, obs: np.ndarray) -> np.ndarray:
        """``(B,)`` values of ``(B, *obs_shape)`` (zeros without a critic)."""
        ...

    def prepare_rollout(self, rollout: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]: ...

    def finish_rollout(self, rollout: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]: ...


def check_rollout_spec(spec: RolloutSpec, *, num_envs: int) -> None:
    """Raise a one-line ConfigError for a spec that cannot run with ``num_envs`` envs."""
    if spec.mode not in MODES:
        raise ConfigError(f"rollout mode '{spec.mode}': allowed {', '.join(MODES)}")
    if spec.epochs < 1 or spec.minibatches < 1:
        raise ConfigError(
            f"algo.epochs={spec.epochs}, algo.minibatches={spec.minibatches}: must be >= 1"
        )
    if spec.mode == "steps" and spec.num_steps < 1:
        raise ConfigError(f"algo.num_steps={spec.num_steps}: must be > 0")
    if spec.mode == "episodes":
        if spec.group_size < 1 or spec.episodes < 1 or spec.episodes % spec.group_size:
            raise ConfigError(
                f"algo.episodes={spec.episodes}: must be a positive multiple of the group "
                f"size {spec.group_size}"
            )
        if spec.episodes % num_envs:
            raise ConfigError(
                f"algo.episodes={spec.episodes}: must be a multiple of env.num_envs={num_envs}"
            )


class RolloutDataModule(EnvStreamDataModule):
    """Owns the training envs; collects on-policy rollouts and yields their minibatches.

    Args:
        env: factory of the training vector env (``env.*``).
        spec: the rollout schedule (``module.data_spec``).
        actor: the training actor, sampling actions with their log-probabilities.
        learner: the hooks called once per rollout (values, ``prepare_rollout``,
            ``finish_rollout``): the module.
        metrics: where ``rollout/*`` episode statistics go (``module.metrics``).
        seed: envs are first reset with ``seed`` (env ``i`` gets ``seed + i``); the
            generators for episode reset seeds and minibatch permutations derive from it.
        total_env_steps: no rollout starts once this many env steps were collected.

    Each yielded batch holds flat ``(B, ...)`` tensors ``obs``, ``action``, ``log_prob``,
    ``value``, ``advantage``, ``return`` (plus any key the module's hooks add) and the
    python values ``env_step`` (env steps collected so far), ``progress`` (the fraction of
    ``total_env_steps`` done when this rollout started; for learning-rate annealing) and
    ``last`` (this is the rollout's last minibatch: the next ``next()`` collects anew).
    """

    def __init__(
        self,
        *,
        env: EnvFactory,
        spec: RolloutSpec,
        actor: RolloutActor,
        learner: RolloutLearner,
        metrics: MetricSink,
        seed: int,
        total_env_steps: int,
    ) -> None:
        super().__init__(
            env=env,
            seed=seed,
            total_env_steps=total_env_steps,
            rng_stream=3,
            actor=actor,
            metrics=metrics,
        )
        self.spec = spec
        self.rollout_actor = actor
        self.learner = learner
        self.rollouts = 0
        self.perm_rng = torch.Generator().manual_seed(
            int(np.random.SeedSequence([seed, 4]).generate_state(1)[0])
        )
        self.backend = ""
        # the rollout being trained on and the position in it
        self.batch: dict[str, torch.Tensor] | None = None
        self.meta: dict[str, Any] = {}
        self.epoch = 0
        self.minibatch = 0
        self.perm: torch.Tensor | None = None
        self._shuffled: dict[str, torch.Tensor] | None = None  # batch[perm], not saved

    # ------------------------------------------------------------------ setup
    def setup(self, stage: str) -> None:
        if self.envs is not None:
            return
        spec = self.spec
        n = self.env_factory.num_envs
        check_rollout_spec(spec, num_envs=n)
        factory = self.env_factory
        if spec.mode == "episodes" and spec.group_size > 1 and factory.backend(n) == "native":
            if factory.vectorization != "auto":
                raise ConfigError(
                    "env.vectorization=native cannot reset envs with per-env seeds, which "
                    "grouped episodes need; use serial or sync"
                )
            factory = dataclasses.replace(factory, vectorization="serial")
        self.backend = factory.backend(n)
        self.start_envs(factory.make())

    # ------------------------------------------------------------------ stream
    def _next_batch(self) -> dict[str, Any]:
        spec = self.spec
        while self.batch is None:
            if self.env_steps >= self.total_env_steps:
                assert self.trainer is not None
                self.trainer.should_stop = True
                raise StopIteration
            self._new_rollout(spec)
        batch = self.batch
        size = len(batch["advantage"])
        parts = min(spec.minibatches, size)
        if parts == 1:
            out: dict[str, Any] = dict(batch)
        else:
            if self.minibatch == 0 or self.perm is None:
                self.perm = torch.randperm(size, generator=self.perm_rng)
                self._shuffled = None
            if self._shuffled is None:  # the epoch's permuted copy; minibatches are views
                self._shuffled = {k: v[self.perm] for k, v in batch.items()}
            # the row ranges of torch.tensor_split(perm, parts)
            small, extra = divmod(size, parts)
            start = self.minibatch * small + min(self.minibatch, extra)
            stop = start + small + (self.minibatch < extra)
            out = {k: v[start:stop] for k, v in self._shuffled.items()}
        self.minibatch += 1
        if self.minibatch == parts:
            self.minibatch = 0
            self.perm = None
            self.epoch += 1
            if self.epoch == spec.epochs:
                self.batch = None  # used up: the next call collects a new rollout
        out.update(self.meta)
        out["last"] = self.batch is None
        return out

    def _new_rollout(self, spec: RolloutSpec) -> None:
        start = self.env_steps
        collect = self._collect_steps if spec.mode == "steps" else self._collect_episodes
        grid, bootstrap_obs = collect(spec)
        module = self.learner
        # values of every observation in one batched forward (the weights did not change
        # while collecting): V(s_t), and V of the observation each cut chain continues from
        obs = grid["obs"]
        rows = obs.shape[0] * obs.shape[1]
        values = module.rollout_values(
            np.concatenate([obs.reshape(rows, *obs.shape[2:]), bootstrap_obs])
        ).astype(np.float32, copy=False)
        grid["value"] = values[:rows].reshape(obs.shape[:2])
        boot = values[rows:]
        if spec.mode == "steps":  # the next row holds the next (or real final) observation
            grid["next_value"] = np.concatenate([grid["value"][1:], boot[None]])
        else:  # column j is episode j; it continues from its final observation only
            grid["next_value"] = grid["dones"] * boot[None, :]
        rollout = module.prepare_rollout({k: torch.from_numpy(v) for k, v in grid.items()})
        if spec.mode == "steps":
            adv, ret = gae(
                rewards=rollout["reward"],
                values=rollout["value"],
                next_values=rollout["next_value"],
                terminated=rollout["terminated"],
                dones=rollout["dones"],
                gamma=spec.gamma,
                lam=spec.gae_lambda,
            )
        else:
            ret = returns_to_go(
                rollout["reward"],
                dones=rollout["dones"],
                gamma=spec.gamma,
                bootstrap=rollout["next_value"] * (1.0 - rollout["terminated"]),
            )
            adv = ret.clone()
        rollout["advantage"], rollout["return"] = adv, ret
        rollout = module.finish_rollout(rollout)
        valid = rollout["valid"].reshape(-1)
        self.rollouts += 1
        self.epoch = self.minibatch = 0
        self.perm = None
        if not bool(valid.any()):  # only autoreset rows (tiny rollouts): nothing to learn
            self.batch = None
            return
        self.batch = {k: v.flatten(0, 1)[valid] for k, v in rollout.items() if k not in GRID_ONLY}
        self.meta = {"env_step": self.env_steps, "progress": start / self.total_env_steps}

    def _action_clip(self) -> Callable[[np.ndarray], np.ndarray] | None:
        """Clips sampled actions to a Box action space (what the env gets; the rollout
        keeps the sample); ``None`` for discrete actions."""
        space = self.action_space
        if not isinstance(space, gym.spaces.Box):
            return None
        low, high = space.low, space.high
        return lambda a: np.clip(a, low, high)

    def _collect_steps(self, spec: RolloutSpec) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """``num_steps`` vector steps of every env, continuing the running episodes.

        Returns the grid (without values) and the observation after the last step.
        """
        T, n = spec.num_steps, self.envs.num_envs
        actor, step = self.rollout_actor, self.envs.step
        clip = self._action_clip()
        current = np.asarray(self.obs)
        obs = np.empty((T, *current.shape), dtype=current.dtype)
        actions: np.ndarray | None = None
        log_prob = np.empty((T, n), dtype=np.float32)
        reward = np.empty((T, n), dtype=np.float32)
        raw_reward = reward  # the env's own rewards when it normalizes them (MuJoCo)
        terminated = np.empty((T, n), dtype=np.bool_)
        truncated = np.empty((T, n), dtype=np.bool_)
        for t in range(T):  # kept lean: everything per-row is vectorized below
            actor.env_step = self.env_steps
            a, lp = actor.act_with_log_prob(self.obs, first=self.first)
            if actions is None:
                actions = np.empty((T, *a.shape), dtype=a.dtype)
            obs[t], actions[t], log_prob[t] = self.obs, a, lp
            self.obs, r, terminated[t], truncated[t], info = step(a if clip is None else clip(a))
            # an env whose previous step ended its episode autoreset: it now sees a first obs
            self.first = self.prev_done if t == 0 else terminated[t - 1] | truncated[t - 1]
            reward[t] = r
            if "raw_reward" in info:
                if raw_reward is reward:
                    raw_reward = np.empty((T, n), dtype=np.float64)
                raw_reward[t] = info["raw_reward"]
            self.env_steps += n * self.step_multiplier
        assert actions is not None
        dones = terminated | truncated
        # a row right after an episode end only reset its env (NEXT_STEP autoreset)
        valid = np.empty((T, n), dtype=np.bool_)
        valid[0] = ~self.prev_done
        valid[1:] = ~dones[:-1]
        self.prev_done = dones[-1].copy()
        self._track_episodes(raw_reward, dones, valid)
        grid = self._grid(obs, actions, log_prob, reward, terminated, truncated, valid)
        return grid, np.asarray(self.obs)

    def _collect_episodes(self, spec: RolloutSpec) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """``spec.episodes`` whole episodes, in waves of ``num_envs`` that start together.

        Returns the grid (column ``j`` is episode ``j``) and each episode's final
        observation ``(episodes, *obs_shape)``.
        """
        n = self.envs.num_envs
        groups = self.rng.integers(2**31 - 1, size=spec.episodes // spec.group_size)
        seeds = np.repeat(groups, spec.group_size)
        waves = [self._collect_wave(seeds[w * n : (w + 1) * n]) for w in range(len(seeds) // n)]
        length = max(len(grid["reward"]) for grid, _ in waves)

        def pad(x: np.ndarray) -> np.ndarray:
            if len(x) == length:
                return x
            return np.concatenate([x, np.zeros((length - len(x), *x.shape[1:]), x.dtype)])

        grid = {k: np.concatenate([pad(g[k]) for g, _ in waves], axis=1) for k in waves[0][0]}
        return grid, np.concatenate([final for _, final in waves])

    def _collect_wave(self, seeds: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """One episode in each env, every env reset with its seed: a grid ``(T_wave, N)``
        and the envs' final observations ``(N, *obs_shape)``."""
        actor, envs = self.rollout_actor, self.envs
        clip = self._action_clip()
        n = envs.num_envs
        if self.backend == "native":  # one generator for all envs: one seed
            self.obs, _ = envs.reset(seed=int(seeds[0]))
        else:
            self.obs, _ = envs.reset(seed=[int(s) for s in seeds])
        self.prev_done = np.zeros(n, dtype=np.bool_)
        self.ep_return[:] = 0.0
        self.ep_length[:] = 0
        self.first = np.ones(n, dtype=np.bool_)
        active = np.ones(n, dtype=np.bool_)
        final_obs = np.zeros_like(np.asarray(self.obs))
        keys = ("obs", "action", "log_prob", "reward", "terminated", "truncated", "valid")
        rows: dict[str, list[np.ndarray]] = {k: [] for k in keys}
        raw_rewards: list[np.ndarray] = []
        while active.any():
            if len(rows["obs"]) >= MAX_WAVE_STEPS:
                raise ConfigError(
                    f"env.id={self.env_factory.id}: an episode ran past {MAX_WAVE_STEPS} "
                    "steps; episode-mode algorithms need episodes that end "
                    "(set env.max_episode_steps)"
                )
            actor.env_step = self.env_steps
            a, lp = actor.act_with_log_prob(self.obs, first=self.first)
            next_obs, r, te, tr, info = envs.step(a if clip is None else clip(a))
            self.first = self.prev_done  # autoreset after an episode end: a first obs
            self.prev_done = te | tr
            te, tr = te & active, tr & active
            done = te | tr
            for key, value in zip(
                keys,
                (self.obs, a, lp, np.where(active, r, 0.0), te, tr, active.copy()),
                strict=True,
            ):
                rows[key].append(value)
            raw_rewards.append(info.get("raw_reward", r))
            final_obs[done] = next_obs[done]
            self.env_steps += int(active.sum()) * self.step_multiplier
            active &= ~done
            self.obs = next_obs
        self.prev_done = np.ones(n, dtype=np.bool_)  # all ended (the next wave resets them)
        grid = {k: np.stack(v) for k, v in rows.items()}
        self._track_episodes(
            np.stack(raw_rewards), grid["terminated"] | grid["truncated"], grid["valid"]
        )
        return self._grid(*(grid[k] for k in keys)), final_obs

    @staticmethod
    def _grid(
        obs: np.ndarray,
        actions: np.ndarray,
        log_prob: np.ndarray,
        reward: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        valid: np.ndarray,
    ) -> dict[str, np.ndarray]:
        return {
            "obs": obs,
            "action": actions,
            "log_prob": log_prob.astype(np.float32, copy=False),
            "reward": reward.astype(np.float32, copy=False),
            "terminated": terminated.astype(np.float32),
            "truncated": truncated.astype(np.float32),
            "dones": (terminated | truncated).astype(np.float32),
            "valid": valid,
        }

    def _track_episodes(self, reward: np.ndarray, dones: np.ndarray, valid: np.ndarray) -> None:
        """``rollout/*`` episode statistics from a rollout's rows ``(T, N)``: the env's raw
        rewards (before any normalization), episode ends and valid (real) steps. Returns
        and lengths of episodes still running carry over to the next rollout."""
        metrics = self.metrics
        start = 0
        for t in np.flatnonzero(dones.any(axis=1)):  # rows where some episode ended
            self.ep_return += np.where(valid[start : t + 1], reward[start : t + 1], 0.0).sum(0)
            self.ep_length += valid[start : t + 1].sum(0)
            for i in np.flatnonzero(dones[t]):
                metrics.add("rollout/episode_return", float(self.ep_return[i]))
                metrics.add("rollout/episode_length", float(self.ep_length[i]))
                self.ep_return[i] = 0.0
                self.ep_length[i] = 0
                self.episodes += 1
            start = int(t) + 1
        self.ep_return += np.where(valid[start:], reward[start:], 0.0).sum(0)
        self.ep_length += valid[start:].sum(0)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        return {
            **self.stream_state(),
            "rollouts": self.rollouts,
            "perm_rng": self.perm_rng.get_state(),
            "batch": self.batch,
            "meta": dict(self.meta),
            "epoch": self.epoch,
            "minibatch": self.minibatch,
            "perm": self.perm,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        try:
            self.load_stream_state(state)
            self.rollouts = state["rollouts"]
            self.perm_rng.set_state(state["perm_rng"])
            self.batch = state["batch"]
            self.meta = dict(state["meta"])
            self.epoch = state["epoch"]
            self.minibatch = state["minibatch"]
            self.perm = state["perm"]
            self._shuffled = None
        except (KeyError, ValueError, TypeError, pickle.UnpicklingError) as e:
            raise self.checkpoint_error(e) from e
        self.loaded_state = True
