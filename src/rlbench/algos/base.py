"""The shared LightningModule of every algorithm, and the contract an algorithm fulfils.

An algorithm is an ``RLModule`` subclass. It must implement:

- ``build(observation_space, action_space)``: create the networks for these single-env
  spaces (raise ``ConfigError`` for a space it does not support; ``action_spaces`` names
  the kinds it takes, checked before ``build``);
- ``data_spec``: what it learns from (``TransitionSpec``, ``SequenceSpec`` or
  ``RolloutSpec``), which picks the DataModule;
- ``make_actor(num_envs=N, mode="train" | "eval", ...)``: an ``Actor`` (``rlbench/specs.py``)
  for N envs; the only way env-stepping code reaches the policy;
- ``make_optimizers()``: named optimizers (``{"main": ...}``, or ``actor``, ``critic``,
  ``alpha``, ...); ``gradient_step(loss, params, optimizer=name, max_grad_norm=...)``
  steps one of them;
- ``training_step(dataloader_iter)``: turn a batch into losses, take gradient steps, log
  ``train/*`` through ``self.metrics``.

It may override ``train_stats`` (schedule values logged with each flush),
``on_save_checkpoint`` / ``on_load_checkpoint`` (extra state; call ``super()``) and
``on_train_start``. Every logged ``train/*loss*`` is checked for finiteness before each
flush and checkpoint. Env stepping, evaluation, checkpoints and metric flushing live in
the DataModule and callbacks; the module never sees an env.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Callable
from typing import Any, ClassVar

import gymnasium as gym
import lightning as L
import torch
from lightning.pytorch.core.optimizer import LightningOptimizer

from rlbench.errors import ConfigError, NonFiniteLossError
from rlbench.specs import ACTOR_MODES, Actor, ReplaySpec

__all__ = ["MetricAccumulator", "RLModule", "ReplaySpec", "clip_grad_norm_", "split_clip"]


def clip_grad_norm_(params: list[torch.Tensor], max_norm: float) -> torch.Tensor:
    """Scale gradients in place so their global L2 norm is at most ``max_norm``.

    Same result as ``torch.nn.utils.clip_grad_norm_`` for finite gradients of parameters on
    one device, at a fraction of its cost on the CPU (where torch's version takes its
    per-tensor path), which matters when a whole DQN gradient step costs well under a
    millisecond. It uses torch's multi-tensor ops ``torch._foreach_norm`` /
    ``torch._foreach_mul_`` (private names, the ones torch's own optimizers use; pinned by
    ``tests/unit/test_private_apis.py``). On the CPU the scale is a python float, so
    gradients under the bound are left untouched without a kernel; on accelerators it stays
    a tensor (no host sync). Returns the norm before clipping.
    """
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    if total.device.type == "cpu":
        scale = max_norm / (float(total) + 1e-6)
        if scale < 1.0:
            torch._foreach_mul_(grads, scale)
        return total
    torch._foreach_mul_(grads, torch.clamp(max_norm / (total + 1e-6), max=1.0))
    return total


def split_clip(optimizer: Callable[..., torch.optim.Optimizer]) -> tuple[Any, float]:
    """``(optimizer partial without max_grad_norm, max_grad_norm)``: an optimizer config may
    carry its own clipping (``algo.critic_optimizer.max_grad_norm=10``); 0 disables it."""
    if isinstance(optimizer, functools.partial) and "max_grad_norm" in optimizer.keywords:
        keywords = dict(optimizer.keywords)
        clip = float(keywords.pop("max_grad_norm"))
        return functools.partial(optimizer.func, *optimizer.args, **keywords), clip
    return optimizer, 0.0


class MetricAccumulator:
    """Collects scalar metrics between flushes without a device sync per step.

    Values are kept as given (tensors stay on device) and reduced to means only in
    ``compute``, which the logging callback calls every ``trainer.log_every`` env steps.
    """

    def __init__(self) -> None:
        self._values: defaultdict[str, list[torch.Tensor | float]] = defaultdict(list)
        self.totals: defaultdict[str, int] = defaultdict(int)  # values ever added, per name

    def add(self, name: str, value: torch.Tensor | float) -> None:
        self._values[name].append(value)
        self.totals[name] += 1

    def pending(self, name: str) -> list[torch.Tensor | float]:
        return self._values.get(name, [])

    def names(self) -> list[str]:
        """Metrics with values pending."""
        return [name for name, values in self._values.items() if values]

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Values not flushed yet, so a run resumed after Ctrl-C logs the same rows."""
        return {
            name: torch.stack([torch.as_tensor(v, dtype=torch.float64).cpu() for v in values])
            for name, values in self._values.items()
            if values
        }

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self._values.clear()
        for name, values in state.items():
            self._values[name].extend(float(v) for v in values)

    def compute(self) -> dict[str, float]:
        """Means of everything added since the last call; clears the accumulator."""
        out: dict[str, float] = {}
        for name, values in self._values.items():
            if values:
                out[name] = float(torch.as_tensor(values, dtype=torch.float64).mean())
        self._values.clear()
        return out


