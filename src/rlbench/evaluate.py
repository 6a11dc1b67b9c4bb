"""Use what a run trained: ``rlbench-eval``, ``rlbench.load`` and exported policies.

rlbench-eval <run dir> [--episodes N] [--seed S] [--checkpoint last|best] [--video]
             [--env-override KEY=VALUE ...] [--deterministic | --stochastic]
rlbench-eval <run dir> [--checkpoint last|best] --export policy.pt

``rlbench-eval`` rebuilds the run's algorithm from its saved config (``.hydra/config.yaml``)
for the env's spaces, loads a checkpoint's weights (``checkpoints/last.ckpt`` by default,
``best.ckpt`` with ``--checkpoint best``) and plays episodes exactly as the training run's
``EvalCallback`` does: ``callbacks.evaluation.evaluate`` on envs made by
``env.for_evaluation(...)``, episode ``j`` seeded ``seed + EVAL_SEED_OFFSET + j``, a fresh
evaluation actor (deterministic as the run's ``trainer.eval_deterministic`` says, unless
``--deterministic`` / ``--stochastic``). With the run's own seed and episode count (the
defaults) it reproduces the run's evaluation of those weights to the last bit.

Evaluation envs may take statistics from the training envs (MuJoCo observation
normalization: ``for_evaluation(training_envs=...)``). Those are the training envs pickled
in the checkpoint (``last.ckpt``: the DataModule state; ``best.ckpt``: ``eval_envs``,
saved with the best weights), unpickled only when the env factory asks for them -- never
for Atari or DMC, whose pickles replay or rebuild whole simulators.

The results go to ``<run dir>/eval/<time>.json`` (mp4s beside it with ``--video``); the
run's training state, ``results.json`` and ``metrics.csv`` are never touched.

``rlbench.load(run_dir | policy.pt)`` returns a ``Policy``: the trained agent as an actor
for plain Gymnasium envs (``policy.act(obs)`` for one env, ``policy.reset()`` at a new
episode; ``act(obs, first=...)`` for a batch). It applies the run's observation
normalization itself, so its envs are the raw ones.

``--export FILE`` writes the weights the evaluation actor reads and nothing else (no target
networks or critics it does not read, no optimizer, replay or DataModule state), the
resolved config, the env's spaces (so loading builds no env) and the observation
normalization; ``torch.load(FILE, weights_only=True)`` reads it. Which weights the actor
reads is measured, not declared: the actors' calls are traced (``acting_state_keys``), and
the result is checked by acting without the rest.

User errors (not a run dir, no or a corrupt checkpoint, weights that do not fit the
network an ``--env-override`` asks for) print ``error: ...`` in one line; exit status 2.
"""

from __future__ import annotations

import argparse
import copy
import json
import pickle
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
from omegaconf import DictConfig, OmegaConf

from rlbench.errors import CheckpointError, ConfigError, RLBenchError

if TYPE_CHECKING:
    from rlbench.envs import EnvFactory

__all__ = [
    "Policy",
    "acting_state_keys",
    "evaluate_run",
    "export_policy",
    "load",
    "main",
    "space_from_plain",
    "space_to_plain",
]

CHECKPOINTS = ("last", "best")
#: ``format`` of an exported policy file (``--export``), and its version.
POLICY_FORMAT = "rlbench-policy"
POLICY_VERSION = 1
_UNSET = object()


# ------------------------------------------------------------------ run dirs
def read_run_config(run_dir: Path) -> DictConfig:
    """The composed config a run saved (``.hydra/config.yaml``)."""
    if not run_dir.is_dir():
        raise CheckpointError(f"{run_dir}: no such run directory")
    path = run_dir / ".hydra" / "config.yaml"
    if not path.is_file():
        raise CheckpointError(f"{run_dir}: not a run dir (no .hydra/config.yaml)")
    try:
        cfg = OmegaConf.load(path)
    except Exception as e:
        raise CheckpointError(f"{path}: unreadable config: {_first_line(e)}") from None
    if not isinstance(cfg, DictConfig) or not {"algo", "env", "seed"} <= set(cfg.keys()):
        raise CheckpointError(f"{path}: not the config of an rlbench run")
    return cfg


