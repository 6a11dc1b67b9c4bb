"""Loggers keyed on env steps, and atomic checkpoint writes."""

from __future__ import annotations

import csv
import math
import os
import tempfile
from argparse import Namespace
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.loggers.logger import Logger, rank_zero_experiment
from lightning.pytorch.utilities import rank_zero_only


def _fmt(value: float) -> str:
    return repr(float(value)) if math.isfinite(value) else str(value)


class EnvStepCSVLogger(Logger):
    """Writes ``metrics.csv``: column ``env_step`` then one column per metric name.

    Each ``log_metrics`` call is one row (empty cells for metrics not in that call). The file
    is rewritten only when a new metric name appears, and on resume rows newer than the
    checkpoint are dropped (``truncate_after``) so a resumed run's file equals an
    uninterrupted one. Unlike Lightning's CSVLogger it never deletes an existing file.
    """

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = Path(path)
        self.columns: list[str] = ["env_step"]
        self.rows: list[dict[str, str]] = []
        if self.path.exists():
            with self.path.open(newline="") as f:
                reader = csv.DictReader(f)
                self.columns = list(reader.fieldnames or ["env_step"])
                self.rows = list(reader)

    @property
    def name(self) -> str:
        return "csv"

    @property
    def version(self) -> str:
        return ""

    @property
    @rank_zero_experiment
    def experiment(self) -> None:
        return None

    @rank_zero_only
    def log_hyperparams(
        self, params: dict[str, Any] | Namespace, *args: Any, **kwargs: Any
    ) -> None:
        """Hyperparameters live in ``.hydra/config.yaml``; nothing to do."""

    def truncate_after(self, env_step: int) -> None:
        """Drop rows logged after ``env_step`` (written after the checkpoint we resume from)."""
        kept = [r for r in self.rows if int(float(r["env_step"])) <= env_step]
        if len(kept) != len(self.rows):
            self.rows = kept
            self._rewrite()

    def _rewrite(self) -> None:
        tmp = self.path.with_suffix(".csv.tmp")
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.columns)
            writer.writeheader()
            writer.writerows(self.rows)
        os.replace(tmp, self.path)

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        row = {"env_step": str(int(step or 0))}
        row.update({k: _fmt(v) for k, v in metrics.items()})
        self.rows.append(row)
        new = [k for k in row if k not in self.columns]
        if new or not self.path.exists():
            self.columns += sorted(new)
            self._rewrite()
            return
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, fieldnames=self.columns).writerow(row)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes checkpoints to a temp file *beside* the target, fsyncs, then renames.

    Lightning's default goes through a temp file in ``$TMPDIR``, which is not atomic when
    that is another filesystem. Loading is ``weights_only`` (checkpoints hold tensors,
    bytes and python containers only).
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None
    ) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def load_checkpoint(
        self, path: str | Path, map_location: Any | None = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        return load_checkpoint(path, map_location=map_location)


def load_checkpoint(path: str | Path, *, map_location: Any | None = "cpu") -> dict[str, Any]:
    """Load a checkpoint or raise ``CheckpointError`` in one line."""
    from rlbench.errors import CheckpointError

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"corrupt checkpoint {path}: {reason}") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise CheckpointError(f"corrupt checkpoint {path}: not a Lightning checkpoint")
    return ckpt
