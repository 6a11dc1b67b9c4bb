"""Score normalization and rliable-based aggregate statistics.

Conventions (as in rliable): a *score matrix* has shape ``(num_runs, num_tasks)`` and a
*score tensor* for curves has shape ``(num_runs, num_tasks, num_steps)``; a *score dict* maps a
group label to its matrix. All bootstrap work is delegated to :mod:`rliable` (stratified
bootstrap over runs, via :mod:`arch`); this module only prepares arrays and makes the
resampling deterministic with :func:`seeded_numpy`.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt
import scipy.stats
from rliable import library as rly
from rliable import metrics as rlm

__all__ = [
    "CLASSIC_CONTROL_RANGES",
    "METRIC_NAMES",
    "IntervalEstimate",
    "PerformanceProfile",
    "PoiResult",
    "ReferenceScore",
    "ScoreNormalizer",
    "aggregate_metrics",
    "align_curves",
    "atari_game_name",
    "atari_random_human",
    "get_normalizer",
    "interval_estimates",
    "iqm",
    "iqm_curve",
    "normalizer_for_config",
    "performance_profiles",
    "probability_of_improvement",
    "probability_of_improvement_pairs",
    "published_scores",
    "reference_scores",
    "seeded_numpy",
    "stack_task_scores",
]

FloatArray = npt.NDArray[np.float64]

#: Aggregate metrics reported per group, in this order.
METRIC_NAMES: Final[tuple[str, ...]] = ("iqm", "median", "mean", "optimality_gap")

#: Min-max ranges ``(min, max)`` of episode return for classic-control tasks: the worst and
#: best achievable episode returns under Gymnasium's default time limits (Pendulum: a common
#: practical floor; its theoretical minimum is about -16.3 per step * 200 steps).
CLASSIC_CONTROL_RANGES: Final[Mapping[str, tuple[float, float]]] = {
    "CartPole-v0": (0.0, 200.0),
    "CartPole-v1": (0.0, 500.0),
    "Acrobot-v1": (-500.0, 0.0),
    "MountainCar-v0": (-200.0, 0.0),
    "Pendulum-v1": (-1600.0, 0.0),
}

_DATA_PACKAGE: Final[str] = "rlbench.analysis"
_ALE_RE: Final[re.Pattern[str]] = re.compile(r"^ALE/(?P<game>[A-Za-z0-9]+)-v\d+$")
_GYM_ATARI_RE: Final[re.Pattern[str]] = re.compile(
    r"^(?P<game>[A-Za-z0-9]+?)(?:NoFrameskip|Deterministic)?-v[0-9]+$"
)
_REFERENCE_ATARI_RE: Final[re.Pattern[str]] = re.compile(
    r"^(?P<game>[A-Za-z0-9]+)\s*\(Atari ?100k\)$", re.IGNORECASE
)


# --------------------------------------------------------------------------- reference data
def _read_data_csv(name: str) -> list[dict[str, str]]:
    text = resources.files(_DATA_PACKAGE).joinpath("data", name).read_text(encoding="utf-8")
    return list(csv.DictReader(text.splitlines()))


def _game_key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


@cache
def atari_random_human() -> dict[str, tuple[str, float, float]]:
    """Random and human reference scores of the 26 Atari 100k games (packaged CSV).

    Returns:
        ``{game_key: (GameName, random, human)}`` with ``game_key`` lower-case alphanumerics.
    """
    table: dict[str, tuple[str, float, float]] = {}
    for row in _read_data_csv("atari_random_human.csv"):
        table[_game_key(row["game"])] = (row["game"], float(row["random"]), float(row["human"]))
    return table


def atari_game_name(env_id: str | None, *, game: str | None = None) -> str | None:
    """Canonical Atari game name for an env id / ``env.game``, if it is in the reference table.

    Recognized: ``ALE/Breakout-v5``, ``BreakoutNoFrameskip-v4``, ``BreakoutDeterministic-v4``,
    ``Breakout-v4`` and ``game="breakout"`` / ``"ms_pacman"`` (case and ``_``/``-`` ignored).
    Ids with another namespace (``MinAtar/Breakout``) are not Atari.
    """
    table = atari_random_human()
    candidates: list[str] = []
    foreign = env_id is not None and "/" in env_id and not env_id.startswith("ALE/")
    if game and not foreign:  # e.g. MinAtar/Breakout with game=breakout is not ALE Atari
        candidates.append(game)
    if env_id:
        for pattern in (_ALE_RE, _GYM_ATARI_RE, _REFERENCE_ATARI_RE):
            match = pattern.match(env_id.strip())
            if match:
                candidates.append(match.group("game"))
                break
    for candidate in candidates:
        entry = table.get(_game_key(candidate))
        if entry is not None:
            return entry[0]
    return None


@dataclass(frozen=True)
class ReferenceScore:
    """One row of the packaged ``published_scores.csv``."""

    env: str
    algo: str
    env_steps: float
    score: float
    std: float | None
    seeds: int | None
    metric: str
    source: str


def _opt_float(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


@cache
def published_scores() -> tuple[ReferenceScore, ...]:
    """All rows of the packaged ``published_scores.csv`` (see its ``source`` column)."""
    rows: list[ReferenceScore] = []
    for row in _read_data_csv("published_scores.csv"):
        score = _opt_float(row["score"])
        if score is None:
            continue
        seeds = _opt_float(row.get("seeds") or "")
        rows.append(
            ReferenceScore(
                env=row["env"],
                algo=row["algo"],
                env_steps=_opt_float(row["env_steps"]) or float("nan"),
                score=score,
                std=_opt_float(row.get("std") or ""),
                seeds=int(seeds) if seeds is not None else None,
                metric=row.get("metric", ""),
                source=row.get("source", ""),
            )
        )
    return tuple(rows)


def reference_scores(env_id: str, algos: Sequence[str]) -> list[ReferenceScore]:
    """Published scores for ``env_id`` and any of ``algos`` (case-insensitive).

    An env matches on the exact id, or on the Atari game name (``ALE/Pong-v5`` matches
    ``PongNoFrameskip-v4`` and ``Pong (Atari100k)``; check each row's steps and metric).
    """
    wanted = {a.lower() for a in algos}
    game = atari_game_name(env_id)
    out: list[ReferenceScore] = []
    for ref in published_scores():
        if ref.algo.lower() not in wanted:
            continue
        if ref.env == env_id or (game is not None and atari_game_name(ref.env) == game):
            out.append(ref)
    return out


# ---------------------------------------------------------------------------- normalization
@dataclass(frozen=True)
class ScoreNormalizer:
    """Affine map ``(score - low) / (high - low)``.

    Attributes:
        kind: ``"human"`` (Atari human-normalized), ``"minmax"`` or ``"raw"`` (identity).
        low: Score mapped to 0 (Atari: random score).
        high: Score mapped to 1 (Atari: human score).
        source: Human-readable provenance of ``low``/``high``.
    """

    kind: Literal["human", "minmax", "raw"]
    low: float = 0.0
    high: float = 1.0
    source: str = "raw scores (no normalization known)"

    def __post_init__(self) -> None:
        if self.kind != "raw" and not self.high > self.low:
            raise ValueError(f"normalization needs high > low, got [{self.low}, {self.high}]")

    def __call__(self, scores: npt.ArrayLike) -> FloatArray:
        """Normalize scores of any shape; returns a float array of the same shape."""
        array = np.asarray(scores, dtype=np.float64)
        if self.kind == "raw":
            return array.copy()
        return (array - self.low) / (self.high - self.low)


def get_normalizer(
    env_id: str | None,
    *,
    game: str | None = None,
    score_range: Sequence[float] | None = None,
) -> ScoreNormalizer:
    """Pick the score normalization for a task.

    Order: Atari game in the reference table -> human-normalized; else ``score_range``
    (``env.score_range`` from the config) -> min-max; else :data:`CLASSIC_CONTROL_RANGES`;
    else raw scores.
    """
    atari = atari_game_name(env_id, game=game)
    if atari is not None:
        _, random_score, human = atari_random_human()[_game_key(atari)]
        return ScoreNormalizer(
            "human", random_score, human, f"human-normalized ({atari}: random/human table)"
        )
    if score_range is not None:
        values = [float(v) for v in score_range]
        if len(values) != 2:
            raise ValueError(f"env.score_range must be [min, max], got {list(score_range)}")
        return ScoreNormalizer(
            "minmax", values[0], values[1], f"min-max from env.score_range {values}"
        )
    if env_id is not None and env_id in CLASSIC_CONTROL_RANGES:
        low, high = CLASSIC_CONTROL_RANGES[env_id]
        return ScoreNormalizer("minmax", low, high, f"min-max built-in [{low:g}, {high:g}]")
    return ScoreNormalizer("raw")


def normalizer_for_config(config: Mapping[str, Any]) -> ScoreNormalizer:
    """:func:`get_normalizer` fed from a run config's ``env.id``/``env.game``/``env.score_range``
    (``env.name`` stands in for a missing ``env.id``)."""
    env = config.get("env")
    env = env if isinstance(env, Mapping) else {}
    env_id = env.get("id", env.get("name"))
    game = env.get("game")
    score_range = env.get("score_range")
    return get_normalizer(
        str(env_id) if env_id is not None else None,
        game=str(game) if game else None,
        score_range=score_range if isinstance(score_range, list | tuple) else None,
    )


# ---------------------------------------------------------------------------- determinism
@contextmanager
def seeded_numpy(seed: int) -> Iterator[None]:
    """Seed numpy's *global* RNG (which rliable's bootstrap draws from) for the duration of
    the block, then restore the previous global state."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