def checkpoint_file(run_dir: Path, which: str) -> Path:
    """``checkpoints/last.ckpt`` or ``checkpoints/best.ckpt`` of ``run_dir`` (must exist)."""
    from rlbench.callbacks.checkpoint import BEST_CHECKPOINT, LAST_CHECKPOINT

    if which not in CHECKPOINTS:
        raise ConfigError(f"checkpoint '{which}': allowed {', '.join(CHECKPOINTS)}")
    name = LAST_CHECKPOINT if which == "last" else BEST_CHECKPOINT
    path = run_dir / "checkpoints" / name
    if not path.is_file():
        hint = (
            " (trainer.keep_best=false or no evaluation yet; try last)" if which == "best" else ""
        )
        raise CheckpointError(f"{run_dir}: no checkpoint checkpoints/{name}{hint}")
    return path


def with_env_overrides(cfg: DictConfig, overrides: Sequence[str]) -> DictConfig:
    """A copy of ``cfg`` with ``KEY=VALUE`` overrides of ``env.*`` (``env.`` optional,
    values typed as on the command line; ``+KEY=VALUE`` adds a key, e.g. to ``kwargs``)."""
    cfg = copy.deepcopy(cfg)
    for item in overrides:
        key, sep, value = item.partition("=")
        add = key.startswith("+")
        key = key.lstrip("+").removeprefix("env.")
        if not sep or not key:
            raise ConfigError(
                f"env override '{item}': expected KEY=VALUE, e.g. max_episode_steps=200"
            )
        if not add and OmegaConf.select(cfg.env, key, default=_UNSET) is _UNSET:
            raise ConfigError(
                f"env override '{item}': the run's env has no key '{key}' "
                f"(keys: {', '.join(str(k) for k in cfg.env)}; +{key}=... adds one)"
            )
        try:
            parsed = OmegaConf.from_dotlist([f"value={value}"])["value"]
            OmegaConf.update(cfg.env, key, parsed, merge=False, force_add=add)
        except Exception as e:
            raise ConfigError(f"env override '{item}': {_first_line(e)}") from None
    return cfg


def make_env_factory(cfg: DictConfig) -> EnvFactory:
    """The run's training env factory (``cfg.env``)."""
    from rlbench.cli import _instantiate

    factory: EnvFactory = _instantiate(cfg.env, _convert_="all")
    return factory


def read_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint's content, its tensors memory-mapped where the file allows it: a
    ``last.ckpt`` with a large replay buffer is not read for the few weights needed.
    Errors as ``logging.load_checkpoint``'s (one line: missing, corrupt)."""
    import torch

    from rlbench.logging import load_checkpoint

    if not path.is_file():
        return load_checkpoint(path)  # raises its one-line error
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # not memory-mappable (legacy format) or corrupt: the plain path says
        return load_checkpoint(path)
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise CheckpointError(f"corrupt checkpoint {path}: not a Lightning checkpoint")
    return ckpt


def datamodule_state(ckpt: dict[str, Any]) -> dict[str, Any] | None:
    """The DataModule's state in a full (``last.ckpt``) checkpoint."""
    return next(
        (v for k, v in ckpt.items() if k.endswith("DataModule") and isinstance(v, dict)), None
    )


def checkpoint_env_step(ckpt: dict[str, Any]) -> int | None:
    """The env step a checkpoint's weights are from."""
    if isinstance(ckpt.get("rlbench_best"), dict):
        return int(ckpt["rlbench_best"]["env_step"])
    state = datamodule_state(ckpt)
    return int(state["env_steps"]) if state is not None and "env_steps" in state else None


class SavedTrainingEnvs:
    """The training envs pickled in a checkpoint, as ``for_evaluation(training_envs=...)``
    asks for them; unpickled on the first call only (only factories whose evaluation envs
    take statistics from the training envs call it)."""

    def __init__(self, blob: bytes | None, *, where: str) -> None:
        self.blob = blob
        self.where = where
        self._envs: Any = None

    @classmethod
    def of(cls, ckpt: dict[str, Any], *, where: str) -> SavedTrainingEnvs:
        if isinstance(ckpt.get("rlbench_best"), dict):  # best.ckpt
            blob = ckpt.get("eval_envs")
        else:
            blob = (datamodule_state(ckpt) or {}).get("envs")
        return cls(blob if isinstance(blob, bytes) else None, where=where)

    def __call__(self) -> Any:
        if self._envs is None and self.blob is not None:
            try:
                self._envs = pickle.loads(self.blob)
            except Exception as e:
                raise CheckpointError(
                    f"corrupt checkpoint {self.where}: its training envs: {_first_line(e)}"
                ) from None
        return self._envs

    def close(self) -> None:
        if self._envs is not None and hasattr(self._envs, "close"):
            self._envs.close()
        self._envs = None


