"""Discovering, loading, filtering and grouping run directories.

A *run directory* is what one training run of the engine leaves behind::

    <run_dir>/
      .hydra/config.yaml   # the fully composed Hydra config
      metrics.csv          # env_step + one (sparse) column per logged metric
      results.json         # final status and evaluation summary

A *sweep directory* (Hydra multirun) holds many run directories at any depth.

Grouping (:func:`resolve_grouping`): without explicit keys, runs are grouped by what differs
between them. The groups start from ``algo.name`` (``variant`` when runs set one) and
``env.id``; every other config key whose value differs across the runs is added when it splits
a group further, so keys that follow the algo or env preset add nothing. Never added: ``seed``
(groups are what the seeds replicate), keys of :data:`GROUPING_IGNORED_KEYS` and
:data:`GROUPING_IGNORED_PREFIXES` (resume, tags, logger, video, checkpointing and other
bookkeeping), path-valued keys, and keys written as the same interpolation in every run
(``${seed}``). Labels name the keys that differ: ``algo.double=true``, several joined by
``", "`` (``algo.double=true, algo.lr=0.001``), ``algo.name``/``variant``/``env.id`` by their
value alone (``dqn, CartPole-v1``).
"""

from __future__ import annotations

import argparse
import glob
import io
import json
import math
import os
import re
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
    "GROUPING_IGNORED_KEYS",
    "GROUPING_IGNORED_PREFIXES",
    "LABEL_SEP",
    "NAME_KEYS",
    "STATUS_KEY",
    "AnalysisError",
    "Grouping",
    "Run",
    "config_value",
    "discover_runs",
    "eval_policy",
    "filter_runs",
    "find_run_dirs",
    "flatten_config",
    "format_value",
    "group_label",
    "group_runs",
    "group_value",
    "has_key",
    "is_grouping_ignored",
    "is_run_dir",
    "load_run",
    "parse_filter",
    "resolve_group_keys",
    "resolve_grouping",
    "run_value",
    "varied_keys",
]

