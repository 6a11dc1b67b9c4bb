"""Evaluation on separate envs, every ``trainer.eval_every`` env steps, with a fresh
evaluation actor each time (deterministic by default; ``trainer.eval_deterministic``), and
``checkpoints/best.ckpt``, the weights of the best evaluation so far (``trainer.keep_best``).
"""

from __future__ import annotations

import copy
import pickle
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from rlbench.callbacks.checkpoint import was_interrupted
from rlbench.data.protocol import datamodule_of
from rlbench.envs import EVAL_SEED_OFFSET, EnvFactory


def evaluate(
    module: Any,
    env_factory: EnvFactory,
    *,
    episodes: int,
    seed: int,
    deterministic: bool = True,
) -> np.ndarray:
    """Returns ``(episodes,)`` undiscounted returns of the evaluation policy.

    Episode ``j`` runs in env ``j`` of one vector env reset with ``seed + EVAL_SEED_OFFSET``
    (env ``j`` gets ``+ j``), played by a new evaluation actor (``module.make_actor(mode=
    "eval")``, its sampling generator, if any, seeded from ``seed``), so an evaluation is a
    pure function of the policy weights: there is no evaluation state to checkpoint,
    resumed runs evaluate identically, and the training actor is never touched.
    """
    envs = env_factory.make(num_envs=episodes)
    actor = module.make_actor(
        num_envs=episodes, mode="eval", deterministic=deterministic, seed=seed + EVAL_SEED_OFFSET
    )
    try:
        obs, _ = envs.reset(seed=seed + EVAL_SEED_OFFSET)
        returns = np.zeros(episodes, dtype=np.float64)
        running = np.ones(episodes, dtype=np.bool_)
        first = np.ones(episodes, dtype=np.bool_)
        ended = np.zeros(episodes, dtype=np.bool_)
        while running.any():
            actions = actor.act(obs, first=first)
            obs, reward, terminated, truncated, _ = envs.step(actions)
            returns += np.where(running, reward, 0.0)
            first, ended = ended, terminated | truncated  # NEXT_STEP autoreset
            running &= ~ended
        return returns
    finally:
        envs.close()


def _cpu_copy(state: dict[str, Any]) -> dict[str, Any]:
    """A copy of a ``state_dict`` on the CPU (tensors; other values, such as a noisy layer's
    generator state in ``_extra_state``, deep-copied)."""
    return {
        k: v.detach().to("cpu", copy=True) if isinstance(v, torch.Tensor) else copy.deepcopy(v)
        for k, v in state.items()
    }


class TrainingEnvs:
    """The DataModule's current training vector env, as evaluation env factories ask for it
    (``EnvFactory.for_evaluation(training_envs=...)``: MuJoCo observation moments).

    Remembers whether a factory ever asked (``used``): only then does a best checkpoint
    also keep the training envs (pickled), so that the evaluation can be played again with
    the statistics of that moment.
    """

    def __init__(self, datamodule: Any) -> None:
        self.datamodule = datamodule
        self.used = False

    def __call__(self) -> Any:
        self.used = True
        return getattr(self.datamodule, "envs", None)


