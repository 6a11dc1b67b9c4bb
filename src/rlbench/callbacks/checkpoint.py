"""``checkpoints/last.ckpt`` every ``trainer.checkpoint_every`` env steps, at the end, and on
Ctrl-C (at the next step boundary, so the saved state is consistent)."""

from __future__ import annotations

import signal
from pathlib import Path
from types import FrameType
from typing import Any

import lightning as L

from rlbench.data.protocol import datamodule_of


def was_interrupted(trainer: L.Trainer) -> bool:
    """Whether this fit stopped on Ctrl-C: the end-of-training evaluation and metric flush
    are then skipped (the checkpoint holds the unflushed metrics), so the resumed run
    writes exactly the rows an uninterrupted one would."""
    return any(getattr(cb, "interrupted", False) for cb in trainer.callbacks)  # type: ignore[attr-defined]


class CheckpointCallback(L.Callback):
    """Saves a resumable checkpoint; the first Ctrl-C saves and stops cleanly, a second one
    interrupts at once."""

    def __init__(self, *, dirpath: str | Path, every: int) -> None:
        self.dirpath = Path(dirpath)
        self.every = every
        self.last_save_step = 0
        self.interrupted = False
        self._previous_handler: Any = None

    @property
    def path(self) -> Path:
        return self.dirpath / "last.ckpt"

    @property
    def state_key(self) -> str:
        return "CheckpointCallback"

    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        if self.interrupted:  # second Ctrl-C: give up waiting for a step boundary
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt
        self.interrupted = True

    def on_train_start(self, trainer: L.Trainer, module: Any) -> None:
        try:
            self._previous_handler = signal.signal(signal.SIGINT, self._on_sigint)
        except ValueError:  # not the main thread (e.g. some launchers): no graceful Ctrl-C
            self._previous_handler = None

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
        if self._previous_handler is not None:
            signal.signal(signal.SIGINT, self._previous_handler)
            self._previous_handler = None

    def state_dict(self) -> dict[str, Any]:
        return {"last_save_step": self.last_save_step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.last_save_step = state["last_save_step"]