# ------------------------------------------------------------------ spaces
def space_to_plain(space: gym.Space[Any]) -> dict[str, Any] | None:
    """A ``weights_only``-loadable description of a Box, Discrete, MultiDiscrete or
    MultiBinary space (``None`` for other kinds)."""
    import torch

    if isinstance(space, gym.spaces.Box):
        return {
            "type": "Box",
            "low": torch.from_numpy(np.array(space.low)),
            "high": torch.from_numpy(np.array(space.high)),
            "dtype": str(space.dtype),
        }
    if isinstance(space, gym.spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, gym.spaces.MultiDiscrete):
        return {
            "type": "MultiDiscrete",
            "nvec": torch.from_numpy(np.array(space.nvec)),
            "dtype": str(space.dtype),
        }
    if isinstance(space, gym.spaces.MultiBinary):
        return {"type": "MultiBinary", "n": [int(n) for n in np.atleast_1d(space.n)]}
    return None


def space_from_plain(plain: dict[str, Any]) -> gym.Space[Any]:
    """Inverse of ``space_to_plain``."""
    kind = plain["type"]
    if kind == "Box":
        dtype = np.dtype(plain["dtype"])
        low, high = plain["low"].numpy().astype(dtype), plain["high"].numpy().astype(dtype)
        return gym.spaces.Box(low=low, high=high, dtype=dtype)
    if kind == "Discrete":
        return gym.spaces.Discrete(plain["n"], start=plain["start"])
    if kind == "MultiDiscrete":
        return gym.spaces.MultiDiscrete(
            plain["nvec"].numpy(),
            dtype=np.dtype(plain["dtype"]),
        )
    if kind == "MultiBinary":
        n = plain["n"]
        return gym.spaces.MultiBinary(n[0] if len(n) == 1 else n)
    raise CheckpointError(f"unknown space type '{kind}' in an exported policy")


class _Spaces:
    """What ``cli.build_module`` needs of an env factory: its spaces."""

    def __init__(self, observation_space: gym.Space[Any], action_space: gym.Space[Any]) -> None:
        self._spaces = (observation_space, action_space)

    def spaces(self) -> tuple[gym.Space[Any], gym.Space[Any]]:
        return self._spaces


# ------------------------------------------------------------------ modules
def build_policy_module(
    cfg: DictConfig, observation_space: gym.Space[Any], action_space: gym.Space[Any]
) -> Any:
    """The run's algorithm (``cfg.algo``) built for these single-env spaces, on the CPU."""
    from rlbench.cli import build_module, quiet_lightning

    quiet_lightning()
    return build_module(cfg, _Spaces(observation_space, action_space))


def load_weights(
    module: Any, state_dict: dict[str, Any], *, source: str, omitted: Sequence[str] = ()
) -> None:
    """Load ``state_dict`` into ``module``; every weight must fit (names and shapes), and
    only ``omitted`` ones may be absent. A misfit is a one-line CheckpointError."""
    try:
        missing, unexpected = module.load_state_dict(state_dict, strict=False)
    except RuntimeError as e:  # a size mismatch: the env's spaces differ from the run's
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        detail = next((ln for ln in lines if ln.startswith("size mismatch")), lines[-1])
        raise CheckpointError(
            f"{source} does not fit the network built for this env "
            f"(another observation or action space?): {detail}"
        ) from None
    missing = [k for k in missing if k not in set(omitted)]
    if missing or unexpected:
        names = ", ".join(
            [*(f"missing {k}" for k in missing[:3]), *(f"unexpected {k}" for k in unexpected[:3])]
        )
        raise CheckpointError(
            f"{source} does not fit algo={module.name} as configured: {names}"
        ) from None


def restore_module(cfg: DictConfig, ckpt: dict[str, Any], *, source: str, factory: Any) -> Any:
    """The run's module, built for ``factory``'s spaces, with the checkpoint's weights
    (and, for a full checkpoint, the module state a resume would restore)."""
    module = build_policy_module(cfg, *factory.spaces())
    state = ckpt.get("state_dict")
    if not isinstance(state, dict):
        raise CheckpointError(f"corrupt checkpoint {source}: no state_dict")
    load_weights(module, state, source=source)
    if "rlbench_module" in ckpt:
        try:
            module.on_load_checkpoint(ckpt)
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"corrupt checkpoint {source}: module state: {e}") from None
    return module


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


