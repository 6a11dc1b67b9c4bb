"""Evaluation on separate envs, every ``trainer.eval_every`` env steps, with a fresh
evaluation actor each time (deterministic by default; ``trainer.eval_deterministic``)."""

from __future__ import annotations

from typing import Any

import lightning as L
import numpy as np

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


class EvalCallback(L.Callback):
    """Logs ``eval/return_mean``, ``eval/return_std`` and ``eval/episodes`` at env steps
    that cross a multiple of ``every``, and once more at the end of training.

    Owns the evaluation envs (separate instances, disjoint seeds) -- never the train envs.
    With ``stop_at_return`` set, training stops once an evaluation's mean return reaches it
    (like Stable-Baselines3's ``StopTrainingOnRewardThreshold``). ``deterministic=False``
    evaluates a sampled policy (as rl-baselines3-zoo does for Atari policy gradients).
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
    ) -> None:
        self.env_factory = env
        self.deterministic = deterministic
        self.stop_at_return = stop_at_return
        self.every = every
        self.episodes = episodes
        self.seed = seed
        self.last_eval_step = -1
        self.last: dict[str, float] | None = None

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

    def state_dict(self) -> dict[str, Any]:
        return {"last_eval_step": self.last_eval_step, "last": self.last}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.last_eval_step = state["last_eval_step"]
        self.last = state["last"]
