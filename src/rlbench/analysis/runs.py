"""Discovering, loading, filtering and grouping run directories.

A *run directory* is what one training run of the engine leaves behind::

    <run_dir>/
      .hydra/config.yaml   # the fully composed Hydra config
      metrics.csv          # env_step + one (sparse) column per logged metric
      results.json         # final status and evaluation summary

A *sweep directory* (Hydra multirun) holds many run directories at any depth.
"""

from __future__ import annotations

import argparse
import glob
import io
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, NoReturn

import numpy as np
import numpy.typing as npt
import pandas as pd
import yaml

__all__ = [
    "DEFAULT_EXCLUDED_STATUSES",
    "DEFAULT_GROUP_KEYS",
    "EVAL_METRIC",
    "STATUS_KEY",
    "AnalysisError",
    "Run",
    "config_value",
    "discover_runs",
    "filter_runs",
    "find_run_dirs",
    "format_value",
    "group_runs",
    "has_key",
    "is_run_dir",
    "load_run",
    "parse_filter",
    "resolve_group_keys",
    "run_value",
]

#: Group keys used when none are given (``variant`` replaces ``algo.name`` when set, see
#: :func:`resolve_group_keys`).
DEFAULT_GROUP_KEYS: Final[tuple[str, ...]] = ("algo.name", "env.id")
#: Statuses (``results.json``) whose runs are left out of statistics unless asked for:
#: ``unknown`` is a run without ``results.json`` (still running, or killed): its last logged
#: evaluation is not its final score.
DEFAULT_EXCLUDED_STATUSES: Final[frozenset[str]] = frozenset({"failed", "interrupted", "unknown"})
#: Pseudo-key that :func:`run_value` / :func:`filter_runs` read from ``results.json``.
STATUS_KEY: Final[str] = "status"
#: Metric column holding the mean evaluation return.
EVAL_METRIC: Final[str] = "eval/return_mean"
#: Status reported for a run without a readable ``results.json``.
UNKNOWN_STATUS: Final[str] = "unknown"
#: Placeholder for a group key a run's config does not define.
UNSET: Final[str] = "(unset)"

_CONFIG_REL: Final[Path] = Path(".hydra") / "config.yaml"
_METRICS_NAME: Final[str] = "metrics.csv"
_RESULTS_NAME: Final[str] = "results.json"
_GLOB_CHARS: Final[frozenset[str]] = frozenset("*?[")
_MISSING: Final[object] = object()


