"""End-of-sweep summary: a Hydra callback that prints a table of a multirun's jobs.

Registered in ``conf/train.yaml`` under ``hydra.callbacks``; it acts only in MULTIRUN mode::

    rlbench -m seed=0,1,2 algo=dqn,ddqn hydra/launcher=joblib

    sweep outputs/multirun/2026-01-01/12-00-00: 6 runs: 5 completed, 1 failed
    #  overrides              status     env steps  eval return  time (s)  error
    0  seed=0 algo=dqn        completed      50000        500.0     61.2
    ...

Each job's status comes from its ``results.json`` (written by ``rlbench.cli.run`` even when
the job fails), so the table works for every launcher (basic, joblib, submitit, ray): the
jobs may have run in other processes or on other machines. A job directory without
``results.json`` is reported as ``missing`` (killed, or it crashed before Hydra handed it to
the task). The table is also written to ``<sweep dir>/sweep_summary.txt``.

If the launcher re-raises a job's exception after the sweep (Hydra's basic sweeper does for
jobs that raised), ``on_multirun_end`` never runs; the table is then printed at exit instead.
"""

from __future__ import annotations

import atexit
import json
import math
import os
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TextIO

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

__all__ = [
    "SUMMARY_FILE",
    "JobStatus",
    "SweepSummary",
    "collect_jobs",
    "common_overrides",
    "format_table",
    "status_counts",
    "summarize",
]

#: File written into the sweep dir beside the jobs.
SUMMARY_FILE: Final[str] = "sweep_summary.txt"
#: Status of a job dir without ``results.json``.
MISSING: Final[str] = "missing"
_SKIP_DIRS: Final[frozenset[str]] = frozenset({".hydra", ".submitit", "report", "wandb"})
_COLUMNS: Final[tuple[str, ...]] = (
    "#",
    "overrides",
    "status",
    "env steps",
    "eval return",
    "time (s)",
    "error",
)
_RIGHT: Final[frozenset[str]] = frozenset({"#", "env steps", "eval return", "time (s)"})


@dataclass(frozen=True)
class JobStatus:
    """One job of a sweep, as read from its directory.

    Attributes:
        path: The job's run directory.
        num: Hydra's ``hydra.job.num`` (``None`` when ``.hydra/hydra.yaml`` is unreadable).
        overrides: The job's command-line overrides (``.hydra/overrides.yaml``).
        status: ``results.json`` status, or ``missing``.
        env_steps, eval_return, wall_time_s: From ``results.json`` (``None`` when absent).
        error: The failure message of a failed job (``""`` otherwise).
    """

    path: Path
    num: int | None
    overrides: tuple[str, ...]
    status: str
    env_steps: int | None = None
    eval_return: float | None = None
    wall_time_s: float | None = None
    error: str = ""