# ------------------------------------------------------------------------ aggregate metrics
def _check_matrix(scores: npt.ArrayLike, name: str = "scores") -> FloatArray:
    array = np.asarray(scores, dtype=np.float64)
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(
            f"{name} must be a non-empty (num_runs, num_tasks) matrix, got shape {array.shape}"
        )
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN/inf")
    return array


def iqm(scores: npt.ArrayLike) -> float:
    """Interquartile mean (25% trimmed mean over all runs and tasks) of a
    ``(num_runs, num_tasks)`` matrix, via :func:`rliable.metrics.aggregate_iqm`."""
    return float(rlm.aggregate_iqm(_check_matrix(scores)))


def aggregate_metrics(scores: FloatArray) -> FloatArray:
    """``[IQM, median, mean, optimality gap (gamma=1)]`` of a ``(num_runs, num_tasks)`` matrix.

    Returns:
        Array of shape ``(4,)`` ordered as :data:`METRIC_NAMES`.
    """
    return np.array(
        [
            rlm.aggregate_iqm(scores),
            rlm.aggregate_median(scores),
            rlm.aggregate_mean(scores),
            rlm.aggregate_optimality_gap(scores),
        ],
        dtype=np.float64,
    )


@dataclass(frozen=True)
class IntervalEstimate:
    """Point estimate with a bootstrap confidence interval ``[lo, hi]``."""

    point: float
    lo: float
    hi: float


