"""``checkpoints/last.ckpt`` every ``trainer.checkpoint_every`` env steps, at the end, and on
Ctrl-C or SIGTERM (at the next step boundary, so the saved state is consistent).
(``checkpoints/best.ckpt``, the weights of the best evaluation, is written by
``callbacks.evaluation.EvalCallback``, which holds the evaluations.)

SIGTERM is what ``kill``, SLURM (before preemption and at the time limit) and container
runtimes send before they stop a process. In a submitit job (``hydra/launcher=submitit_*``)
the signal submitit announces preemption and time-outs with (``SUBMITIT_PREEMPT_SIGNAL``,
USR2 by default) stops the run the same way; ``rlbench.cli`` then hands it to submitit,
which requeues the job.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from types import FrameType
from typing import Any

import lightning as L

from rlbench.data.protocol import datamodule_of

#: In ``<run dir>/checkpoints/``: the resumable checkpoint of the latest state, and the
#: weights of the best evaluation so far (``trainer.keep_best``; written by ``EvalCallback``).
LAST_CHECKPOINT = "last.ckpt"
BEST_CHECKPOINT = "best.ckpt"


def preemption_signal() -> signal.Signals | None:
    """The signal submitit sends a job before preemption or its time limit, when this
    process is a submitit job (``SUBMITIT_EXECUTOR`` is set); else ``None``."""
    if not os.environ.get("SUBMITIT_EXECUTOR"):
        return None
    sig = getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2"), None)
    return sig if isinstance(sig, signal.Signals) else None


def stop_signals() -> tuple[signal.Signals, ...]:
    """The signals that stop a run at the next step boundary with a checkpoint."""
    preempt = preemption_signal()
    return (signal.SIGINT, signal.SIGTERM, *([preempt] if preempt is not None else []))


def was_interrupted(trainer: L.Trainer) -> bool:
    """Whether this fit stopped on Ctrl-C or SIGTERM: the end-of-training evaluation and
    metric flush are then skipped (the checkpoint holds the unflushed metrics), so the
    resumed run writes exactly the rows an uninterrupted one would."""
    return any(getattr(cb, "interrupted", False) for cb in trainer.callbacks)  # type: ignore[attr-defined]


class CheckpointCallback(L.Callback):
    """Saves a resumable checkpoint; the first Ctrl-C (SIGTERM, submitit's preemption
    signal) saves and stops cleanly, a second one interrupts at once.

    ``stop_signal`` is the signal that stopped the run (``None``: none did, or the run was
    stopped by setting ``interrupted``).
    """

    def __init__(self, *, dirpath: str | Path, every: int) -> None:
        self.dirpath = Path(dirpath)
        self.every = every
        self.last_save_step = 0
        self.interrupted = False
        self.stop_signal: signal.Signals | None = None
        self._original_handlers: dict[signal.Signals, Any] = {}

    @property
    def path(self) -> Path:
        return self.dirpath / LAST_CHECKPOINT

    @property
    def state_key(self) -> str:
        return "CheckpointCallback"

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if not self.interrupted:
            self.interrupted = True
            self.stop_signal = signal.Signals(signum)
            return
        # a second signal: give up waiting for a step boundary
        original = self._original_handlers.get(signal.Signals(signum))
        self._restore_handlers()
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        if callable(original):  # e.g. submitit's requeue
            original(signum, frame)
        elif original != signal.SIG_IGN:
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)

    def setup(self, trainer: L.Trainer, module: Any, stage: str) -> None:
        # before Lightning installs its own SIGTERM handler (which ends the fit with exit
        # status 0 and no checkpoint): the handlers to put back at the end
        self._original_handlers = {sig: signal.getsignal(sig) for sig in stop_signals()}

    def on_train_start(self, trainer: L.Trainer, module: Any) -> None:
        try:
            for sig in self._original_handlers:
                signal.signal(sig, self._on_signal)
        except ValueError:  # not the main thread (e.g. some launchers): no graceful stop
            self._original_handlers = {}

    def _restore_handlers(self) -> None:
        for sig, handler in self._original_handlers.items():
            if handler is not None:
                signal.signal(sig, handler)
        self._original_handlers = {}

    def save(self, trainer: L.Trainer, module: Any) -> None:
        env_step = datamodule_of(trainer).env_steps
        module.assert_finite(env_step=env_step)
        self.last_save_step = env_step
        trainer.save_checkpoint(self.path, weights_only=False)

    def on_train_batch_end(self, trainer: L.Trainer, module: Any, *args: Any) -> None:
        env_step = datamodule_of(trainer).env_steps
        if self.interrupted:
            self.save(trainer, module)
            trainer.should_stop = True
        elif self.every > 0 and env_step // self.every > self.last_save_step // self.every:
            self.save(trainer, module)

    def on_train_end(self, trainer: L.Trainer, module: Any) -> None:
        if self.last_save_step != datamodule_of(trainer).env_steps or not self.path.exists():
            self.save(trainer, module)

    def teardown(self, trainer: L.Trainer, module: Any, stage: str) -> None:
        self._restore_handlers()

    def state_dict(self) -> dict[str, Any]:
        return {"last_save_step": self.last_save_step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.last_save_step = state["last_save_step"]
