"""Structured configs: one dataclass per config group, registered in Hydra's ConfigStore.

The yaml files under ``conf/`` extend these schemas, so a misspelt key (``algo.gama=0.9``)
fails in Hydra with a message naming the key, and values are type-checked on override.
``validate`` adds the range checks a schema cannot express, each a one-line ConfigError.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import II, MISSING, DictConfig

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
    normalize_obs: bool = False
    normalize_reward: bool = False
    reward_gamma: float = 0.99
    clip_obs: float = 10.0
    clip_reward: float = 10.0
    norm_epsilon: float = 1e-8


@dataclass
class AtariEnvConfig(EnvConfig):
    """``rlbench.envs.atari.AtariFactory``: ale-py's native vector env (``env=atari``)."""

    _target_: str = "rlbench.envs.atari.AtariFactory"
    id: str = "ALE/${.game}"
    name: str = "${.game}"
    num_envs: int = 8
    vectorization: str = "native"  # ale-py's own vector env (threads in C++)
    game: str = "breakout"
    frame_skip: int = 4
    frame_stack: int = 4
    screen_size: int = 84
    noop_max: int = 30
    repeat_action_probability: float = 0.25
    episodic_life: bool = False
    full_action_space: bool = False
    max_episode_frames: int = 108_000
    fire_reset: bool = True
    fire_on_life_loss: bool = True
    num_threads: int = 0
    resume_replay: bool = True


@dataclass
class MinAtarEnvConfig(EnvConfig):
    _target_: str = "rlbench.envs.minatar.MinAtarFactory"


@dataclass
class MuJoCoEnvConfig(EnvConfig):
    _target_: str = "rlbench.envs.mujoco.MuJoCoFactory"


@dataclass
class DMCEnvConfig(EnvConfig):
    """``rlbench.envs.dmc.DMCFactory``: a DeepMind Control Suite task (``env=dmc``)."""

    _target_: str = "rlbench.envs.dmc.DMCFactory"
    id: str = "dm_control/${.task}-v0"
    name: str = "${.task}"
    task: str = "cheetah-run"
    action_repeat: int = 1
    rescale_actions: bool = True
    score_range: list[float] | None = field(default_factory=lambda: [0.0, 1000.0])


@dataclass
class NetworkConfig:
    _target_: str = "rlbench.networks.MLP"
    _partial_: bool = True
    hidden: list[int] = field(default_factory=lambda: [120, 84])
    activation: str = "relu"
    # Q-head options (read by Q-learning modules; split off before the encoder is built)
    dueling: bool = False
    noisy: bool = False
    sigma0: float = 0.5
    head_hidden: int = 0  # width of each head stream's hidden layer; 0: none


@dataclass
class NatureCNNConfig:
    _target_: str = "rlbench.networks.cnn.NatureCNN"
    _partial_: bool = True
    hidden: int = 512  # 0 (every CNN): no fully connected layer, the flattened conv maps
    input_scale: float = 1.0 / 255.0
    dueling: bool = False  # Q-head options, as in NetworkConfig
    noisy: bool = False
    sigma0: float = 0.5
    head_hidden: int = 0


@dataclass
class DataEfficientCNNConfig:
    _target_: str = "rlbench.networks.cnn.DataEfficientCNN"
    _partial_: bool = True
    hidden: int = 256
    input_scale: float = 1.0 / 255.0
    dueling: bool = False  # Q-head options, as in NetworkConfig
    noisy: bool = False
    sigma0: float = 0.5
    head_hidden: int = 0


@dataclass
class ImpalaCNNConfig:
    _target_: str = "rlbench.networks.cnn.ImpalaCNN"
    _partial_: bool = True
    channels: list[int] = field(default_factory=lambda: [16, 32, 32])
    hidden: int = 256
    input_scale: float = 1.0 / 255.0
    dueling: bool = False
    noisy: bool = False
    sigma0: float = 0.5
    head_hidden: int = 0


