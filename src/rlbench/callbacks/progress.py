"""A rich progress bar keyed on env steps (Lightning's loses its total on resume)."""

from __future__ import annotations

import time
from typing import Any

import lightning as L
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from rlbench.data.protocol import datamodule_of


class EnvStepProgressBar(L.Callback):
    """Shows env steps done of ``total_env_steps`` and the latest returns; refreshes at most
    ``refresh_hz`` times a second so it costs nothing per step."""

    def __init__(self, *, total: int, refresh_hz: float = 4.0) -> None:
        self.total = total
        self.period = 1.0 / refresh_hz
        self._next = 0.0
        self.progress: Progress | None = None
        self.task: Any = None

    def on_train_start(self, trainer: L.Trainer, module: Any) -> None:
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("env steps"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
            auto_refresh=False,
        )
        self.progress.start()
        self.task = self.progress.add_task(
            module.name, total=self.total, completed=datamodule_of(trainer).env_steps, info=""
        )

    def _update(self, trainer: L.Trainer, module: Any, force: bool = False) -> None:
        now = time.monotonic()
        if self.progress is None or (now < self._next and not force):
            return
        self._next = now + self.period
        info = []
        for cb in trainer.callbacks:  # type: ignore[attr-defined]
            last = getattr(cb, "last", None)
            if isinstance(last, dict) and "eval/return_mean" in last:
                info.append(f"eval {last['eval/return_mean']:.1f}")
        done = datamodule_of(trainer).env_steps
        self.progress.update(self.task, completed=done, info=" ".join(info))
        self.progress.refresh()

    def on_train_batch_end(self, trainer: L.Trainer, module: Any, *args: Any) -> None:
        self._update(trainer, module)

    def on_train_end(self, trainer: L.Trainer, module: Any) -> None:
        self._update(trainer, module, force=True)
        self.teardown(trainer, module, "fit")

    def teardown(self, trainer: L.Trainer, module: Any, stage: str) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