#: Group keys every default grouping starts from (``variant`` replaces ``algo.name`` when a
#: run sets it); the config keys that differ across the runs are added to them, see
#: :func:`resolve_grouping`.
DEFAULT_GROUP_KEYS: Final[tuple[str, ...]] = ("algo.name", "env.id")
#: Keys labelled by their value alone (``dqn``, ``CartPole-v1``); any other key is labelled
#: ``key=value`` (``algo.double=true``).
NAME_KEYS: Final[tuple[str, ...]] = ("variant", "algo.name", "env.id")
#: Config keys that never make a default group (``--group-by`` may still name them): the seed
#: (the replicate index), where a run resumed from, free-form labels, the ablation preset's
#: table of variants (each run's ``variant`` says which one it ran), and settings of how a run
#: is executed, logged or checkpointed rather than what it learns.
GROUPING_IGNORED_KEYS: Final[frozenset[str]] = frozenset(
    {
        "seed",
        "resume",
        "tags",
        "variants",
        "buffer.checkpoint",
        "env.resume_replay",
        "env.vectorization",
        "trainer.accelerator",
        "trainer.checkpoint_every",
        "trainer.eval_every",
        "trainer.log_every",
        "trainer.progress_bar",
        "trainer.torch_threads",
    }
)
#: Config subtrees that never make a default group: Hydra's own settings, the logger (its
#: names embed the seed) and video recording.
GROUPING_IGNORED_PREFIXES: Final[tuple[str, ...]] = ("hydra", "logger", "video", "variants")
#: Separator of the parts of a group label (``algo.double=true, algo.lr=0.001``).
LABEL_SEP: Final[str] = ", "
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
#: Last part of a key holding a path (``save_dir``, ``checkpoint_path``): never a group.
_PATH_LEAF: Final[re.Pattern[str]] = re.compile(r"(?:^|_)(?:dir|path|file)$")


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
        config: The composed Hydra config as a plain nested dict, interpolations resolved
            where possible.
        results: Parsed ``results.json`` or ``None`` when missing/unreadable.
        raw_config: The same config with interpolations as written (``${seed}``), or
            ``None`` when it is the same as ``config``.
    """

    path: Path
    config: dict[str, Any]
    results: dict[str, Any] | None = None
    raw_config: dict[str, Any] | None = field(default=None, repr=False)
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
    def eval_deterministic(self) -> bool:
        """Whether the run's evaluations played the deterministic (greedy / mode) policy:
        ``results.json``'s ``eval_deterministic``, else the config's
        ``trainer.eval_deterministic``, else ``True`` (runs from before the key existed
        evaluated greedily)."""
        value = (self.results or {}).get("eval_deterministic")
        if not isinstance(value, bool):
            value = config_value(self, "trainer.eval_deterministic")
        return value if isinstance(value, bool) else True

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


def _load_config(path: Path) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Load a Hydra ``config.yaml``: ``(config, raw)``, interpolations resolved when possible
    in ``config`` and as written in ``raw`` (``None`` when nothing was resolved)."""
    raw: Any = None
    try:
        from omegaconf import OmegaConf

        conf = OmegaConf.load(path)
        raw = OmegaConf.to_container(conf, resolve=False)
        try:
            container = OmegaConf.to_container(conf, resolve=True)
        except Exception:  # custom/hydra resolvers are unavailable outside the app
            container, raw = raw, None
    except ImportError:  # pragma: no cover - omegaconf is a project dependency
        with path.open(encoding="utf-8") as handle:
            container = yaml.safe_load(handle)
    if not isinstance(container, dict):
        raise AnalysisError(f"config is not a mapping: {path}")
    resolved = {str(key): value for key, value in container.items()}
    if not isinstance(raw, dict) or raw == container:
        return resolved, None
    return resolved, {str(key): value for key, value in raw.items()}


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
    config, raw = _load_config(run_dir / _CONFIG_REL)
    return Run(
        path=run_dir,
        config=config,
        results=_load_results(run_dir / _RESULTS_NAME),
        raw_config=raw,
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


def eval_policy(run: Run) -> str:
    """``greedy`` when the run evaluated its deterministic policy, else ``sampled``."""
    return "greedy" if run.eval_deterministic else "sampled"


# ------------------------------------------------------------------------------ grouping
def flatten_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Leaves of a nested config by dotted key (lists are leaves; an empty mapping is the
    leaf ``{}``): ``{"algo": {"lr": 0.1}, "tags": ["a"]}`` -> ``{"algo.lr": 0.1, "tags":
    ["a"]}``."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            if value:
                out.update(flatten_config(value, prefix=f"{name}."))
            else:
                out[name] = {}
        else:
            out[name] = value
    return out


def is_grouping_ignored(key: str) -> bool:
    """Whether ``key`` is left out of default groupings: it is in
    :data:`GROUPING_IGNORED_KEYS`, under one of :data:`GROUPING_IGNORED_PREFIXES`, or holds a
    path (last part ``dir``, ``path``, ``file`` or ending in ``_dir``/``_path``/``_file``)."""
    if key in GROUPING_IGNORED_KEYS:
        return True
    if any(key == p or key.startswith(p + ".") for p in GROUPING_IGNORED_PREFIXES):
        return True
    return bool(_PATH_LEAF.search(key.rsplit(".", 1)[-1]))


def _is_interpolation(value: Any) -> bool:
    return isinstance(value, str) and "${" in value


def _key_rank(key: str) -> tuple[int, str]:
    """Which of several keys that split runs the same way names the split: the name keys,
    then ``*.name``, then ``*._target_`` (the component's class), then the rest by name."""
    if key in NAME_KEYS:
        return (0, f"{NAME_KEYS.index(key):02d}")
    leaf = key.rsplit(".", 1)[-1]
    return (1 if leaf == "name" else 2 if leaf == "_target_" else 3, key)


def varied_keys(runs: Sequence[Run]) -> list[str]:
    """Config keys (dotted leaves) whose values differ across ``runs``.

    Left out: keys ignored by :func:`is_grouping_ignored` (``seed`` among them), and keys
    written as the same interpolation in every run's ``config.yaml`` (``${seed}``,
    ``ALE/${.game}``, ``${total_env_steps}``): they follow other keys. A key that some runs
    lack differs from any value.

    Returns:
        The keys in naming order: :data:`NAME_KEYS` first, then ``*.name`` keys, then
        ``*._target_`` keys, then the rest alphabetically.
    """
    if len(runs) < 2:
        return []
    flat = [flatten_config(run.config) for run in runs]
    raw = [
        resolved if run.raw_config is None else flatten_config(run.raw_config)
        for run, resolved in zip(runs, flat, strict=True)
    ]
    found: list[str] = []
    for key in sorted(set().union(*flat)):
        if is_grouping_ignored(key):
            continue
        values = {format_value(f[key]) if key in f else UNSET for f in flat}
        if len(values) < 2:
            continue
        written = [r.get(key, _MISSING) for r in raw]
        if _is_interpolation(written[0]) and all(w == written[0] for w in written):
            continue
        found.append(key)
    return sorted(found, key=_key_rank)


@dataclass(frozen=True)
class Grouping:
    """How runs are grouped and how groups are named.

    Attributes:
        keys: Dotted config keys; a group is one tuple of their values (see
            :func:`group_value`). They are the group columns of the report's tables.
        shown: The keys named in labels, in ``keys`` order: the keys whose values differ
            across the runs (all of ``keys`` when they were given explicitly).
        default: Whether ``keys`` came from the default rule, not ``--group-by``.
    """

    keys: tuple[str, ...]
    shown: tuple[str, ...]
    default: bool = True

    def label(self, values: Sequence[str]) -> str:
        """A group's label: ``key=value`` for each shown key (the bare value for
        :data:`NAME_KEYS`, the class name for a ``<component>._target_``) joined by
        :data:`LABEL_SEP`; ``all`` when no key is shown."""
        parts = [
            _label_part(key, value)
            for key, value in zip(self.keys, values, strict=True)
            if key in self.shown
        ]
        return LABEL_SEP.join(parts) if parts else "all"

    def hiding(self, *keys: str) -> Grouping:
        """The same grouping with ``keys`` left out of labels (e.g. the env in a per-env
        panel); when no shown key is left, labels fall back to the name keys that remain."""
        shown = tuple(k for k in self.shown if k not in keys)
        if not shown and self.default:
            shown = tuple(k for k in self.keys if k in NAME_KEYS and k not in keys)
        return Grouping(self.keys, shown, self.default)


def _label_part(key: str, value: str) -> str:
    if key in NAME_KEYS:
        return value
    if key.endswith("._target_"):
        return f"{key[: -len('._target_')]}={value.rsplit('.', 1)[-1]}"
    return f"{key}={value}"


def group_value(run: Run, key: str) -> str:
    """The string a run contributes to a group for ``key`` (:func:`format_value`;
    ``(unset)`` when its config lacks the key; ``variant`` falls back to ``algo.name``)."""
    value = run_value(run, key)
    if key == "variant" and value in (None, ""):
        value = config_value(run, "algo.name")
    if value is None and not has_key(run, key):
        return UNSET
    return format_value(value)


def _base_keys(runs: Sequence[Run]) -> list[str]:
    if any(config_value(run, "variant") not in (None, "") for run in runs):
        return ["variant", "env.id"]
    return list(DEFAULT_GROUP_KEYS)


def _partition(runs: Sequence[Run], keys: Sequence[str]) -> int:
    return len({tuple(group_value(run, k) for k in keys) for run in runs})


def resolve_grouping(
    runs: Sequence[Run], keys: Sequence[str] | None = None, *, validate: bool = True
) -> Grouping:
    """The grouping of ``runs``: ``keys`` when given, else the default rule.

    Default rule: start from ``algo.name`` (``variant`` when any run sets one; runs without
    one fall back to their ``algo.name``) and ``env.id``, then add, in the order of
    :func:`varied_keys`, each key that differs across the runs (``seed``, bookkeeping keys
    and interpolated copies left out) and splits a group further. A key that follows the keys
    before it (``algo.double`` across ``algo=dqn,ddqn``, ``env.game`` across envs) adds
    nothing and is skipped. Labels name only the keys whose values differ across the runs
    (``algo.double=true``); when none does, the name keys (``dqn, CartPole-v1``).

    Raises:
        AnalysisError: (``validate``) an empty key, no key, or a key that no run defines.
    """
    if keys is not None:
        resolved = [key.strip() for key in keys]
        if validate:
            for key in resolved:
                if not key:
                    raise AnalysisError("empty group-by key")
                if not any(has_key(run, key) for run in runs):
                    raise AnalysisError(f"unknown group-by key {key!r} (not in any run config)")
            if not resolved:
                raise AnalysisError("no group-by keys given")
        return Grouping(tuple(resolved), tuple(resolved), default=False)
    chosen = _base_keys(runs)
    size = _partition(runs, chosen)
    for key in varied_keys(runs):
        if key in chosen or (key == "algo.name" and "variant" in chosen):
            continue
        refined = _partition(runs, [*chosen, key])
        if refined > size:
            chosen.append(key)
            size = refined
    shown = tuple(k for k in chosen if _partition(runs, [k]) > 1)
    if not shown:
        shown = tuple(k for k in chosen if k in NAME_KEYS)
    return Grouping(tuple(chosen), shown, default=True)


def resolve_group_keys(runs: Sequence[Run], keys: Sequence[str] | None = None) -> list[str]:
    """The keys of :func:`resolve_grouping` (validated when given).

    Raises:
        AnalysisError: an empty key, or a key that no run defines.
    """
    return list(resolve_grouping(runs, keys).keys)


def group_label(run: Run, keys: Sequence[str]) -> str:
    """Label of ``run`` under explicit ``keys`` (see :meth:`Grouping.label`)."""
    grouping = Grouping(tuple(keys), tuple(keys), default=False)
    return grouping.label([group_value(run, k) for k in keys])


def group_runs(
    runs: Iterable[Run], keys: Sequence[str] | None = None
) -> dict[tuple[str, ...], list[Run]]:
    """Group runs by the (string-formatted) values of ``keys``.

    Args:
        runs: Runs to group.
        keys: Dotted config keys; ``None`` for the default rule of :func:`resolve_grouping`.

    Returns:
        ``{(value_1, ..., value_k): [runs sorted by (env, seed, path)]}`` sorted by group key.
        Runs lacking a key get ``"(unset)"`` in that position.
    """
    run_list = list(runs)
    resolved = resolve_grouping(run_list).keys if keys is None else [k.strip() for k in keys]
    groups: dict[tuple[str, ...], list[Run]] = {}
    for run in run_list:
        groups.setdefault(tuple(group_value(run, k) for k in resolved), []).append(run)
    return {key: sorted(members, key=_run_sort_key) for key, members in sorted(groups.items())}


def _run_sort_key(run: Run) -> tuple[str, int, str]:
    seed = run.seed
    return (run.env_id, seed if seed is not None else 2**62, str(run.path))