@dataclass
class MinAtarCNNConfig:
    _target_: str = "rlbench.networks.cnn.MinAtarCNN"
    _partial_: bool = True
    channels: int = 16
    hidden: int = 128
    input_scale: float = 1.0
    dueling: bool = False
    noisy: bool = False
    sigma0: float = 0.5
    head_hidden: int = 0


@dataclass
class AutoNetworkConfig(NetworkConfig):
    """``network=auto``: MLP (``hidden``, ``activation``) for flat observations, Nature CNN
    for Atari-sized images, the MinAtar CNN for small ones."""

    _target_: str = "rlbench.networks.cnn.auto_encoder"


@dataclass
class BufferConfig:
    _target_: str = "rlbench.buffers.TrajectoryReplayBuffer"
    _partial_: bool = True
    capacity: int = 50_000
    n_step: int = 1
    checkpoint: bool = True
    # store single frames of stacked observations (Atari); follows env.frame_stack
    frame_stack: int = II("oc.select:env.frame_stack,1")
    # per-step reward clipping for learning; follows algo.clip_rewards (returns log unclipped)
    clip_rewards: bool = II("oc.select:algo.clip_rewards,false")


@dataclass
class PrioritizedBufferConfig(BufferConfig):
    _target_: str = "rlbench.buffers.prioritized.PrioritizedReplayBuffer"
    alpha: float = 0.5
    beta0: float = 0.4
    beta_steps: int = MISSING  # conf/buffer/prioritized.yaml: ${total_env_steps}
    beta_end: float = 1.0
    priority_eps: float = 1e-6
    sequence_length: int | None = None  # null: n-step transitions; L: windows of L steps


@dataclass
class SamplerConfig:
    _target_: str = MISSING


@dataclass
class EpsilonGreedyConfig(SamplerConfig):
    _target_: str = "rlbench.samplers.EpsilonGreedy"
    start: float = 1.0
    end: float = 0.05
    decay_steps: int = 25_000
    # when set, wins over decay_steps: decay over this fraction of total_env_steps
    decay_fraction: float | None = None


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
    lr: float = 6.3e-4
    gamma: float = 0.99
    double: bool = False
    target_update_every: int = 4
    tau: float = 0.01
    batch_size: int = 128
    learning_starts: int = 1_000
    train_every: int = 4
    gradient_steps: int = 1
    max_grad_norm: float = 10.0
    loss: str = "huber"
    distributional: bool = False
    num_atoms: int = 51
    v_min: float = -10.0
    v_max: float = 10.0
    clip_rewards: bool = False  # learn from rewards clipped to [-1, 1] (Atari protocol)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)


@dataclass
class ClippedOptimizerConfig(OptimizerConfig):
    """An optimizer of a module with several: its own ``lr`` and gradient clipping."""

    lr: float = 3e-4
    max_grad_norm: float = 0.0  # global-norm clipping of this optimizer's parameters; 0: off


@dataclass
class SACConfig:
    """``rlbench.algos.sac.SAC``; defaults follow CleanRL's ``sac_continuous_action.py``."""

    _target_: str = "rlbench.algos.sac.SAC"
    name: str = "sac"
    gamma: float = 0.99
    tau: float = 0.005
    target_update_every: int = 1
    policy_frequency: int = 2
    alpha: float = 0.2  # the fixed temperature (autotune=false)
    alpha_init: float = 1.0  # where autotune starts (CleanRL and SB3: log alpha = 0)
    autotune: bool = True
    target_entropy: float | None = None  # null: -dim(A)
    log_std_min: float = -5.0
    log_std_max: float = 2.0
    batch_size: int = 256
    learning_starts: int = 5_000
    train_every: int = 1
    gradient_steps: int = 1
    actor_optimizer: ClippedOptimizerConfig = field(
        default_factory=lambda: ClippedOptimizerConfig(lr=3e-4)
    )
    critic_optimizer: ClippedOptimizerConfig = field(
        default_factory=lambda: ClippedOptimizerConfig(lr=1e-3)
    )
    alpha_optimizer: ClippedOptimizerConfig = field(
        default_factory=lambda: ClippedOptimizerConfig(lr=1e-3)
    )