def interval_estimates(
    score_dict: Mapping[str, npt.ArrayLike],
    *,
    reps: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
    task_bootstrap: bool = False,
) -> dict[str, dict[str, IntervalEstimate]]:
    """IQM, median, mean and optimality gap with stratified-bootstrap CIs per group.

    Uses :func:`rliable.library.get_interval_estimates` (percentile method). Each group is
    bootstrapped under its own :func:`seeded_numpy` block, so a group's CI depends only on its
    scores, ``seed`` and ``reps`` (not on which other groups are present).

    Args:
        score_dict: ``{group: scores}`` with ``scores`` of shape ``(num_runs, num_tasks)``
            (finite values; equal number of runs per task, see :func:`stack_task_scores`).
        reps: Bootstrap replications.
        seed: Seed for numpy's global RNG during each bootstrap.
        confidence: CI coverage.
        task_bootstrap: Also resample tasks (rliable option).

    Returns:
        ``{group: {metric: IntervalEstimate}}`` with metrics from :data:`METRIC_NAMES`.
    """
    out: dict[str, dict[str, IntervalEstimate]] = {}
    for group, raw in score_dict.items():
        scores = _check_matrix(raw, f"scores of {group!r}")
        with seeded_numpy(seed):
            points, intervals = rly.get_interval_estimates(
                {group: scores},
                aggregate_metrics,
                reps=reps,
                confidence_interval_size=confidence,
                task_bootstrap=task_bootstrap,
            )
        point = np.asarray(points[group], dtype=np.float64)
        ci = np.asarray(intervals[group], dtype=np.float64)  # (2, num_metrics)
        out[group] = {
            name: IntervalEstimate(float(point[i]), float(ci[0, i]), float(ci[1, i]))
            for i, name in enumerate(METRIC_NAMES)
        }
    return out