class EvalCallback(L.Callback):
    """Logs ``eval/return_mean``, ``eval/return_std`` and ``eval/episodes`` at env steps
    that cross a multiple of ``every``, and once more at the end of training.

    Owns the evaluation envs (separate instances, disjoint seeds) -- never the train envs.
    With ``stop_at_return`` set, training stops once an evaluation's mean return reaches it
    (like Stable-Baselines3's ``StopTrainingOnRewardThreshold``). ``deterministic=False``
    evaluates a sampled policy (as rl-baselines3-zoo does for Atari policy gradients).

    Best evaluation: ``best`` is the first evaluation with the highest mean return so far
    (``env_step`` and its ``eval/*`` values; a tie keeps the earlier one). With
    ``best_path`` set (``trainer.keep_best``), each new best also writes the module's
    weights to that file atomically (``best_checkpoint``), together with the training envs
    where the evaluation envs take statistics from them (``training_envs``). The best
    weights are part of this callback's checkpointed state, and the file is written again
    when a run resumes, so it always belongs to the run's own history, even when a crash
    came between a new best and the next ``last.ckpt``.
    """

    def __init__(
        self,
        *,
        env: EnvFactory,
        every: int,
        episodes: int,
        seed: int,
        stop_at_return: float | None = None,
        deterministic: bool = True,
        best_path: str | Path | None = None,
        training_envs: TrainingEnvs | None = None,
    ) -> None:
        self.env_factory = env
        self.deterministic = deterministic
        self.stop_at_return = stop_at_return
        self.every = every
        self.episodes = episodes
        self.seed = seed
        self.best_path = Path(best_path) if best_path is not None else None
        self.training_envs = training_envs
        self.last_eval_step = -1
        self.last: dict[str, float] | None = None
        self.best: dict[str, float] | None = None  # {"env_step", "eval/return_mean", ...}
        self._best_weights: dict[str, torch.Tensor] | None = None
        self._best_envs: bytes | None = None

    @property
    def state_key(self) -> str:
        return "EvalCallback"

    def run(self, trainer: L.Trainer, module: Any) -> None:
        env_step = datamodule_of(trainer).env_steps
        returns = evaluate(
            module,
            self.env_factory,
            episodes=self.episodes,
            seed=self.seed,
            deterministic=self.deterministic,
        )
        self.last = {
            "eval/return_mean": float(returns.mean()),
            "eval/return_std": float(returns.std()),
            "eval/episodes": float(len(returns)),
        }
        self.last_eval_step = env_step
        for logger in trainer.loggers:
            logger.log_metrics(self.last, step=env_step)
        if self.best is None or self.last["eval/return_mean"] > self.best["eval/return_mean"]:
            self.new_best(module, env_step=env_step)
        if self.stop_at_return is not None and self.last["eval/return_mean"] >= self.stop_at_return:
            trainer.should_stop = True

    def on_train_batch_end(self, trainer: L.Trainer, module: Any, *args: Any) -> None:
        env_step = datamodule_of(trainer).env_steps
        if self.every > 0 and env_step // self.every > max(self.last_eval_step, 0) // self.every:
            self.run(trainer, module)

    def on_train_end(self, trainer: L.Trainer, module: Any) -> None:
        if was_interrupted(trainer):
            return
        if self.last_eval_step != datamodule_of(trainer).env_steps:
            self.run(trainer, module)

    # ------------------------------------------------------------------ best
    def new_best(self, module: Any, *, env_step: int) -> None:
        """Record the evaluation just run (``last``) as the best; with ``best_path``, keep
        the weights it evaluated and write them."""
        assert self.last is not None
        self.best = {"env_step": float(env_step), **self.last}
        if self.best_path is None:
            return
        # never keep weights trained on a non-finite loss (as last.ckpt never does)
        module.assert_finite(env_step=env_step)
        self._best_weights = _cpu_copy(module.state_dict())
        envs = self.training_envs
        self._best_envs = pickle.dumps(envs()) if envs is not None and envs.used else None
        self.write_best()

    def best_checkpoint(self) -> dict[str, Any]:
        """The content of ``best.ckpt``: ``state_dict`` (the module's weights),
        ``rlbench_best`` (the evaluation: ``env_step``, ``eval_return_mean``,
        ``eval_return_std``, ``eval_episodes``, ``eval_seed``, ``eval_deterministic``) and
        ``eval_envs`` (the pickled training envs evaluation envs took statistics from, or
        ``None``). Loadable with ``torch.load(weights_only=True)``."""
        assert self.best is not None and self._best_weights is not None
        return {
            "state_dict": self._best_weights,
            "rlbench_best": {
                "env_step": int(self.best["env_step"]),
                "eval_return_mean": self.best["eval/return_mean"],
                "eval_return_std": self.best["eval/return_std"],
                "eval_episodes": int(self.best["eval/episodes"]),
                "eval_seed": self.seed,
                "eval_deterministic": self.deterministic,
            },
            "eval_envs": self._best_envs,
        }

    def write_best(self) -> None:
        """Write ``best_checkpoint()`` to ``best_path`` atomically (as ``last.ckpt``)."""
        from rlbench.logging import AtomicCheckpointIO

        assert self.best_path is not None
        AtomicCheckpointIO().save_checkpoint(self.best_checkpoint(), self.best_path)

    def on_train_start(self, trainer: L.Trainer, module: Any) -> None:
        # resumed: the file may hold a best found after the checkpoint (then lost by a crash)
        if self.best_path is not None and self._best_weights is not None:
            self.write_best()

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        return {
            "last_eval_step": self.last_eval_step,
            "last": self.last,
            "best": self.best,
            "best_weights": self._best_weights,
            "best_envs": self._best_envs,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.last_eval_step = state["last_eval_step"]
        self.last = state["last"]
        # checkpoints from before best tracking have none of these
        self.best = state.get("best")
        self._best_weights = state.get("best_weights")
        self._best_envs = state.get("best_envs")