@dataclass
class TDMPC2Config:
    """``rlbench.algos.tdmpc2.TDMPC2``; defaults follow the authors' ``tdmpc2/config.yaml``."""

    _target_: str = "rlbench.algos.tdmpc2.TDMPC2"
    name: str = "tdmpc2"
    size: str = "1M"  # the authors' presets: 1M, 5M, 19M, 48M, 317M
    enc_dim: int | None = None  # null: from the size preset (and the next four)
    mlp_dim: int | None = None
    latent_dim: int | None = None
    num_enc_layers: int | None = None
    num_q: int | None = None
    simnorm_dim: int = 8
    dropout: float = 0.01
    num_bins: int = 101
    vmin: float = -10.0
    vmax: float = 10.0
    log_std_min: float = -10.0
    log_std_max: float = 2.0
    entropy_coef: float = 1e-4
    horizon: int = 3
    rho: float = 0.5
    consistency_coef: float = 20.0
    reward_coef: float = 0.1
    value_coef: float = 0.1
    episodic: bool = False  # a termination head (the authors' episodic mode)
    termination_coef: float = 1.0
    tau: float = 0.01
    discount: float | None = None  # null: from episode_length
    episode_length: int = 1000
    discount_denom: float = 5.0
    discount_min: float = 0.95
    discount_max: float = 0.995
    iterations: int = 6
    num_samples: int = 512
    num_elites: int = 64
    num_pi_trajs: int = 24
    temperature: float = 0.5
    min_std: float = 0.05
    max_std: float = 2.0
    batch_size: int = 256
    learning_starts: int | None = None  # null: max(1000, 5 * episode_length)
    initial_updates: int | None = None  # null: as many as learning_starts
    train_every: int = 1
    gradient_steps: int = 1
    enc_lr_scale: float = 0.3
    optimizer: ClippedOptimizerConfig = field(
        default_factory=lambda: ClippedOptimizerConfig(lr=3e-4, max_grad_norm=20.0)
    )
    pi_optimizer: ClippedOptimizerConfig = field(
        default_factory=lambda: ClippedOptimizerConfig(lr=3e-4, eps=1e-5, max_grad_norm=20.0)
    )


@dataclass
class TDMPCConfig:
    """``rlbench.algos.tdmpc.TDMPC``; defaults follow the authors' ``cfgs/default.yaml``
    (nicklashansen/tdmpc), schedules in env steps."""

    _target_: str = "rlbench.algos.tdmpc.TDMPC"
    name: str = "tdmpc"
    enc_dim: int = 256
    mlp_dim: int = 512
    latent_dim: int = 50
    horizon: int = 5
    rho: float = 0.5
    consistency_coef: float = 2.0
    reward_coef: float = 0.5
    value_coef: float = 0.1
    loss_clamp: float = 1e4
    tau: float = 0.01
    target_update_every: int = 2
    discount: float = 0.99
    iterations: int = 6
    num_samples: int = 512
    num_elites: int = 64
    mixture_coef: float = 0.05
    temperature: float = 0.5
    momentum: float = 0.1
    min_std: float = 0.05
    max_std: float = 2.0
    std_start: float = 0.5
    std_schedule_steps: int = 25_000
    horizon_schedule_steps: int = 25_000
    policy_noise_clip: float = 0.3
    batch_size: int = 512
    learning_starts: int = 5000
    initial_updates: int | None = None  # null: as many as learning_starts
    train_every: int = 1
    gradient_steps: int = 1
    optimizer: ClippedOptimizerConfig = field(
        default_factory=lambda: ClippedOptimizerConfig(lr=1e-3, max_grad_norm=10.0)
    )
    pi_optimizer: ClippedOptimizerConfig = field(
        default_factory=lambda: ClippedOptimizerConfig(lr=1e-3, max_grad_norm=10.0)
    )