def _read_yaml(path: Path) -> Any:
    try:
        with path.open(encoding="utf-8") as handle:
            return yaml.load(handle, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except (OSError, yaml.YAMLError):
        return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _job_status(job_dir: Path) -> JobStatus:
    hydra_cfg = _read_yaml(job_dir / ".hydra" / "hydra.yaml")
    num: int | None = None
    if isinstance(hydra_cfg, dict):
        job = (hydra_cfg.get("hydra") or {}).get("job") or {}
        raw_num = job.get("num") if isinstance(job, dict) else None
        num = raw_num if isinstance(raw_num, int) and not isinstance(raw_num, bool) else None
    overrides = _read_yaml(job_dir / ".hydra" / "overrides.yaml")
    task = tuple(str(o) for o in overrides) if isinstance(overrides, list) else ()
    try:
        results = json.loads((job_dir / "results.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        results = None
    if not isinstance(results, dict):
        return JobStatus(job_dir, num, task, MISSING)
    steps = _number(results.get("env_steps"))
    return JobStatus(
        path=job_dir,
        num=num,
        overrides=task,
        status=str(results.get("status", MISSING)),
        env_steps=None if steps is None else int(steps),
        eval_return=_number(results.get("eval_return_mean")),
        wall_time_s=_number(results.get("wall_time_s")),
        error=" ".join(str(results.get("error") or "").split()),
    )


def collect_jobs(sweep_dir: str | os.PathLike[str]) -> list[JobStatus]:
    """Every job directory under ``sweep_dir`` (a directory holding ``.hydra/``), sorted by
    job number then path. Jobs do not nest; ``.submitit``, ``report`` and ``wandb`` folders
    are skipped."""
    root = Path(sweep_dir)
    found: list[Path] = []
    for dirpath, dirnames, _ in os.walk(root):
        here = Path(dirpath)
        if here != root and (here / ".hydra").is_dir():
            found.append(here)
            dirnames[:] = []
            continue
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
    jobs = [_job_status(d) for d in found]
    return sorted(jobs, key=lambda j: (j.num if j.num is not None else sys.maxsize, str(j.path)))


def _cell(value: float | None, digits: int) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def common_overrides(jobs: Sequence[JobStatus]) -> tuple[str, ...]:
    """Overrides every job shares (in the first job's order); empty for fewer than 2 jobs."""
    if len(jobs) < 2:
        return ()
    shared = set(jobs[0].overrides).intersection(*(set(j.overrides) for j in jobs[1:]))
    return tuple(o for o in jobs[0].overrides if o in shared)


def format_table(jobs: Sequence[JobStatus], *, max_error: int = 80) -> str:
    """A plain-text table, one line per job, columns aligned (numbers right-aligned).

    The overrides column shows what differs between jobs (see :func:`common_overrides`).
    Errors longer than ``max_error`` characters are cut with ``...``.
    """
    common = set(common_overrides(jobs))
    rows = [
        (
            "" if j.num is None else str(j.num),
            " ".join(o for o in j.overrides if o not in common) or j.path.name,
            j.status,
            "" if j.env_steps is None else str(j.env_steps),
            _cell(j.eval_return, 1),
            _cell(j.wall_time_s, 1),
            _clip(j.error, max_error),
        )
        for j in jobs
    ]
    widths = [max([len(c), *(len(r[i]) for r in rows)]) for i, c in enumerate(_COLUMNS)]

    def line(cells: Sequence[str]) -> str:
        parts = [
            cell.rjust(w) if name in _RIGHT else cell.ljust(w)
            for name, cell, w in zip(_COLUMNS, cells, widths, strict=True)
        ]
        return "  ".join(parts).rstrip()

    return "\n".join([line(_COLUMNS), *(line(r) for r in rows)])


def status_counts(jobs: Sequence[JobStatus]) -> str:
    """``"3 runs: 2 completed, 1 failed"`` (statuses by decreasing count, then by name)."""
    counts = Counter(j.status for j in jobs)
    parts = [f"{n} {s}" for s, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
    noun = "run" if len(jobs) == 1 else "runs"
    return f"{len(jobs)} {noun}" + (": " + ", ".join(parts) if parts else "")


def summarize(sweep_dir: str | os.PathLike[str]) -> str:
    """Heading, table and a hint to run the report, for the jobs under ``sweep_dir``."""
    jobs = collect_jobs(sweep_dir)
    lines = [f"sweep {sweep_dir}: {status_counts(jobs)}"]
    common = common_overrides(jobs)
    if common:
        lines.append("common overrides: " + " ".join(common))
    if jobs:
        lines.append(format_table(jobs))
        lines.append(f"report: rlbench-report {sweep_dir}")
    return "\n".join(lines)


class SweepSummary(Callback):
    """Hydra callback: prints :func:`summarize` of the sweep dir when a multirun ends.

    Args:
        write_file: Also write the summary to ``<sweep dir>/sweep_summary.txt``.
        stream: Where to print (default ``sys.stdout`` at print time).
    """

    def __init__(self, *, write_file: bool = True, stream: TextIO | None = None) -> None:
        self.write_file = write_file
        self.stream = stream
        self._pending: Path | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._pending = Path(str(config.hydra.sweep.dir))
        atexit.register(self._at_exit)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._pending = None
        self.report(Path(str(config.hydra.sweep.dir)))

    def _at_exit(self) -> None:
        """Print the table when the sweep was aborted (``on_multirun_end`` never ran)."""
        if self._pending is not None:
            sweep_dir, self._pending = self._pending, None
            self.report(sweep_dir)

    def report(self, sweep_dir: Path) -> str:
        """Print (and optionally write) the summary of ``sweep_dir``; returns it."""
        text = summarize(sweep_dir)
        print(text, file=self.stream or sys.stdout, flush=True)
        if self.write_file and sweep_dir.is_dir():
            tmp = sweep_dir / f".{SUMMARY_FILE}.tmp"
            tmp.write_text(text + "\n", encoding="utf-8")
            os.replace(tmp, sweep_dir / SUMMARY_FILE)
        return text