# ------------------------------------------------------------------ observation normalization
def eval_obs_normalization(eval_factory: Any) -> dict[str, Any] | None:
    """What evaluation envs of ``eval_factory`` do to observations, for a policy that acts
    in raw envs: the frozen observation moments (``mean``, ``var`` tensors, ``clip``,
    ``epsilon``) of ``env.normalize_obs``, or ``None`` where observations are left as the env
    returns them."""
    import torch

    from rlbench.envs import EnvFactory
    from rlbench.envs.normalize import RunningMoments

    if not (isinstance(eval_factory, EnvFactory) and eval_factory.normalize_obs):
        return None
    moments = eval_factory.training_obs_moments()
    if moments is None:  # as EnvFactory.make does without training statistics
        moments = RunningMoments(tuple(eval_factory.spaces()[0].shape or ()))
    return {
        "mean": torch.from_numpy(moments.mean.copy()),
        "var": torch.from_numpy(moments.var.copy()),
        "clip": float(eval_factory.clip_obs),
        "epsilon": float(eval_factory.norm_epsilon),
    }


# ------------------------------------------------------------------ the policy
class Policy:
    """A trained agent for plain Gymnasium envs (what ``rlbench.load`` returns).

    - ``act(obs)``: the action for one unbatched observation of one env (``num_envs=1``);
      call ``reset()`` when an episode starts (the first ``act`` after it is marked
      ``first``, where a stateful actor resets its per-env state).
    - ``act(obs, first=first)``: actions ``(N, ...)`` for observations ``(N, ...)`` of the
      policy's ``num_envs`` envs, ``first[i]`` marking env ``i``'s first observation of an
      episode -- the ``Actor`` protocol (``rlbench/specs.py``), usable wherever an actor is.

    Observations are the env's own: the run's observation normalization
    (``env.normalize_obs``) is applied here, with the statistics saved with the weights.
    ``make_env()`` makes one env like the run's (for Atari its preprocessed frames).
    With ``deterministic=False`` actions are sampled from a generator seeded as the run's
    evaluation seeds it (``seed + EVAL_SEED_OFFSET``).

    Attributes:
        module: the algorithm (an ``RLModule``) holding the weights.
        actor: the module's evaluation actor this policy acts through.
        config: the run's config (with any env overrides).
        trained_env_steps: the env step the weights are from (``None`` if unknown).
        source: where the weights came from.
    """

    def __init__(
        self,
        module: Any,
        *,
        config: DictConfig,
        num_envs: int = 1,
        deterministic: bool = True,
        seed: int = 0,
        obs_normalization: dict[str, Any] | None = None,
        source: str = "",
        trained_env_steps: int | None = None,
    ) -> None:
        from rlbench.envs import EVAL_SEED_OFFSET

        if num_envs < 1:
            raise ConfigError(f"num_envs={num_envs}: must be >= 1")
        self.module = module
        self.config = config
        self.num_envs = num_envs
        self.deterministic = deterministic
        self.seed = seed
        self.obs_normalization = obs_normalization
        self.source = source
        self.trained_env_steps = trained_env_steps
        self.actor = module.make_actor(
            num_envs=num_envs,
            mode="eval",
            deterministic=deterministic,
            seed=seed + EVAL_SEED_OFFSET,
        )
        self._first = True
        self._moments: Any = None
        if obs_normalization is not None:
            from rlbench.envs.normalize import RunningMoments

            mean = obs_normalization["mean"].numpy()
            self._moments = RunningMoments(tuple(mean.shape))
            self._moments.mean = mean.copy()
            self._moments.var = obs_normalization["var"].numpy().copy()
        self._factory: EnvFactory | None = None

    @property
    def observation_space(self) -> gym.Space[Any]:
        return self.module.observation_space

    @property
    def action_space(self) -> gym.Space[Any]:
        return self.module.action_space

    @property
    def env_step(self) -> int:
        """The inner actor's clock (the ``Actor`` protocol)."""
        return int(self.actor.env_step)

    @env_step.setter
    def env_step(self, value: int) -> None:
        self.actor.env_step = value

    def reset(self) -> None:
        """The next ``act(obs)`` gets the first observation of an episode."""
        self._first = True

    def normalize(self, obs: np.ndarray) -> np.ndarray:
        """Observations as the run's evaluation envs hand them to the actor."""
        if self._moments is None or self.obs_normalization is None:
            return obs
        from rlbench.envs.normalize import normalize

        norm = self.obs_normalization
        out = normalize(obs, self._moments, clip=norm["clip"], eps=norm["epsilon"])
        return out.astype(obs.dtype, copy=False)

    def act(self, obs: Any, *, first: np.ndarray | None = None) -> Any:
        """The action for one observation, or with ``first`` actions for a batch (see the
        class docstring)."""
        if first is None:
            if self.num_envs != 1:
                raise ValueError(
                    f"act(obs) takes one observation; this policy acts for {self.num_envs} "
                    "envs: pass a batch and first=..."
                )
            flags = np.array([self._first])
            self._first = False
            return self.actor.act(self.normalize(np.asarray(obs)[None]), first=flags)[0]
        return self.actor.act(self.normalize(np.asarray(obs)), first=np.asarray(first, bool))

    def state_dict(self) -> dict[str, Any]:
        return {"actor": self.actor.state_dict(), "first": self._first}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.actor.load_state_dict(state["actor"])
        self._first = bool(state["first"])

    @property
    def env_factory(self) -> EnvFactory:
        """The run's evaluation env factory (observation normalization left to the policy)."""
        if self._factory is None:
            import dataclasses

            factory = make_env_factory(self.config).for_evaluation()
            if self.obs_normalization is not None:
                factory = dataclasses.replace(factory, normalize_obs=False)
            self._factory = factory
        return self._factory

    def make_env(self) -> gym.Env[Any, Any]:
        """One env whose observations this policy takes, as the run's evaluation envs
        (Atari: preprocessed, whole games); ``render()`` returns RGB frames."""
        return self.env_factory.render_env()


