"""The shared LightningModule of every algorithm.

An algorithm is a ``RLModule`` subclass that builds its networks in ``build`` (where the
observation and action spaces are known), turns a batch into a loss in ``training_step``
and exposes ``act`` -- the one call the DataModule makes into it. Everything else (env
stepping, evaluation, checkpoints, metric flushing) lives in the DataModule and callbacks.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import gymnasium as gym
import lightning as L
import numpy as np
import torch
from lightning.pytorch.core.optimizer import LightningOptimizer
from lightning.pytorch.plugins.precision import Precision
from lightning.pytorch.strategies import SingleDeviceStrategy
from lightning.pytorch.utilities.model_helpers import is_overridden

from rlbench.data.protocol import ReplaySpec, datamodule_of
from rlbench.errors import NonFiniteLossError

__all__ = ["MetricAccumulator", "RLModule", "ReplaySpec", "clip_grad_norm_"]


def clip_grad_norm_(params: list[torch.Tensor], max_norm: float) -> torch.Tensor:
    """Scale gradients in place so their global L2 norm is at most ``max_norm``.

    Same result as ``torch.nn.utils.clip_grad_norm_`` for finite gradients of parameters on
    one device, at a fraction of its cost (for a small MLP on the dev machine about 14 us on
    the CPU against 155 us), which matters when a whole DQN gradient step costs well under a
    millisecond. On the CPU the scale is a python float, so gradients under the bound are
    left untouched without a kernel; on accelerators it stays a tensor (no host sync).
    Returns the norm before clipping.
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


def _closure_is_noop(module: L.LightningModule) -> bool:
    """Whether Lightning's optimizer-step closure would only dispatch no-op hooks: plain
    single-device strategy and fp32 precision, no ``on_before_optimizer_step`` override."""
    trainer = module.trainer
    strategy = trainer.strategy
    return (
        type(strategy) is SingleDeviceStrategy
        and type(strategy.precision_plugin) is Precision
        and not is_overridden("on_before_optimizer_step", module, parent=L.LightningModule)
        and not any(
            is_overridden("on_before_optimizer_step", cb, parent=L.Callback)
            for cb in trainer.callbacks  # type: ignore[attr-defined]
        )
    )


class MetricAccumulator:
    """Collects scalar metrics between flushes without a device sync per step.

    Values are kept as given (tensors stay on device) and reduced to means only in
    ``compute``, which the logging callback calls every ``trainer.log_every`` env steps.
    """

    def __init__(self) -> None:
        self._values: defaultdict[str, list[torch.Tensor | float]] = defaultdict(list)

    def add(self, name: str, value: torch.Tensor | float) -> None:
        self._values[name].append(value)

    def pending(self, name: str) -> list[torch.Tensor | float]:
        return self._values.get(name, [])

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
    """Base of all algorithms: spaces, acting RNG, metric accumulation, finiteness checks.

    Args:
        name: algorithm name (used in run names and reports).
        lr: learning rate passed to the optimizer partial.
        seed: seeds the module's own acting generator.
    """

    def __init__(self, *, name: str, lr: float, seed: int = 0) -> None:
        super().__init__()
        self.name = name
        self.lr = lr
        self.metrics = MetricAccumulator()
        self.act_rng = np.random.default_rng([seed, 1])
        self.observation_space: gym.Space[Any] | None = None
        self.action_space: gym.Space[Any] | None = None
        self.built = False
        self._direct_step: bool | None = None  # see _optimizer_step

    # ---------------------------------------------------------------- building
    def setup(self, stage: str) -> None:
        self._direct_step = None  # decided again for each trainer (its callbacks may differ)
        if self.built:
            return
        dm = datamodule_of(self.trainer)
        self.observation_space, self.action_space = dm.observation_space, dm.action_space
        self.build(self.observation_space, self.action_space)
        self.built = True

    def build(self, observation_space: gym.Space[Any], action_space: gym.Space[Any]) -> None:
        """Create networks for these single-env spaces (raise ConfigError if unsupported)."""
        raise NotImplementedError

    # ---------------------------------------------------------------- acting
    def act(self, obs: np.ndarray, *, explore: bool, env_step: int) -> np.ndarray:
        """Actions ``(B, *action_shape)`` for observations ``(B, *obs_shape)``.

        ``explore=False`` is the deterministic evaluation policy; ``env_step`` keys
        exploration schedules.
        """
        raise NotImplementedError

    def gradient_step(
        self, loss: torch.Tensor, params: list[torch.Tensor], *, max_grad_norm: float
    ) -> None:
        """One optimizer step on ``loss`` over ``params``, clipping the global grad norm.

        ``loss.backward()`` rather than ``manual_backward``: the latter only adds precision
        and distributed hooks (two rounds of callback hooks, about 12% of a CartPole update
        here), and these modules train in fp32 on one device. Gradients are reset to None
        directly (``zero_grad`` through Lightning's wrapper costs ~100 us). The step counts
        ``global_step`` as Lightning's optimizer wrapper does; see ``_optimizer_step``.
        """
        opt = self.optimizers()
        assert not isinstance(opt, list)
        for p in params:
            p.grad = None
        loss.backward()
        if max_grad_norm > 0:
            clip_grad_norm_(params, max_grad_norm)
        self._optimizer_step(opt)

    def _optimizer_step(self, opt: LightningOptimizer) -> None:
        """``opt.step()``, without Lightning's closure machinery when nothing can observe it.

        Lightning's ``LightningOptimizer.step`` wraps the step in a closure that dispatches
        ``on_before_optimizer_step`` to every callback and to the module, through the
        strategy and the precision plugin: about 60 to 100 us per step on the dev machine,
        a tenth of a CartPole DQN update. With a plain single-device fp32 strategy and no
        callback or module overriding that hook, the closure does nothing, so the step is
        taken directly between the same progress hooks Lightning calls (``global_step`` and
        the profiler see the same); anything else takes Lightning's own path.
        """
        if self._direct_step is None:
            self._direct_step = _closure_is_noop(self)
        if self._direct_step:
            opt._on_before_step()
            opt.optimizer.step()
            opt._on_after_step()
        else:
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

    # ---------------------------------------------------------------- checks
    def assert_finite(self, *, env_step: int) -> None:
        """Raise ``NonFiniteLossError`` naming the gradient step of the first bad loss.

        Called before every metric flush and checkpoint, so a checkpoint never holds
        weights trained on a non-finite loss.
        """
        losses = self.metrics.pending("train/loss")
        if not losses:
            return
        finite = torch.isfinite(torch.stack([torch.as_tensor(v) for v in losses]))
        if bool(finite.all()):
            return
        first = int((~finite).nonzero()[0, 0])
        step = self.global_step - len(losses) + first + 1
        raise NonFiniteLossError(
            f"non-finite loss at gradient step {step} (env step <= {env_step}); "
            "stopped, the last good checkpoint is kept"
        )

    # ---------------------------------------------------------------- state
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["rlbench_module"] = {
            "act_rng": self.act_rng.bit_generator.state,
            "metrics": self.metrics.state_dict(),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.act_rng.bit_generator.state = checkpoint["rlbench_module"]["act_rng"]
        self.metrics.load_state_dict(checkpoint["rlbench_module"].get("metrics", {}))