def stack_task_scores(
    task_scores: Mapping[str, Sequence[float]],
    *,
    on_unequal: Literal["drop", "raise"] = "drop",
) -> tuple[FloatArray, list[str], dict[str, int]]:
    """Stack per-task run scores into a ``(num_runs, num_tasks)`` matrix.

    rliable's stratified bootstrap needs the same number of runs for every task of a group.
    With ``on_unequal="drop"`` every task keeps only its first ``min_runs`` scores (callers
    pass them sorted by seed, so the lowest seeds are kept) and the number dropped per task is
    returned so it can be reported; ``"raise"`` raises :class:`ValueError` instead.

    Args:
        task_scores: ``{task: [score of run 1, ...]}`` (finite floats, at least one per task).

    Returns:
        ``(matrix, tasks, dropped)``: matrix of shape ``(min_runs, num_tasks)``, task names in
        column order (sorted), and ``{task: number of scores dropped}`` (only tasks with > 0).
    """
    tasks = sorted(task_scores)
    if not tasks:
        raise ValueError("no tasks to stack")
    counts = {task: len(task_scores[task]) for task in tasks}
    if min(counts.values()) == 0:
        raise ValueError(f"task without scores: {[t for t, c in counts.items() if c == 0]}")
    n_min = min(counts.values())
    if len(set(counts.values())) > 1 and on_unequal == "raise":
        raise ValueError(f"unequal number of runs per task: {counts}")
    matrix = np.array([list(task_scores[t])[:n_min] for t in tasks], dtype=np.float64).T
    dropped = {t: c - n_min for t, c in counts.items() if c > n_min}
    return matrix, tasks, dropped


# ------------------------------------------------------------------ probability of improvement
@dataclass(frozen=True)
class PoiResult:
    """P(X > Y) averaged over tasks, with a bootstrap CI."""

    x: str
    y: str
    tasks: tuple[str, ...]
    estimate: IntervalEstimate


