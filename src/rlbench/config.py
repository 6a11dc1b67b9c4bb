"""Structured configs: one dataclass per config group, registered in Hydra's ConfigStore.

The yaml files under ``conf/`` extend these schemas, so a misspelt key (``algo.gama=0.9``)
fails in Hydra with a message naming the key, and values are type-checked on override.
``validate`` adds the range checks a schema cannot express, each a one-line ConfigError.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig

from rlbench.errors import ConfigError


@dataclass
class EnvConfig:
    _target_: str = "rlbench.envs.EnvFactory"
    id: str = MISSING
    name: str = MISSING
    num_envs: int = 1
    vectorization: str = "auto"
    max_episode_steps: int | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    score_range: list[float] | None = None


@dataclass
class NetworkConfig:
    _target_: str = "rlbench.networks.MLP"
    _partial_: bool = True
    hidden: list[int] = field(default_factory=lambda: [120, 84])
    activation: str = "relu"


@dataclass
class BufferConfig:
    _target_: str = "rlbench.buffers.TrajectoryReplayBuffer"
    _partial_: bool = True
    capacity: int = 10_000
    n_step: int = 1
    checkpoint: bool = True


@dataclass
class SamplerConfig:
    _target_: str = MISSING


@dataclass
class EpsilonGreedyConfig(SamplerConfig):
    _target_: str = "rlbench.samplers.EpsilonGreedy"
    start: float = 1.0
    end: float = 0.05
    decay_steps: int = 25_000


@dataclass
class GreedyConfig(SamplerConfig):
    _target_: str = "rlbench.samplers.Greedy"


@dataclass
class BoltzmannConfig(SamplerConfig):
    _target_: str = "rlbench.samplers.Boltzmann"
    temperature: float = 1.0


@dataclass
class OptimizerConfig:
    _target_: str = "torch.optim.Adam"
    _partial_: bool = True
    eps: float = 1e-8
    fused: bool = True


@dataclass
class DQNConfig:
    _target_: str = "rlbench.algos.dqn.DQN"
    name: str = "dqn"
    lr: float = 2.5e-4
    gamma: float = 0.99
    double: bool = False
    target_update_every: int = 500
    tau: float = 1.0
    batch_size: int = 128
    learning_starts: int = 10_000
    train_every: int = 10
    gradient_steps: int = 1
    max_grad_norm: float = 10.0
    loss: str = "huber"
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)


@dataclass
class TrainerConfig:
    accelerator: str = "cpu"
    eval_every: int = 10_000
    eval_episodes: int = 10
    checkpoint_every: int = 10_000
    log_every: int = 1_000
    progress_bar: bool = True
    torch_threads: int = 1
    stop_at_eval_return: float | None = None


@dataclass
class LoggerConfig:
    """Extra logger beside ``metrics.csv`` (always written); ``_target_: null`` for none."""

    _target_: str | None = None
    save_dir: str = "."
    name: str = "tensorboard"
    version: str = ""
    default_hp_metric: bool = False


@dataclass
class TrainConfig:
    algo: Any = MISSING
    env: EnvConfig = MISSING
    network: NetworkConfig = MISSING
    buffer: BufferConfig = MISSING
    sampler: Any = MISSING
    trainer: TrainerConfig = MISSING
    logger: LoggerConfig = MISSING
    seed: int = 0
    total_env_steps: int = 50_000
    resume: str | None = None
    tags: list[str] = field(default_factory=list)


def register_configs() -> None:
    """Register the schemas the yaml files in ``conf/`` extend (``<group>/schema_*``)."""
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)
    cs.store(group="env", name="schema", node=EnvConfig)
    cs.store(group="network", name="schema_mlp", node=NetworkConfig)
    cs.store(group="buffer", name="schema_replay", node=BufferConfig)
    cs.store(group="sampler", name="schema_epsilon_greedy", node=EpsilonGreedyConfig)
    cs.store(group="sampler", name="schema_greedy", node=GreedyConfig)
    cs.store(group="sampler", name="schema_boltzmann", node=BoltzmannConfig)
    cs.store(group="algo", name="schema_dqn", node=DQNConfig)
    cs.store(group="trainer", name="schema", node=TrainerConfig)
    cs.store(group="logger", name="schema", node=LoggerConfig)


def _positive(cfg: DictConfig, *keys: str, allow_zero: bool = False) -> None:
    from omegaconf import OmegaConf

    for key in keys:
        value = OmegaConf.select(cfg, key)
        if value is None:
            continue
        if value < 0 or (value == 0 and not allow_zero):
            bound = ">= 0" if allow_zero else "> 0"
            raise ConfigError(f"{key}={value}: must be {bound}")


def validate(cfg: DictConfig) -> None:
    """Range checks that types cannot express; raise a one-line ConfigError."""
    _positive(cfg, "total_env_steps", "env.num_envs", "buffer.capacity", "buffer.n_step")
    _positive(cfg, "trainer.eval_episodes", "trainer.log_every", "trainer.torch_threads")
    _positive(cfg, "trainer.eval_every", "trainer.checkpoint_every", allow_zero=True)
    _positive(cfg, "algo.lr", "algo.batch_size", "algo.train_every", "algo.gradient_steps")
    _positive(cfg, "algo.target_update_every")
    _positive(cfg, "algo.learning_starts", allow_zero=True)
    gamma = cfg.algo.get("gamma")
    if gamma is not None and not 0.0 <= gamma <= 1.0:
        raise ConfigError(f"algo.gamma={gamma}: must be in [0, 1]")
    tau = cfg.algo.get("tau")
    if tau is not None and not 0.0 < tau <= 1.0:
        raise ConfigError(f"algo.tau={tau}: must be in (0, 1]")
    loss = cfg.algo.get("loss")
    if loss is not None and loss not in ("huber", "mse"):
        raise ConfigError(f"algo.loss='{loss}': allowed huber, mse")
    if cfg.buffer.capacity < cfg.env.num_envs * 2:
        raise ConfigError(
            f"buffer.capacity={cfg.buffer.capacity}: must hold at least 2 steps per env "
            f"(env.num_envs={cfg.env.num_envs})"
        )