@dataclass
class PolicyGradientConfig:
    """Keys shared by the on-policy family (``rlbench.algos.reinforce.PolicyGradientModule``)."""

    _target_: str = MISSING
    name: str = MISSING
    lr: float = 1e-3
    gamma: float = 0.99
    ent_coef: float = 0.0
    max_grad_norm: float = 0.5
    anneal_lr: bool = False
    orthogonal_init: bool = True
    init_log_std: float = 0.0
    optimizer: OptimizerConfig = field(default_factory=lambda: OptimizerConfig(eps=1e-5))


@dataclass
class ReinforceConfig(PolicyGradientConfig):
    _target_: str = "rlbench.algos.reinforce.Reinforce"
    name: str = "reinforce"
    episodes: int = 8
    baseline: bool = True
    normalize_returns: bool = True
    vf_coef: float = 0.5
    shared_encoder: bool = False


@dataclass
class RLOOConfig(PolicyGradientConfig):
    _target_: str = "rlbench.algos.rloo.RLOO"
    name: str = "rloo"
    episodes: int = 16
    group_size: int = 4
    credit: str = "step"
    normalize_advantages: bool = False


@dataclass
class ReinforcePPConfig(PolicyGradientConfig):
    _target_: str = "rlbench.algos.reinforce_pp.ReinforcePP"
    name: str = "reinforce_pp"
    episodes: int = 8
    epochs: int = 4
    minibatches: int = 4
    clip_coef: float = 0.2
    kl_coef: float = 0.0


@dataclass
class PPOConfig(PolicyGradientConfig):
    _target_: str = "rlbench.algos.ppo.PPO"
    name: str = "ppo"
    lr: float = 2.5e-4
    gae_lambda: float = 0.95
    num_steps: int = 128
    epochs: int = 4
    minibatches: int = 4
    clip_coef: float = 0.2
    clip_value_loss: bool = True
    normalize_advantages: bool = True
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    anneal_lr: bool = True
    anneal_clip: bool = False
    shared_encoder: bool = False


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
    # evaluate the deterministic policy (greedy / the mode), or sample from it
    eval_deterministic: bool = True
    # also keep checkpoints/best.ckpt: the weights of the best evaluation so far
    keep_best: bool = True


@dataclass
class LoggerConfig:
    """Extra logger beside ``metrics.csv`` (always written); ``_target_: null`` for none."""

    _target_: str | None = None
    save_dir: str = "."
    name: str = "tensorboard"
    version: str = ""
    default_hp_metric: bool = False


@dataclass
class WandbLoggerConfig:
    """Lightning's WandbLogger (``logger=wandb``, optional extra ``wandb``). The API key is read
    by wandb from ``WANDB_API_KEY`` only; it has no config key, so it never reaches disk."""

    _target_: str = "lightning.pytorch.loggers.WandbLogger"
    save_dir: str = "."
    project: str = "rlbench"
    entity: str | None = None
    group: str | None = None
    name: str | None = None
    tags: list[str] = field(default_factory=list)
    offline: bool = False
    log_model: bool = False


@dataclass
class VideoConfig:
    """Videos of evaluation episodes (``callbacks/video.py``), written to ``videos/*.mp4``."""

    enabled: bool = False
    every: int = 0  # env steps between recordings (0: only at the end of training)
    episodes: int = 1  # episodes per recording
    max_steps: int = 10_000  # env steps per recorded episode at most
    tensorboard: bool = False  # also log the clip to TensorBoard (logger=tensorboard)


@dataclass
class TrainConfig:
    algo: Any = MISSING
    env: EnvConfig = MISSING
    network: Any = MISSING  # NetworkConfig or an image encoder's config
    buffer: BufferConfig = MISSING
    sampler: Any = MISSING
    trainer: TrainerConfig = MISSING
    logger: Any = MISSING  # LoggerConfig or WandbLoggerConfig
    video: VideoConfig = field(default_factory=VideoConfig)
    seed: int = 0
    total_env_steps: int = 50_000
    resume: str | None = None
    tags: list[str] = field(default_factory=list)
    variant: str | None = None  # label of a sweep variant (reports group by it when set)
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)  # experiment=rainbow_ablation