class AnalysisError(ValueError):
    """Bad user input (paths, filters, group keys); the CLI reports it and exits with 2."""


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` that raises :class:`AnalysisError` instead of exiting, so
    the ``rlbench-report`` and ``rlbench-viz`` CLIs report bad arguments like other bad input."""

    def error(self, message: str) -> NoReturn:
        raise AnalysisError(message)


@dataclass(eq=False)
class Run:
    """One run directory.

    Attributes:
        path: The run directory.
        config: The composed Hydra config as a plain nested dict.
        results: Parsed ``results.json`` or ``None`` when missing/unreadable.
    """

    path: Path
    config: dict[str, Any]
    results: dict[str, Any] | None = None
    _metrics: pd.DataFrame | None = field(default=None, repr=False)

    @property
    def metrics(self) -> pd.DataFrame:
        """``metrics.csv`` as a DataFrame of shape ``(num_rows, 1 + num_metrics)``.

        Loaded on first access and cached. Empty cells (metric not logged on that row) are NaN.
        An ``env_step`` column is always present (empty frame when the file is missing/empty).
        """
        if self._metrics is None:
            self._metrics = _read_metrics(self.path / _METRICS_NAME)
        return self._metrics

    @property
    def status(self) -> str:
        """``results.json`` status (``completed``/``failed``/``interrupted``) or ``unknown``."""
        if self.results is None:
            return UNKNOWN_STATUS
        return str(self.results.get("status", UNKNOWN_STATUS))

    @property
    def seed(self) -> int | None:
        """The config's ``seed`` (``None`` when absent or not an integer)."""
        value = self.config.get("seed")
        if isinstance(value, bool):
            return None
        if isinstance(value, int):
            return value
        try:
            return int(str(value))
        except ValueError:
            return None

    @property
    def env_id(self) -> str:
        """``env.id`` (falling back to ``env.name``), or ``(unset)``."""
        for key in ("env.id", "env.name"):
            value = config_value(self, key)
            if value is not None:
                return format_value(value)
        return UNSET

    def eval_curve(
        self, metric: str = EVAL_METRIC
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """Logged points of ``metric`` against ``env_step``.

        Returns:
            ``(steps, values)``: two float arrays of shape ``(num_points,)``, sorted by step,
            NaN rows dropped, duplicate steps collapsed to their last logged value.
        """
        frame = self.metrics
        if metric not in frame.columns:
            return np.zeros(0, dtype=np.float64), np.zeros(0, dtype=np.float64)
        sub = frame[["env_step", metric]].apply(pd.to_numeric, errors="coerce").dropna()
        sub = sub.drop_duplicates(subset="env_step", keep="last").sort_values("env_step")
        return (
            sub["env_step"].to_numpy(dtype=np.float64),
            sub[metric].to_numpy(dtype=np.float64),
        )

    def final_score(self) -> tuple[float | None, str]:
        """Final raw score of the run and where it came from.

        Returns:
            ``(score, source)``: ``results.json``'s ``eval_return_mean`` when it is a finite
            number, else the last logged ``eval/return_mean`` in ``metrics.csv``, else
            ``(None, "none")``.
        """
        if self.results is not None:
            value = _as_float(self.results.get("eval_return_mean"))
            if value is not None:
                return value, _RESULTS_NAME
        _, values = self.eval_curve()
        if len(values):
            return float(values[-1]), _METRICS_NAME
        return None, "none"


def _as_float(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _read_metrics(path: Path) -> pd.DataFrame:
    """``metrics.csv`` as a frame. A run still writing may be caught mid-append: a last line
    without its newline is incomplete (``150`` read as ``15``) and is left out."""
    empty = pd.DataFrame({"env_step": pd.Series([], dtype=float)})
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, UnicodeDecodeError):
        return empty
    if not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    try:
        frame = pd.read_csv(io.StringIO(text))
    except (pd.errors.EmptyDataError, pd.errors.ParserError):
        return empty
    if "env_step" not in frame.columns:
        if "step" in frame.columns:
            frame = frame.rename(columns={"step": "env_step"})
        else:
            frame["env_step"] = float("nan")
    return frame


def _load_config(path: Path) -> dict[str, Any]:
    """Load a Hydra ``config.yaml``, resolving interpolations when possible."""
    try:
        from omegaconf import OmegaConf

        conf = OmegaConf.load(path)
        try:
            container = OmegaConf.to_container(conf, resolve=True)
        except Exception:  # custom/hydra resolvers are unavailable outside the app
            container = OmegaConf.to_container(conf, resolve=False)
    except ImportError:  # pragma: no cover - omegaconf is a project dependency
        with path.open(encoding="utf-8") as handle:
            container = yaml.safe_load(handle)
    if not isinstance(container, dict):
        raise AnalysisError(f"config is not a mapping: {path}")
    return {str(key): value for key, value in container.items()}


def _load_results(path: Path) -> dict[str, Any] | None:
    try:
        with path.open(encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def is_run_dir(path: Path, *, include_incomplete: bool = False) -> bool:
    """A run dir holds ``.hydra/config.yaml`` and ``metrics.csv`` (or at least
    ``results.json``, so that runs that failed before logging are still listed).

    With ``include_incomplete``, ``.hydra/config.yaml`` alone is enough (a run that has just
    started and not logged yet; the visualizer lists those).
    """
    if not (path / _CONFIG_REL).is_file():
        return False
    return (
        include_incomplete or (path / _METRICS_NAME).is_file() or (path / _RESULTS_NAME).is_file()
    )


def load_run(path: str | os.PathLike[str], *, include_incomplete: bool = False) -> Run:
    """Load one run directory (metrics are read lazily).

    Raises:
        AnalysisError: when ``path`` is not a run directory (see :func:`is_run_dir`).
    """
    run_dir = Path(path)
    if not is_run_dir(run_dir, include_incomplete=include_incomplete):
        raise AnalysisError(f"not a run directory: {run_dir}")
    return Run(
        path=run_dir,
        config=_load_config(run_dir / _CONFIG_REL),
        results=_load_results(run_dir / _RESULTS_NAME),
    )


def find_run_dirs(root: Path, *, include_incomplete: bool = False) -> list[Path]:
    """Run directories at or under ``root`` (runs do not nest), in sorted walk order."""
    if is_run_dir(root, include_incomplete=include_incomplete):
        return [root]
    found: list[Path] = []
    for dirpath, dirnames, _ in os.walk(root):
        here = Path(dirpath)
        if is_run_dir(here, include_incomplete=include_incomplete):
            found.append(here)
            dirnames[:] = []  # runs do not nest
            continue
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))  # .hydra, .submitit
    return found


def discover_runs(paths: Sequence[str | os.PathLike[str]]) -> list[Run]:
    """Find every run directory under ``paths``.

    Each path may be a run directory, a sweep directory (searched recursively for directories
    holding ``.hydra/config.yaml`` and ``metrics.csv``) or a glob pattern (``**`` allowed).
    Duplicates are removed; the result is sorted by path.

    Raises:
        AnalysisError: a path (or glob) that matches nothing, or no run found at all.
    """
    seen: dict[Path, Path] = {}
    for raw in paths:
        text = os.fspath(raw)
        if any(ch in text for ch in _GLOB_CHARS) and not Path(text).exists():
            matches = [Path(p) for p in sorted(glob.glob(text, recursive=True))]
            if not matches:
                raise AnalysisError(f"no files match: {text}")
        else:
            if not Path(text).exists():
                raise AnalysisError(f"path does not exist: {text}")
            matches = [Path(text)]
        for match in matches:
            if not match.is_dir():
                continue
            for run_dir in find_run_dirs(match):
                seen.setdefault(run_dir.resolve(), run_dir)
    if not seen:
        joined = ", ".join(os.fspath(p) for p in paths)
        raise AnalysisError(f"no runs found in: {joined}")
    return [load_run(seen[key]) for key in sorted(seen)]


def _lookup(config: Mapping[str, Any], key: str) -> Any:
    node: Any = config
    for part in key.split("."):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return _MISSING
    return node


def config_value(run: Run, key: str, *, default: Any = None) -> Any:
    """Dotted lookup in a run's config, e.g. ``config_value(run, "algo.name")``.

    Returns ``default`` when any part of the path is missing.
    """
    value = _lookup(run.config, key)
    return default if value is _MISSING else value


def has_key(run: Run, key: str) -> bool:
    """Whether ``key`` is defined for ``run`` (config key or the ``status`` pseudo-key)."""
    if key == STATUS_KEY and _lookup(run.config, key) is _MISSING:
        return True
    return _lookup(run.config, key) is not _MISSING


def run_value(run: Run, key: str) -> Any:
    """Config value for ``key``; ``status`` reads ``results.json`` unless the config has it."""
    value = _lookup(run.config, key)
    if value is _MISSING:
        return run.status if key == STATUS_KEY else None
    return value


def format_value(value: Any) -> str:
    """String form used for filtering and group labels (``true``/``false``/``null`` for
    YAML scalars, ``a,b`` for lists)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ",".join(format_value(v) for v in value)
    return str(value)


def parse_filter(expr: str) -> tuple[str, str, bool]:
    """Parse ``key=value`` (or ``key!=value``) into ``(key, value, negate)``.

    Raises:
        AnalysisError: when ``expr`` is not of that form.
    """
    negate = "!=" in expr
    key, sep, value = expr.partition("!=" if negate else "=")
    key = key.strip()
    if not sep or not key or any(ch.isspace() for ch in key):
        raise AnalysisError(f"malformed filter {expr!r} (expected key=value)")
    return key, value.strip(), negate


def _matches(run: Run, key: str, value: str) -> bool:
    actual = run_value(run, key)
    if actual is None and not has_key(run, key):
        return False
    if isinstance(actual, list | tuple) and value in {format_value(v) for v in actual}:
        return True  # e.g. tags=baseline
    return format_value(actual) == value


def filter_runs(runs: Iterable[Run], filters: Sequence[str]) -> list[Run]:
    """Keep runs matching every filter.

    Filters are ``key=value`` (dotted config key; the config value is compared as a string,
    see :func:`format_value`; list values such as ``tags`` match if any element matches) or
    ``key!=value``. ``status=completed`` compares against ``results.json``.

    Raises:
        AnalysisError: on a malformed filter.
    """
    parsed = [parse_filter(f) for f in filters]
    return [
        run
        for run in runs
        if all(_matches(run, key, value) != negate for key, value, negate in parsed)
    ]


def resolve_group_keys(runs: Sequence[Run], keys: Sequence[str] | None = None) -> list[str]:
    """Validate ``keys`` (or pick the defaults) for :func:`group_runs`.

    Default: ``["algo.name", "env.id"]``, or ``["variant", "env.id"]`` when any run sets
    ``variant`` (runs without one then fall back to their ``algo.name``).

    Raises:
        AnalysisError: an empty key, or a key that no run defines.
    """
    if keys is None:
        if any(config_value(run, "variant") not in (None, "") for run in runs):
            return ["variant", "env.id"]
        return list(DEFAULT_GROUP_KEYS)
    resolved: list[str] = []
    for key in keys:
        key = key.strip()
        if not key:
            raise AnalysisError("empty group-by key")
        if not any(has_key(run, key) for run in runs):
            raise AnalysisError(f"unknown group-by key {key!r} (not in any run config)")
        resolved.append(key)
    if not resolved:
        raise AnalysisError("no group-by keys given")
    return resolved


def _group_value(run: Run, key: str) -> str:
    value = run_value(run, key)
    if key == "variant" and value in (None, ""):
        value = config_value(run, "algo.name")
    if value is None and not has_key(run, key):
        return UNSET
    return format_value(value)


def group_runs(
    runs: Iterable[Run], keys: Sequence[str] | None = None
) -> dict[tuple[str, ...], list[Run]]:
    """Group runs by the (string-formatted) values of ``keys``.

    Args:
        runs: Runs to group.
        keys: Dotted config keys; ``None`` for the defaults of :func:`resolve_group_keys`.

    Returns:
        ``{(value_1, ..., value_k): [runs sorted by (env, seed, path)]}`` sorted by group key.
        Runs lacking a key get ``"(unset)"`` in that position.
    """
    run_list = list(runs)
    resolved = resolve_group_keys(run_list, keys) if keys is None else [k.strip() for k in keys]
    groups: dict[tuple[str, ...], list[Run]] = {}
    for run in run_list:
        groups.setdefault(tuple(_group_value(run, k) for k in resolved), []).append(run)
    return {key: sorted(members, key=_run_sort_key) for key, members in sorted(groups.items())}


def _run_sort_key(run: Run) -> tuple[str, int, str]:
    seed = run.seed
    return (run.env_id, seed if seed is not None else 2**62, str(run.path))