def load(
    source: str | Path,
    checkpoint: str = "best",
    *,
    num_envs: int = 1,
    deterministic: bool | None = None,
    seed: int | None = None,
    env_overrides: Sequence[str] = (),
) -> Policy:
    """The trained agent of a run dir (``checkpoints/<checkpoint>.ckpt``: ``best`` by
    default, or ``last``) or of an exported policy file (``rlbench-eval --export``; it
    holds one set of weights, so ``checkpoint`` does not apply), as a ``Policy``.

    Args:
        source: a run directory or an exported policy file.
        checkpoint: ``best`` or ``last`` (run dirs).
        num_envs: envs the policy acts for at once (``act(obs)`` needs 1).
        deterministic: the deterministic policy or a sampled one; default the run's
            ``trainer.eval_deterministic``.
        seed: seeds a sampled policy's generator as the run's evaluation does; default the
            run's seed.
        env_overrides: ``KEY=VALUE`` changes to the run's ``env`` config (the weights must
            still fit its spaces).
    """
    path = Path(source).expanduser()
    if path.is_file():
        return _load_export(
            path,
            num_envs=num_envs,
            deterministic=deterministic,
            seed=seed,
            env_overrides=env_overrides,
        )
    cfg = with_env_overrides(read_run_config(path), env_overrides)
    ckpt_path = checkpoint_file(path, checkpoint)
    ckpt = read_checkpoint(ckpt_path)
    factory = make_env_factory(cfg)
    module = restore_module(cfg, ckpt, source=str(ckpt_path), factory=factory)
    training_envs = SavedTrainingEnvs.of(ckpt, where=str(ckpt_path))
    try:
        norm = eval_obs_normalization(factory.for_evaluation(training_envs=training_envs))
    finally:
        training_envs.close()
    return Policy(
        module,
        config=cfg,
        num_envs=num_envs,
        deterministic=_eval_deterministic(cfg) if deterministic is None else deterministic,
        seed=int(cfg.seed) if seed is None else seed,
        obs_normalization=norm,
        source=str(ckpt_path),
        trained_env_steps=checkpoint_env_step(ckpt),
    )


def _eval_deterministic(cfg: DictConfig) -> bool:
    return bool(OmegaConf.select(cfg, "trainer.eval_deterministic", default=True))


def _load_export(
    path: Path,
    *,
    num_envs: int,
    deterministic: bool | None,
    seed: int | None,
    env_overrides: Sequence[str],
) -> Policy:
    import torch

    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"corrupt policy file {path}: {_first_line(e)}") from None
    if not isinstance(blob, dict) or blob.get("format") != POLICY_FORMAT:
        raise CheckpointError(
            f"{path}: not an exported rlbench policy (rlbench-eval RUN_DIR --export FILE "
            "writes one) nor a run directory"
        )
    if int(blob.get("version", 0)) > POLICY_VERSION:
        raise CheckpointError(
            f"{path}: policy format version {blob['version']} is newer than this rlbench"
        )
    cfg = OmegaConf.create(blob["config"])
    assert isinstance(cfg, DictConfig)
    spaces = (blob.get("observation_space"), blob.get("action_space"))
    if env_overrides or None in spaces:
        cfg = with_env_overrides(cfg, env_overrides)
        observation_space, action_space = make_env_factory(cfg).spaces()
    else:
        observation_space, action_space = (space_from_plain(s) for s in spaces)  # type: ignore[arg-type]
    module = build_policy_module(cfg, observation_space, action_space)
    load_weights(module, blob["state_dict"], source=str(path), omitted=blob.get("omitted", ()))
    source = blob.get("source") or {}
    return Policy(
        module,
        config=cfg,
        num_envs=num_envs,
        deterministic=_eval_deterministic(cfg) if deterministic is None else deterministic,
        seed=int(cfg.seed) if seed is None else seed,
        obs_normalization=blob.get("obs_normalization"),
        source=str(path),
        trained_env_steps=source.get("env_step"),
    )


