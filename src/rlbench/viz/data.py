"""What the visualizer shows, without any web code: a live index of run directories, table
rows, filters, config diffs, videos and aggregated curves (IQM over seeds with bootstrap CI
bands from :mod:`rlbench.analysis.stats`).

Everything here is plain Python, so it is unit-testable; :mod:`rlbench.viz.app` only lays it
out with Dash.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from rlbench.analysis.runs import (
    EVAL_METRIC,
    AnalysisError,
    Grouping,
    Run,
    config_value,
    find_run_dirs,
    format_value,
    group_value,
    load_run,
    resolve_grouping,
)
from rlbench.analysis.runs import group_label as _group_label
from rlbench.analysis.stats import align_curves, iqm_curve

__all__ = [
    "FALLBACK_METRIC",
    "FILTER_KEYS",
    "RUNNING",
    "CurveGroup",
    "RunEntry",
    "RunIndex",
    "config_diff",
    "default_metric",
    "flatten_config",
    "group_label",
    "matches_filters",
]

FloatArray = npt.NDArray[np.float64]

#: Filters of the run list: name -> how to read it from a run.
FILTER_KEYS: Final[tuple[str, ...]] = ("algo", "env", "seed", "tags", "status")
#: Metric shown when a run never evaluated (e.g. it is still before its first evaluation).
FALLBACK_METRIC: Final[str] = "rollout/episode_return"
#: Status of a run without ``results.json`` whose files changed recently.
RUNNING: Final[str] = "running"
_VIDEO_DIR: Final[str] = "videos"
_VIDEO_SUFFIX: Final[str] = ".mp4"
_WATCHED: Final[tuple[str, ...]] = (".hydra/config.yaml", "metrics.csv", "results.json")
_CACHE_SIZE: Final[int] = 256

Signature = tuple[tuple[int, int], ...]


def _signature(run_dir: Path) -> Signature:
    """``(mtime_ns, size)`` of the files a run entry is built from (``(0, -1)`` if absent)."""
    sig = []
    for name in _WATCHED:
        try:
            st = (run_dir / name).stat()
        except OSError:
            sig.append((0, -1))
        else:
            sig.append((st.st_mtime_ns, st.st_size))
    return tuple(sig)


def _natural_key(name: str) -> tuple[Any, ...]:
    """``eval_900.mp4`` before ``eval_1000.mp4``."""
    parts: list[Any] = []
    digits = ""
    for ch in name:
        if ch.isdigit():
            digits += ch
            continue
        if digits:
            parts.append((0, int(digits)))
            digits = ""
        parts.append((1, ch))
    if digits:
        parts.append((0, int(digits)))
    return tuple(parts)


@dataclass
class RunEntry:
    """One run as the visualizer sees it.

    Attributes:
        id: Path relative to the outputs dir (POSIX separators): the row id in the table.
        token: Short opaque id used in video URLs (no path in URLs).
        run: The loaded run (config, results, lazily read metrics).
        status: ``results.json`` status, ``running`` (no ``results.json`` yet, files written
            within the running window), or ``unknown``.
        updated: Latest modification time of the watched files (seconds since the epoch).
        signature: ``(mtime_ns, size)`` of the watched files; changes when the run writes.
        videos: ``videos/*.mp4`` files, natural-sorted by name.
    """

    id: str
    token: str
    run: Run
    status: str
    updated: float
    signature: Signature
    videos: list[Path] = field(default_factory=list)
    _row: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def algo(self) -> str:
        return format_value(config_value(self.run, "algo.name", default=""))

    @property
    def env(self) -> str:
        return self.run.env_id

    @property
    def tags(self) -> list[str]:
        tags = config_value(self.run, "tags", default=[])
        return [format_value(t) for t in tags] if isinstance(tags, list) else [format_value(tags)]

    def filter_values(self, key: str) -> list[str]:
        """Values this run offers to filter ``key`` (one of :data:`FILTER_KEYS`)."""
        if key == "algo":
            return [self.algo]
        if key == "env":
            return [self.env]
        if key == "seed":
            return [] if self.run.seed is None else [str(self.run.seed)]
        if key == "tags":
            return self.tags
        if key == "status":
            return [self.status]
        raise AnalysisError(f"unknown filter {key!r}; allowed: {', '.join(FILTER_KEYS)}")

    def last_env_step(self) -> int | None:
        """``results.json``'s ``env_steps``, else the largest ``env_step`` logged so far."""
        steps = (self.run.results or {}).get("env_steps")
        if isinstance(steps, int) and not isinstance(steps, bool) and self.status != RUNNING:
            return steps
        column = self.run.metrics["env_step"]
        values = column.to_numpy(dtype=np.float64, na_value=np.nan)
        finite = values[np.isfinite(values)]
        return int(finite.max()) if finite.size else None

    def row(self) -> dict[str, Any]:
        """The table row (JSON-serializable; computed once: an entry is replaced, not updated,
        when its run changes)."""
        if self._row is None:
            self._row = self._make_row()
        return dict(self._row)

    def _make_row(self) -> dict[str, Any]:
        _, evals = self.run.eval_curve(EVAL_METRIC)
        error = " ".join(str((self.run.results or {}).get("error") or "").split())
        return {
            "id": self.id,
            "algo": self.algo,
            "env": self.env,
            "seed": self.run.seed,
            "tags": ", ".join(self.tags),
            "status": self.status,
            "env_steps": self.last_env_step(),
            "eval_return": round(float(evals[-1]), 3) if evals.size else None,
            "videos": len(self.videos),
            "updated": datetime.fromtimestamp(self.updated).strftime("%Y-%m-%d %H:%M:%S"),
            "error": error,
        }


def matches_filters(entry: RunEntry, filters: Mapping[str, Sequence[str] | None]) -> bool:
    """Whether ``entry`` passes every non-empty filter (a filter passes if any of its
    values matches: ``{"algo": ["dqn", "ddqn"], "seed": ["0"]}``)."""
    for key, wanted in filters.items():
        if wanted and not set(entry.filter_values(key)) & {str(w) for w in wanted}:
            return False
    return True


def flatten_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"algo": {"lr": 0.1}, "tags": ["a"]}`` -> ``{"algo.lr": "0.1", "tags": "a"}``.

    Leaves are formatted with :func:`rlbench.analysis.runs.format_value`; empty mappings
    become ``"{}"``.
    """
    out: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            if value:
                out.update(flatten_config(value, prefix=f"{name}."))
            else:
                out[name] = "{}"
        else:
            out[name] = format_value(value)
    return out


def config_diff(configs: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, list[str | None]]]:
    """Keys whose values differ between configs (a key missing from some config differs).

    Args:
        configs: ``{run id: config}`` (nested dicts), in display order.

    Returns:
        ``[(dotted key, [value in each config or None when missing])]`` sorted by key; empty
        for fewer than two configs.
    """
    if len(configs) < 2:
        return []
    flat = [flatten_config(c) for c in configs.values()]
    keys = sorted(set().union(*flat))
    rows = []
    for key in keys:
        values = [f.get(key) for f in flat]
        if len(set(values)) > 1:
            rows.append((key, values))
    return rows


def group_label(run: Run, keys: Sequence[str]) -> str:
    """Legend label of a run under explicit ``keys``: ``key=value`` parts (the bare value for
    ``algo.name``, ``variant``, ``env.id``) joined by ``", "``; ``"all"`` without keys."""
    return _group_label(run, keys)


@dataclass
class CurveGroup:
    """Curves of one (env, group label) in one chart panel.

    Attributes:
        env, label: Panel and legend label.
        runs: ``(entry id, seed, steps, values)`` of each run with at least one point; arrays
            of shape ``(num_points,)``.
        steps, center, lo, hi: IQM over runs with its pointwise CI on the env steps every run
            reached, shape ``(num_steps,)``; ``None`` with fewer than two runs or no common
            steps.
    """

    env: str
    label: str
    runs: list[tuple[str, int | None, FloatArray, FloatArray]]
    steps: FloatArray | None = None
    center: FloatArray | None = None
    lo: FloatArray | None = None
    hi: FloatArray | None = None


class RunIndex:
    """A live index of the runs under ``root``: :meth:`refresh` rescans and reloads only the
    runs whose files changed. Thread-safe (Dash serves callbacks from several threads).

    Args:
        root: The outputs dir (any mix of run dirs and sweep dirs, at any depth).
        running_window_s: A run without ``results.json`` is ``running`` while its files
            changed within this many seconds, else ``unknown``.
        reps: Bootstrap replications of the curve CIs.
        seed: Bootstrap seed (curves are deterministic given the data).
        confidence: Coverage of the CI bands.
        clock: Time source (tests).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        running_window_s: float = 120.0,
        reps: int = 1000,
        seed: int = 0,
        confidence: float = 0.95,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.root = Path(root)
        self.running_window_s = running_window_s
        self.reps = reps
        self.seed = seed
        self.confidence = confidence
        self.clock = clock
        self.version = 0
        self._entries: dict[str, RunEntry] = {}
        self._lock = threading.RLock()
        self._curve_cache: OrderedDict[tuple[Any, ...], tuple[FloatArray, ...]] = OrderedDict()

    # ------------------------------------------------------------------------ scanning
    def _status(self, run: Run, updated: float) -> str:
        if run.results is not None:
            return run.status
        return RUNNING if self.clock() - updated <= self.running_window_s else run.status

    def _load(self, run_dir: Path, signature: Signature) -> RunEntry | None:
        try:
            run = load_run(run_dir, include_incomplete=True)
        except (AnalysisError, OSError, ValueError):
            return None  # e.g. a config.yaml being written right now: next refresh
        rel = run_dir.relative_to(self.root).as_posix() if run_dir != self.root else "."
        updated = max(mtime for mtime, size in signature if size >= 0) / 1e9
        video_dir = run_dir / _VIDEO_DIR
        videos = (
            sorted(video_dir.glob(f"*{_VIDEO_SUFFIX}"), key=lambda p: _natural_key(p.name))
            if video_dir.is_dir()
            else []
        )
        return RunEntry(
            id=rel,
            token=hashlib.sha1(rel.encode()).hexdigest()[:16],
            run=run,
            status=self._status(run, updated),
            updated=updated,
            signature=signature,
            videos=videos,
        )

    def refresh(self) -> bool:
        """Rescan the outputs dir; returns whether any run was added, removed or changed.

        A run also changes when its status moves from ``running`` to ``unknown`` (no write
        within the running window) or when its videos change.
        """
        dirs = find_run_dirs(self.root, include_incomplete=True) if self.root.is_dir() else []
        with self._lock:
            fresh: dict[str, RunEntry] = {}
            changed = False
            for run_dir in dirs:
                rel = run_dir.relative_to(self.root).as_posix() if run_dir != self.root else "."
                signature = _signature(run_dir)
                old = self._entries.get(rel)
                if old is not None and old.signature == signature:
                    status = self._status(old.run, old.updated)
                    video_dir = run_dir / _VIDEO_DIR
                    n_videos = (
                        len(list(video_dir.glob(f"*{_VIDEO_SUFFIX}"))) if video_dir.is_dir() else 0
                    )
                    if status == old.status and n_videos == len(old.videos):
                        fresh[rel] = old
                        continue
                entry = self._load(run_dir, signature)
                if entry is not None:
                    fresh[rel] = entry
                    changed = True
            changed = changed or set(fresh) != set(self._entries)
            self._entries = fresh
            if changed:
                self.version += 1
            return changed

    # -------------------------------------------------------------------------- queries
    def entries(self) -> list[RunEntry]:
        """All runs, sorted by id."""
        with self._lock:
            return [self._entries[k] for k in sorted(self._entries)]

    def get(self, run_id: str) -> RunEntry | None:
        with self._lock:
            return self._entries.get(run_id)

    def by_token(self, token: str) -> RunEntry | None:
        with self._lock:
            return next((e for e in self._entries.values() if e.token == token), None)

    def select(self, ids: Iterable[str]) -> list[RunEntry]:
        """Entries for ``ids`` (unknown ids skipped), in the given order."""
        with self._lock:
            return [self._entries[i] for i in ids if i in self._entries]

    def rows(
        self, filters: Mapping[str, Sequence[str] | None] | None = None
    ) -> list[dict[str, Any]]:
        """Table rows of the runs passing ``filters`` (see :func:`matches_filters`)."""
        return [e.row() for e in self.entries() if matches_filters(e, filters or {})]

    def filter_options(self) -> dict[str, list[str]]:
        """Every value each filter can take, over all runs (seeds sorted numerically)."""
        options: dict[str, set[str]] = {key: set() for key in FILTER_KEYS}
        for entry in self.entries():
            for key in FILTER_KEYS:
                options[key].update(entry.filter_values(key))
        return {
            key: sorted(
                values, key=lambda v: (0, int(v), "") if v.lstrip("-").isdigit() else (1, 0, v)
            )
            for key, values in options.items()
        }

    def metrics(self, ids: Iterable[str]) -> list[str]:
        """Metric columns logged by the selected runs (``eval/*`` first, then by name)."""
        names: set[str] = set()
        for entry in self.select(ids):
            names.update(c for c in entry.run.metrics.columns if c != "env_step")
        return sorted(names, key=lambda n: (not n.startswith("eval/"), n))

    def grouping(self, ids: Sequence[str], keys: Sequence[str] | None = None) -> Grouping:
        """How :meth:`curves` groups the runs ``ids``: by ``keys`` when given (non-empty),
        else by what differs between those runs, as ``rlbench-report`` does
        (:func:`rlbench.analysis.runs.resolve_grouping`). Labels leave out ``env.id``: each
        env is a panel of its own."""
        runs = [entry.run for entry in self.select(ids)]
        return resolve_grouping(runs, list(keys) if keys else None, validate=False).hiding("env.id")

    def curves(
        self, ids: Sequence[str], *, metric: str, keys: Sequence[str] | None = None
    ) -> list[CurveGroup]:
        """Curves of the selected runs, one :class:`CurveGroup` per (env, label), sorted.

        Runs are grouped by ``keys``, or without them (``None`` or empty) by the config keys
        that differ between the selected runs, apart from ``seed`` (see :meth:`grouping`):
        ticking a sweep ``algo.double=true,false seed=0,1,2`` gives the curves
        ``algo.double=false`` and ``algo.double=true``.

        Per group: every run's logged ``metric`` against env steps and, with two or more runs,
        the IQM over runs with a ``confidence`` stratified-bootstrap band (rliable via
        :func:`rlbench.analysis.stats.iqm_curve`) on the steps all of them reached (a run
        still writing limits the aggregate to its last logged step; no extrapolation).
        """
        grouping = self.grouping(ids, keys)
        groups: dict[tuple[str, str], CurveGroup] = {}
        for entry in self.select(ids):
            steps, values = entry.run.eval_curve(metric)
            if steps.size == 0:
                continue
            label = grouping.label([group_value(entry.run, k) for k in grouping.keys])
            key = (entry.env, label)
            group = groups.setdefault(key, CurveGroup(env=key[0], label=key[1], runs=[]))
            group.runs.append((entry.id, entry.run.seed, steps, values))
        for group in groups.values():
            if len(group.runs) < 2:
                continue
            aggregate = self._aggregate(group, metric)
            if aggregate is not None:
                group.steps, group.center, group.lo, group.hi = aggregate
        return [groups[k] for k in sorted(groups)]

    def _aggregate(self, group: CurveGroup, metric: str) -> tuple[FloatArray, ...] | None:
        with self._lock:
            sigs = tuple(
                sorted(
                    (rid, self._entries[rid].signature)
                    for rid, *_ in group.runs
                    if rid in self._entries
                )
            )
        cache_key = (metric, sigs, self.reps, self.seed, self.confidence)
        with self._lock:
            if cache_key in self._curve_cache:
                self._curve_cache.move_to_end(cache_key)
                return self._curve_cache[cache_key]
        grid, matrix = align_curves([(s, v) for _, _, s, v in group.runs])
        if grid.size == 0:
            return None
        center, lo, hi = iqm_curve(
            matrix, reps=self.reps, seed=self.seed, confidence=self.confidence
        )
        result = (grid, center, lo, hi)
        with self._lock:
            self._curve_cache[cache_key] = result
            while len(self._curve_cache) > _CACHE_SIZE:
                self._curve_cache.popitem(last=False)
        return result


def default_metric(available: Sequence[str]) -> str:
    """``eval/return_mean`` when logged, else ``rollout/episode_return``, else the first."""
    for name in (EVAL_METRIC, FALLBACK_METRIC):
        if name in available:
            return name
    return available[0] if available else EVAL_METRIC