class RLModule(L.LightningModule):
    """Base of all algorithms: spaces, named optimizers, metrics, finiteness checks.

    Args:
        name: algorithm name (used in run names and reports).
        lr: learning rate of the ``main`` optimizer's partial (algorithms with several
            optimizers set each one's ``lr`` in its own config).
        seed: seeds the actors' and networks' own generators.
    """

    #: action-space kinds this algorithm supports (checked before ``build``)
    action_spaces: ClassVar[tuple[type[gym.Space[Any]], ...]] = (
        gym.spaces.Discrete,
        gym.spaces.Box,
    )

    def __init__(self, *, name: str, lr: float = 0.0, seed: int = 0) -> None:
        super().__init__()
        self.name = name
        self.lr = lr
        self.seed = seed
        self.metrics = MetricAccumulator()
        self.observation_space: gym.Space[Any] | None = None
        self.action_space: gym.Space[Any] | None = None
        self.built = False
        self.automatic_optimization = False
        self.optimizer_names: tuple[str, ...] = ()

    # ---------------------------------------------------------------- building
    def build_for(self, observation_space: gym.Space[Any], action_space: gym.Space[Any]) -> None:
        """Check the action space against ``action_spaces`` and ``build`` (once)."""
        if self.built:
            return
        if not isinstance(action_space, self.action_spaces):
            kinds = ", ".join(k.__name__ for k in self.action_spaces)
            raise ConfigError(
                f"algo={self.name} needs a {kinds} action space; this env has {action_space}"
            )
        self.observation_space, self.action_space = observation_space, action_space
        self.build(observation_space, action_space)
        self.built = True

    def setup(self, stage: str) -> None:
        if not self.built:  # the module never asks the data side for its spaces
            raise RuntimeError(
                f"{type(self).__name__}: call build_for(observation_space, action_space) "
                "before fit (cli.build_module does)"
            )

    def build(self, observation_space: gym.Space[Any], action_space: gym.Space[Any]) -> None:
        """Create networks for these single-env spaces (raise ConfigError if unsupported)."""
        raise NotImplementedError

    @property
    def data_spec(self) -> Any:
        """What this algorithm learns from: a ``TransitionSpec``, ``SequenceSpec`` or
        ``RolloutSpec``; it picks the DataModule (``rlbench.data.datamodule_for``)."""
        raise NotImplementedError

    # ---------------------------------------------------------------- acting
    def make_actor(
        self, *, num_envs: int, mode: str = "train", deterministic: bool = True, seed: int = 0
    ) -> Actor:
        """An actor for ``num_envs`` envs. ``mode="train"`` explores (its RNG derives from
        the module's seed and is checkpointed with the DataModule); ``mode="eval"`` plays
        the evaluation policy: the deterministic one, or with ``deterministic=False`` a
        policy sampled from a generator seeded with ``seed`` (so an evaluation stays a pure
        function of the weights and the seed)."""
        raise NotImplementedError

    @staticmethod
    def check_mode(mode: str) -> None:
        if mode not in ACTOR_MODES:
            raise ConfigError(f"actor mode '{mode}': allowed {', '.join(ACTOR_MODES)}")

    # ---------------------------------------------------------------- optimizers
    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """The module's optimizers by name, built over its (already built) parameters."""
        raise NotImplementedError

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        optimizers = self.make_optimizers()
        self.optimizer_names = tuple(optimizers)
        return list(optimizers.values())

    def optimizer(self, name: str = "main") -> LightningOptimizer:
        """The Lightning-wrapped optimizer called ``name``."""
        opts = self.optimizers()
        opts = opts if isinstance(opts, list) else [opts]
        try:
            return opts[self.optimizer_names.index(name)]
        except ValueError:
            raise KeyError(
                f"no optimizer '{name}'; this module has {', '.join(self.optimizer_names)}"
            ) from None

    def gradient_step(
        self,
        loss: torch.Tensor,
        params: list[torch.Tensor],
        *,
        max_grad_norm: float,
        optimizer: str = "main",
    ) -> None:
        """One step of optimizer ``optimizer`` on ``loss`` over ``params``, clipping their
        global grad norm to ``max_grad_norm`` (``<= 0`` disables).

        ``loss.backward()`` rather than ``manual_backward``: the latter only adds precision
        and distributed hooks (two rounds of callback hooks per step), and these modules
        train in fp32 on one device. Gradients of ``params`` are reset to None directly
        (``zero_grad`` through Lightning's wrapper costs more than a small update). The
        step goes through Lightning's optimizer wrapper, which counts ``global_step`` (once
        per step of any optimizer).
        """
        opt = self.optimizer(optimizer)
        for p in params:
            p.grad = None
        loss.backward()
        if max_grad_norm > 0:
            clip_grad_norm_(params, max_grad_norm)
        opt.step()

    def batch_to_device(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Lightning moves no batches in the ``dataloader_iter`` flavour: do it here (a no-op
        on CPU, where the tensors already are)."""
        if self.device.type == "cpu":
            return batch
        return {
            k: v.to(self.device, non_blocking=True) if isinstance(v, torch.Tensor) else v
            for k, v in batch.items()
        }

    # ---------------------------------------------------------------- logging
    def train_stats(self, *, env_step: int) -> dict[str, float]:
        """Schedule values logged with each flush (``train/epsilon``, ``train/lr``, ...)."""
        return {}

    # ---------------------------------------------------------------- checks
    def assert_finite(self, *, env_step: int) -> None:
        """Raise ``NonFiniteLossError`` naming the first non-finite ``train/*loss*`` value
        pending and its update (the how-manieth value of that metric it is: the gradient
        step for a loss logged once per step).

        Called before every metric flush and checkpoint, so a checkpoint never holds
        weights trained on a non-finite loss.
        """
        for name in sorted(self.metrics.names()):
            if not (name.startswith("train/") and "loss" in name):
                continue
            values = self.metrics.pending(name)
            finite = torch.isfinite(torch.stack([torch.as_tensor(v) for v in values]))
            if bool(finite.all()):
                continue
            first = int((~finite).nonzero()[0, 0])
            step = self.metrics.totals[name] - len(values) + first + 1
            raise NonFiniteLossError(
                f"non-finite loss {name} at update {step} (env step <= {env_step}); "
                "stopped, the last good checkpoint is kept"
            )

    # ---------------------------------------------------------------- state
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["rlbench_module"] = {
            "metrics": self.metrics.state_dict(),
            "metric_totals": dict(self.metrics.totals),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint["rlbench_module"]
        self.metrics.load_state_dict(state.get("metrics", {}))
        self.metrics.totals.clear()
        self.metrics.totals.update(state.get("metric_totals", {}))