# ------------------------------------------------------------------ export
def _probe_observations(space: gym.Space[Any], n: int) -> np.ndarray:
    space = copy.deepcopy(space)
    space.seed(0)
    return np.stack([np.asarray(space.sample()) for _ in range(n)])


def _play(module: Any, obs: np.ndarray) -> list[np.ndarray]:
    """Actions of fresh evaluation actors (deterministic, then sampled) on ``obs``: a
    first step and one more, torch's and numpy's global generators seeded and restored."""
    import torch

    out: list[np.ndarray] = []
    np_state = np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        np.random.seed(0)
        try:
            for deterministic in (True, False):
                actor = module.make_actor(
                    num_envs=len(obs), mode="eval", deterministic=deterministic, seed=0
                )
                first = np.ones(len(obs), dtype=np.bool_)
                for _ in range(2):
                    out.append(np.array(actor.act(obs, first=first), dtype=np.float64))
                    first = np.zeros(len(obs), dtype=np.bool_)
        finally:
            np.random.set_state(np_state)
    return out


def _detached(value: Any) -> Any:
    """A CPU copy of a ``state_dict`` value (a tensor, or an ``_extra_state`` container)."""
    import torch

    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    return copy.deepcopy(value)


def acting_state_keys(module: Any, fresh: Callable[[], Any], *, probes: int = 8) -> set[str]:
    """The names in ``module.state_dict()`` its evaluation actors read.

    Measured: fresh evaluation actors (deterministic and sampled) act on ``probes`` sample
    observations under a ``TorchFunctionMode`` that records every parameter and buffer
    passed to a torch function (a forward, or ``detach()`` for the numpy views acting
    functions are built from). Then checked: ``fresh()`` (a new module of the same
    config) gets only those weights, random values in the others, and must act exactly
    the same; where it does not (an acting function built before the trace, say), every
    name is kept. Entries that are not tensors (a noisy layer's generator state in
    ``_extra_state``) are always kept. ``module`` should not have acted yet (cached acting
    functions)."""
    import torch
    from torch.overrides import TorchFunctionMode

    state = module.state_dict(keep_vars=True)
    names_of: dict[int, list[str]] = {}
    for name, tensor in state.items():
        names_of.setdefault(id(tensor), []).append(name)
    read: set[str] = {k for k, v in state.items() if not isinstance(v, torch.Tensor)}

    def visit(x: Any) -> None:
        if isinstance(x, torch.Tensor):
            read.update(names_of.get(id(x), ()))
        elif isinstance(x, list | tuple):
            for y in x:
                visit(y)
        elif isinstance(x, dict):
            for y in x.values():
                visit(y)

    class RecordReads(TorchFunctionMode):
        def __torch_function__(
            self,
            func: Callable[..., Any],
            types: Any,
            args: Sequence[Any] = (),
            kwargs: dict[str, Any] | None = None,
        ) -> Any:
            visit(args)
            visit(kwargs or {})
            return func(*args, **(kwargs or {}))

    obs = _probe_observations(module.observation_space, probes)
    with RecordReads():
        expected = _play(module, obs)
    if read == set(state):
        return read
    other = fresh()
    other.load_state_dict({k: _detached(v) for k, v in state.items() if k in read}, strict=False)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, tensor in other.state_dict(keep_vars=True).items():
            if name not in read and tensor.is_floating_point():
                noise = torch.randn(tensor.shape, generator=gen, dtype=tensor.dtype)
                tensor.copy_(tensor + 3.0 * noise)
    actual = _play(other, obs)
    same = all(np.array_equal(a, b, equal_nan=True) for a, b in zip(expected, actual, strict=True))
    return read if same else set(state)