def register_configs() -> None:
    """Register the schemas the yaml files in ``conf/`` extend.

    Each is a root config named ``schema_<group>[_<kind>]`` (``schema_algo_dqn``,
    ``schema_env_atari``; ``schema_train`` for ``train.yaml``), never an option of the group
    itself, so ``rlbench --help`` and a mistyped ``algo=...`` list only what users can pick.
    ``conf/<group>/<name>.yaml`` extends one with ``- /schema_<group>_<kind>`` in its defaults
    list; a root config included from a group file lands in that file's package.
    """
    cs = ConfigStore.instance()
    cs.store(name="schema_train", node=TrainConfig)
    cs.store(name="schema_env", node=EnvConfig)
    cs.store(name="schema_env_atari", node=AtariEnvConfig)
    cs.store(name="schema_env_minatar", node=MinAtarEnvConfig)
    cs.store(name="schema_env_mujoco", node=MuJoCoEnvConfig)
    cs.store(name="schema_env_dmc", node=DMCEnvConfig)
    cs.store(name="schema_network_nature_cnn", node=NatureCNNConfig)
    cs.store(name="schema_network_der_cnn", node=DataEfficientCNNConfig)
    cs.store(name="schema_network_impala_cnn", node=ImpalaCNNConfig)
    cs.store(name="schema_network_minatar_cnn", node=MinAtarCNNConfig)
    cs.store(name="schema_network_auto", node=AutoNetworkConfig)
    cs.store(name="schema_network_mlp", node=NetworkConfig)
    cs.store(name="schema_buffer_replay", node=BufferConfig)
    cs.store(name="schema_buffer_prioritized", node=PrioritizedBufferConfig)
    cs.store(name="schema_sampler_epsilon_greedy", node=EpsilonGreedyConfig)
    cs.store(name="schema_sampler_greedy", node=GreedyConfig)
    cs.store(name="schema_sampler_boltzmann", node=BoltzmannConfig)
    cs.store(name="schema_algo_dqn", node=DQNConfig)
    cs.store(name="schema_algo_reinforce", node=ReinforceConfig)
    cs.store(name="schema_algo_rloo", node=RLOOConfig)
    cs.store(name="schema_algo_reinforce_pp", node=ReinforcePPConfig)
    cs.store(name="schema_algo_ppo", node=PPOConfig)
    cs.store(name="schema_algo_sac", node=SACConfig)
    cs.store(name="schema_algo_tdmpc2", node=TDMPC2Config)
    cs.store(name="schema_algo_tdmpc", node=TDMPCConfig)
    cs.store(name="schema_trainer", node=TrainerConfig)
    cs.store(name="schema_logger", node=LoggerConfig)
    cs.store(name="schema_logger_wandb", node=WandbLoggerConfig)


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
    variants = cfg.get("variants")
    if variants and cfg.get("variant") not in variants:  # before the keys that read them
        raise ConfigError(f"variant={cfg.get('variant')}: allowed {', '.join(variants)}")
    _positive(cfg, "total_env_steps", "env.num_envs", "buffer.capacity", "buffer.n_step")
    _positive(cfg, "trainer.eval_episodes", "trainer.log_every", "trainer.torch_threads")
    _positive(cfg, "trainer.eval_every", "trainer.checkpoint_every", allow_zero=True)
    _positive(cfg, "algo.lr", "algo.batch_size", "algo.train_every", "algo.gradient_steps")
    _positive(cfg, "algo.target_update_every")
    _positive(cfg, "algo.learning_starts", allow_zero=True)
    _positive(cfg, "video.episodes", "video.max_steps")
    _positive(cfg, "video.every", allow_zero=True)
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