def probability_of_improvement(
    scores_x: npt.ArrayLike,
    scores_y: npt.ArrayLike,
    *,
    reps: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> IntervalEstimate:
    """Average probability of improvement P(X > Y) (Mann-Whitney U statistic per task, averaged
    over tasks; ties count 1/2) with an independent stratified-bootstrap CI.

    Args:
        scores_x: Shape ``(num_runs_x, num_tasks)``.
        scores_y: Shape ``(num_runs_y, num_tasks)``, same tasks in the same column order.
    """
    x = _check_matrix(scores_x, "scores_x")
    y = _check_matrix(scores_y, "scores_y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"task count mismatch: {x.shape[1]} vs {y.shape[1]}")
    with seeded_numpy(seed):
        points, intervals = rly.get_interval_estimates(
            {"pair": [x, y]},
            rlm.probability_of_improvement,
            reps=reps,
            confidence_interval_size=confidence,
        )
    ci = np.asarray(intervals["pair"], dtype=np.float64).reshape(2)
    return IntervalEstimate(float(points["pair"]), float(ci[0]), float(ci[1]))


def probability_of_improvement_pairs(
    score_dict: Mapping[str, npt.ArrayLike],
    tasks: Mapping[str, Sequence[str]],
    *,
    reps: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> list[PoiResult]:
    """P(X > Y) for every ordered pair of groups evaluated on the same set of tasks.

    Pairs whose task lists differ are skipped (comparing e.g. dqn-on-CartPole against
    c51-on-Acrobot is meaningless). Each unordered pair is bootstrapped once: ties count 1/2,
    so P(Y > X) = 1 - P(X > Y) holds exactly for the estimate and for every bootstrap
    replicate, and the reverse CI is ``[1 - hi, 1 - lo]``.

    Args:
        score_dict: ``{group: (num_runs, num_tasks)}``.
        tasks: ``{group: task names in column order}``.

    Returns:
        Results ordered like ``score_dict`` (row-major over ``(x, y)``).
    """
    groups = list(score_dict)
    found: dict[tuple[str, str], PoiResult] = {}
    for i, gx in enumerate(groups):
        for gy in groups[i + 1 :]:
            if list(tasks[gx]) != list(tasks[gy]):
                continue
            est = probability_of_improvement(
                score_dict[gx], score_dict[gy], reps=reps, seed=seed, confidence=confidence
            )
            pair_tasks = tuple(tasks[gx])
            found[gx, gy] = PoiResult(gx, gy, pair_tasks, est)
            reverse = IntervalEstimate(1.0 - est.point, 1.0 - est.hi, 1.0 - est.lo)
            found[gy, gx] = PoiResult(gy, gx, pair_tasks, reverse)
    return [found[gx, gy] for gx in groups for gy in groups if (gx, gy) in found]


# ---------------------------------------------------------------------- performance profiles
@dataclass(frozen=True)
class PerformanceProfile:
    """Fraction of runs with score > tau, for each tau, with pointwise bootstrap CIs.

    Attributes:
        taus: Shape ``(num_taus,)``.
        values, lo, hi: Shape ``(num_taus,)``.
    """

    taus: FloatArray
    values: FloatArray
    lo: FloatArray
    hi: FloatArray


def performance_profiles(
    score_dict: Mapping[str, npt.ArrayLike],
    *,
    taus: npt.ArrayLike | None = None,
    num_taus: int = 51,
    reps: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, PerformanceProfile]:
    """Run-score distributions via :func:`rliable.library.create_performance_profile`.

    Args:
        score_dict: ``{group: (num_runs, num_tasks)}``.
        taus: Thresholds, shape ``(num_taus,)``; default ``num_taus`` points spanning
            ``[min(0, min score), max(1, max score)]`` over all groups.
    """
    arrays = {g: _check_matrix(s, f"scores of {g!r}") for g, s in score_dict.items()}
    if not arrays:
        return {}
    if taus is None:
        lo = min(0.0, *(float(a.min()) for a in arrays.values()))
        hi = max(1.0, *(float(a.max()) for a in arrays.values()))
        tau_array = np.linspace(lo, hi, num_taus)
    else:
        tau_array = np.asarray(taus, dtype=np.float64)
    out: dict[str, PerformanceProfile] = {}
    for group, scores in arrays.items():
        with seeded_numpy(seed):
            profiles, cis = rly.create_performance_profile(
                {group: scores}, tau_array, reps=reps, confidence_interval_size=confidence
            )
        ci = np.asarray(cis[group], dtype=np.float64)
        out[group] = PerformanceProfile(
            taus=tau_array,
            values=np.asarray(profiles[group], dtype=np.float64),
            lo=ci[0],
            hi=ci[1],
        )
    return out


# --------------------------------------------------------------------------- learning curves
def align_curves(
    curves: Sequence[tuple[npt.ArrayLike, npt.ArrayLike]],
    *,
    max_points: int = 50,
) -> tuple[FloatArray, FloatArray]:
    """Put several ``(steps, values)`` curves on one env-step grid.

    If every curve was logged at the same steps those are used as-is. Otherwise the grid is
    the union of logged steps restricted to the range covered by *all* curves (no
    extrapolation) and values are linearly interpolated. Grids longer than ``max_points`` are
    resampled to ``max_points`` evenly spaced steps over the same range.

    Args:
        curves: Per run ``(steps, values)``, each of shape ``(num_points_i,)``, sorted by step.

    Returns:
        ``(grid, matrix)``: ``grid`` shape ``(num_steps,)``, ``matrix`` shape
        ``(num_runs, num_steps)``; both empty (``num_steps == 0``) when the curves share no
        range.
    """
    clean: list[tuple[FloatArray, FloatArray]] = []
    for steps, values in curves:
        s = np.asarray(steps, dtype=np.float64)
        v = np.asarray(values, dtype=np.float64)
        keep = np.isfinite(s) & np.isfinite(v)
        s, v = s[keep], v[keep]
        order = np.argsort(s, kind="stable")
        clean.append((s[order], v[order]))
    empty = np.zeros(0, dtype=np.float64)
    if not clean or any(len(s) == 0 for s, _ in clean):
        return empty, np.zeros((len(clean), 0), dtype=np.float64)
    first = clean[0][0]
    if all(len(s) == len(first) and np.array_equal(s, first) for s, _ in clean):
        grid = first
    else:
        start = max(float(s[0]) for s, _ in clean)
        stop = min(float(s[-1]) for s, _ in clean)
        if start > stop:
            return empty, np.zeros((len(clean), 0), dtype=np.float64)
        union = np.unique(np.concatenate([s for s, _ in clean]))
        grid = union[(union >= start) & (union <= stop)]
    if len(grid) > max_points:
        grid = np.linspace(float(grid[0]), float(grid[-1]), max_points)
    matrix = np.stack([np.interp(grid, s, v) for s, v in clean])
    return grid, matrix


def _iqm_per_step(scores: FloatArray) -> FloatArray:
    """IQM over runs and tasks at every step: ``(num_runs, num_tasks, num_steps)`` ->
    ``(num_steps,)``. Same as ``rliable.metrics.aggregate_iqm(scores[..., j])`` for each ``j``
    (both are ``scipy.stats.trim_mean(..., 0.25)`` over the flattened runs x tasks)."""
    flat = scores.reshape(-1, scores.shape[-1])
    return np.asarray(scipy.stats.trim_mean(flat, proportiontocut=0.25, axis=0))


def iqm_curve(
    scores: npt.ArrayLike,
    *,
    reps: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Sample-efficiency curve: IQM over runs (and tasks) at each step with pointwise
    stratified-bootstrap CIs (:func:`rliable.library.get_interval_estimates`).

    Args:
        scores: Shape ``(num_runs, num_tasks, num_steps)`` (or ``(num_runs, num_steps)`` for a
            single task).

    Returns:
        ``(iqm, lo, hi)``, each of shape ``(num_steps,)``.
    """
    array = np.asarray(scores, dtype=np.float64)
    if array.ndim == 2:
        array = array[:, None, :]
    if array.ndim != 3 or 0 in array.shape:
        raise ValueError(f"scores must be (num_runs, num_tasks, num_steps), got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError("scores contain NaN/inf")
    func: Callable[[FloatArray], FloatArray] = _iqm_per_step
    with seeded_numpy(seed):
        points, intervals = rly.get_interval_estimates(
            {"curve": array}, func, reps=reps, confidence_interval_size=confidence
        )
    ci = np.asarray(intervals["curve"], dtype=np.float64)
    return np.asarray(points["curve"], dtype=np.float64), ci[0], ci[1]