def export_policy(
    run_dir: Path,
    out: Path,
    *,
    checkpoint: str = "last",
    env_overrides: Sequence[str] = (),
) -> dict[str, Any]:
    """Write ``out``: what ``rlbench.load`` needs to rebuild the evaluation actor of
    ``run_dir``'s ``checkpoint`` and nothing else (see the module docstring). Returns
    ``{"kept": [...], "omitted": [...]}`` weight names."""
    import torch

    from rlbench.logging import AtomicCheckpointIO

    cfg = with_env_overrides(read_run_config(run_dir), env_overrides)
    ckpt_path = checkpoint_file(run_dir, checkpoint)
    ckpt = read_checkpoint(ckpt_path)
    factory = make_env_factory(cfg)
    observation_space, action_space = factory.spaces()
    module = restore_module(cfg, ckpt, source=str(ckpt_path), factory=factory)
    training_envs = SavedTrainingEnvs.of(ckpt, where=str(ckpt_path))
    try:
        norm = eval_obs_normalization(factory.for_evaluation(training_envs=training_envs))
    finally:
        training_envs.close()

    def fresh() -> Any:
        return build_policy_module(cfg, observation_space, action_space)

    keep = acting_state_keys(module, fresh)
    state = {k: _detached(v) for k, v in module.state_dict().items() if k in keep}
    omitted = sorted(set(module.state_dict()) - keep)
    blob: dict[str, Any] = {
        "format": POLICY_FORMAT,
        "version": POLICY_VERSION,
        "algo": str(cfg.algo.name),
        "config": OmegaConf.to_container(cfg, resolve=True),
        "observation_space": space_to_plain(observation_space),
        "action_space": space_to_plain(action_space),
        "state_dict": state,
        "omitted": omitted,
        "obs_normalization": norm,
        "source": {
            "run_dir": str(run_dir.resolve()),
            "checkpoint": checkpoint,
            "env_step": checkpoint_env_step(ckpt),
        },
        "torch_version": str(torch.__version__),
    }
    AtomicCheckpointIO().save_checkpoint(blob, out)
    return {"kept": sorted(keep), "omitted": omitted}


# ------------------------------------------------------------------ rlbench-eval
def iqm(returns: np.ndarray) -> float:
    """Interquartile mean: the mean of the middle 50% (``scipy.stats.trim_mean(x, 0.25)``,
    rliable's IQM)."""
    import scipy.stats

    return float(scipy.stats.trim_mean(np.asarray(returns, dtype=np.float64), 0.25))


def _eval_stamp(folder: Path) -> str:
    stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    name, n = stamp, 1
    while (folder / f"{name}.json").exists() or any(folder.glob(f"{name}-episode-*")):
        n += 1
        name = f"{stamp}_{n}"
    return name


def evaluate_run(
    run_dir: Path,
    *,
    checkpoint: str = "last",
    episodes: int | None = None,
    seed: int | None = None,
    deterministic: bool | None = None,
    video: bool = False,
    env_overrides: Sequence[str] = (),
) -> tuple[dict[str, Any], Path]:
    """Play ``episodes`` evaluation episodes of ``run_dir``'s ``checkpoint`` as its training
    run's evaluations do and write ``<run dir>/eval/<time>.json``; returns its content and
    path. Defaults: the run's ``trainer.eval_episodes``, ``seed`` and
    ``trainer.eval_deterministic``."""
    from rlbench.callbacks.evaluation import evaluate

    start = time.time()
    cfg = with_env_overrides(read_run_config(run_dir), env_overrides)
    ckpt_path = checkpoint_file(run_dir, checkpoint)
    episodes = int(cfg.trainer.eval_episodes) if episodes is None else episodes
    seed = int(cfg.seed) if seed is None else seed
    deterministic = _eval_deterministic(cfg) if deterministic is None else deterministic
    if episodes < 1:
        raise ConfigError(f"--episodes {episodes}: must be >= 1")
    _limit_threads(int(OmegaConf.select(cfg, "trainer.torch_threads", default=1)))

    ckpt = read_checkpoint(ckpt_path)
    factory = make_env_factory(cfg)
    module = restore_module(cfg, ckpt, source=str(ckpt_path), factory=factory)
    env_step = checkpoint_env_step(ckpt)
    training_envs = SavedTrainingEnvs.of(ckpt, where=str(ckpt_path))
    del ckpt
    eval_factory = factory.for_evaluation(training_envs=training_envs)
    folder = run_dir / "eval"
    folder.mkdir(exist_ok=True)
    stamp = _eval_stamp(folder)
    videos: list[str] = []
    try:
        returns = evaluate(
            module, eval_factory, episodes=episodes, seed=seed, deterministic=deterministic
        )
        if video:
            from rlbench.callbacks.video import record_episodes

            record_episodes(
                module,
                eval_factory,
                folder=folder,
                name_prefix=stamp,
                episodes=episodes,
                seed=seed,
                env_step=env_step or 0,
                max_steps=int(OmegaConf.select(cfg, "video.max_steps", default=10_000)),
                deterministic=deterministic,
            )
            videos = [str(p.relative_to(run_dir)) for p in sorted(folder.glob(f"{stamp}-*.mp4"))]
    finally:
        training_envs.close()
    results: dict[str, Any] = {
        "checkpoint": checkpoint,
        "checkpoint_path": str(ckpt_path.relative_to(run_dir)),
        "checkpoint_env_step": env_step,
        "episodes": episodes,
        "seed": seed,
        "deterministic": deterministic,
        "env_overrides": list(env_overrides),
        "return_mean": float(returns.mean()),
        "return_std": float(returns.std()),
        "return_iqm": iqm(returns),
        "returns": [float(r) for r in returns],
        "videos": videos,
        "wall_time_s": time.time() - start,
    }
    path = folder / f"{stamp}.json"
    tmp = folder / f".{stamp}.json.tmp"
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    tmp.replace(path)
    return results, path


def _limit_threads(n: int) -> None:
    """The thread counts of the training run (``trainer.torch_threads``), so numbers repeat."""
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(n)
    threadpool_limits(n, user_api="blas")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rlbench-eval",
        description=(
            "Evaluate a trained rlbench run on fresh evaluation envs (as its training run "
            "evaluated), writing <run dir>/eval/<time>.json; or export its policy."
        ),
    )
    p.add_argument("run_dir", type=Path, help="a run directory (holds .hydra/ and checkpoints/)")
    p.add_argument("--episodes", type=int, default=None, help="default: trainer.eval_episodes")
    p.add_argument("--seed", type=int, default=None, help="default: the run's seed")
    p.add_argument("--checkpoint", choices=CHECKPOINTS, default="last")
    p.add_argument("--video", action="store_true", help="also record the episodes to mp4s")
    p.add_argument(
        "--env-override",
        action="extend",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="change the run's env config, e.g. max_episode_steps=200 (+KEY=VALUE adds a key)",
    )
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--deterministic",
        dest="deterministic",
        action="store_true",
        default=None,
        help="the greedy/mode policy (default: trainer.eval_deterministic)",
    )
    group.add_argument(
        "--stochastic", dest="deterministic", action="store_false", help="a sampled policy"
    )
    p.add_argument(
        "--export",
        type=Path,
        default=None,
        metavar="FILE",
        help="write the policy (weights the actor reads, config, spaces) to FILE; no evaluation",
    )
    return p


def run(argv: Sequence[str] | None = None) -> int:
    """``rlbench-eval``; returns the exit status (2 for a user error, in one line)."""
    args = _parser().parse_args(argv)
    try:
        read_run_config(args.run_dir)  # a plain mistake fails before torch is imported
    except RLBenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from rlbench.cli import import_training_stack

    import_training_stack()
    try:
        if args.export is not None:
            out = export_policy(
                args.run_dir,
                args.export,
                checkpoint=args.checkpoint,
                env_overrides=args.env_override,
            )
            print(
                f"exported {len(out['kept'])} weights of {args.run_dir} "
                f"(checkpoints/{args.checkpoint}.ckpt) to {args.export}"
                + (
                    f"; left out {len(out['omitted'])} the actor does not read"
                    if out["omitted"]
                    else ""
                )
            )
            return 0
        results, path = evaluate_run(
            args.run_dir,
            checkpoint=args.checkpoint,
            episodes=args.episodes,
            seed=args.seed,
            deterministic=args.deterministic,
            video=args.video,
            env_overrides=args.env_override,
        )
    except RLBenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    policy = "deterministic" if results["deterministic"] else "sampled"
    print(
        f"{args.run_dir}: {results['checkpoint_path']} "
        f"(env step {results['checkpoint_env_step']}), "
        f"{results['episodes']} episodes, seed {results['seed']}, {policy} policy\n"
        f"return mean {results['return_mean']:.6g}  std {results['return_std']:.6g}  "
        f"IQM {results['return_iqm']:.6g}\n"
        f"wrote {path}" + "".join(f"\nwrote {args.run_dir / v}" for v in results["videos"])
    )
    return 0


def main() -> None:
    """Console-script entry point (``rlbench-eval``)."""
    sys.exit(run())


if __name__ == "__main__":
    main()
