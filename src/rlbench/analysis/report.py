"""``rlbench-report``: aggregate many runs into tables, figures and an offline HTML report.

Example::

    rlbench-report multirun/2025-01-01/12-00-00 --group-by algo.name --reps 2000 --seed 0

writes ``summary.csv``, ``probability_of_improvement.csv``, ``runs.csv``, figures (PNG + PDF)
and a self-contained ``index.html`` into ``--out`` (default ``<path>/report`` for a single
directory, else ``./report``).

Without ``--group-by``, runs are grouped by what differs between them: ``algo.name`` (or
``variant``) and ``env.id``, plus every config key whose value differs across the runs and
splits them further, apart from ``seed`` and bookkeeping keys (see
:func:`rlbench.analysis.runs.resolve_grouping`). ``rlbench -m algo.double=true,false
seed=0,1,2`` thus gives the groups ``algo.double=false`` and ``algo.double=true``, three seeds
each. Each group's table row also says how its runs were evaluated (``eval policy``: greedy,
sampled, or mixed; ``results.json``'s ``eval_deterministic``, absent = greedy).
"""

from __future__ import annotations

import argparse
import base64
import csv
import html
import math
import os
import sys
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from rlbench.analysis.plots import (
    CurvePanel,
    CurveSeries,
    group_colors,
    plot_interval_estimates,
    plot_learning_curves,
    plot_performance_profiles,
    plot_probability_of_improvement,
)
from rlbench.analysis.runs import (
    DEFAULT_EXCLUDED_STATUSES,
    AnalysisError,
    ArgumentParser,
    Grouping,
    Run,
    discover_runs,
    eval_policy,
    filter_runs,
    group_runs,
    resolve_grouping,
)
from rlbench.analysis.stats import (
    METRIC_NAMES,
    IntervalEstimate,
    PerformanceProfile,
    PoiResult,
    ReferenceScore,
    ScoreNormalizer,
    align_curves,
    interval_estimates,
    iqm,
    iqm_curve,
    normalizer_for_config,
    performance_profiles,
    probability_of_improvement_pairs,
    reference_scores,
    stack_task_scores,
)

__all__ = [
    "Analysis",
    "GroupResult",
    "RunRecord",
    "analyze",
    "build_parser",
    "main",
    "write_report",
]

FloatArray = npt.NDArray[np.float64]
PROG: Final[str] = "rlbench-report"
#: A group's ``eval policy`` when its runs disagree.
MIXED_POLICY: Final[str] = "mixed"


# ----------------------------------------------------------------------------- data model
@dataclass
class RunRecord:
    """One row of the run table.

    Attributes:
        used: Whether the run enters the statistics; ``note`` says why not.
    """

    run: Run
    group: tuple[str, ...]
    label: str
    env: str
    seed: int | None
    status: str
    raw_score: float | None
    score_source: str
    normalizer: ScoreNormalizer
    eval_policy: str = "greedy"
    used: bool = False
    note: str = ""

    @property
    def norm_score(self) -> float | None:
        """The normalized final score (``None`` without a score)."""
        if self.raw_score is None:
            return None
        return float(self.normalizer(self.raw_score))


@dataclass
class GroupResult:
    """Statistics of one group.

    Attributes:
        scores: Normalized final scores, shape ``(runs_per_task, num_tasks)`` (``(0, 0)`` when
            the group has no usable run).
        raw_scores: Same shape, raw scores.
        tasks: Env ids in column order.
        estimates: ``{metric: IntervalEstimate}`` over ``scores`` (empty without runs).
        eval_policy: ``greedy``, ``sampled`` or ``mixed``: how the runs in the statistics
            (all of the group's runs when none is) were evaluated.
    """

    key: tuple[str, ...]
    label: str
    tasks: list[str]
    scores: FloatArray
    raw_scores: FloatArray
    records: list[RunRecord]
    normalization: str
    dropped: dict[str, int] = field(default_factory=dict)
    estimates: dict[str, IntervalEstimate] = field(default_factory=dict)
    eval_policy: str = "greedy"

    @property
    def n_runs(self) -> int:
        """Number of runs in the statistics (``runs_per_task * num_tasks``)."""
        return int(self.scores.size)


@dataclass
class Analysis:
    """Everything a report shows; built by :func:`analyze`."""

    grouping: Grouping
    group_keys: list[str]
    records: list[RunRecord]
    groups: list[GroupResult]
    poi: list[PoiResult]
    profiles: dict[str, PerformanceProfile]
    env_panels: list[CurvePanel]
    normalized_panels: list[CurvePanel]
    normalizers: dict[str, ScoreNormalizer]
    notes: list[str]
    settings: dict[str, str]

    @property
    def score_label(self) -> str:
        """Axis label for aggregate scores (says when some envs are not normalized)."""
        kinds = {n.kind for n in self.normalizers.values()}
        if kinds == {"raw"}:
            return "raw score (not normalized)"
        if "raw" in kinds:
            return "score (normalized where known, else raw)"
        return "normalized score"


# ------------------------------------------------------------------------------- analysis
def _policy_of(records: Sequence[RunRecord]) -> str:
    used = [r for r in records if r.used] or list(records)
    policies = sorted({r.eval_policy for r in used})
    return policies[0] if len(policies) == 1 else MIXED_POLICY


def _normalization_kind(normalizers: Sequence[ScoreNormalizer]) -> str:
    kinds = sorted({n.kind for n in normalizers})
    return kinds[0] if len(kinds) == 1 else "mixed(" + "+".join(kinds) + ")"


def _build_records(
    groups: Mapping[tuple[str, ...], list[Run]], excluded: Collection[str], grouping: Grouping
) -> list[RunRecord]:
    records: list[RunRecord] = []
    for key, members in groups.items():
        for run in members:
            score, source = run.final_score()
            record = RunRecord(
                run=run,
                group=key,
                label=grouping.label(key),
                env=run.env_id,
                seed=run.seed,
                status=run.status,
                raw_score=score,
                score_source=source,
                normalizer=normalizer_for_config(run.config),
                eval_policy=eval_policy(run),
            )
            if record.status in excluded:
                record.note = f"excluded: status {record.status}"
                error = (run.results or {}).get("error")
                if run.results is None:
                    record.note += " (no results.json: still running, or killed)"
                elif error:
                    text = " ".join(str(error).split())
                    record.note += f" ({text[:197] + '...' if len(text) > 200 else text})"
            elif score is None:
                record.note = "excluded: no eval score"
            else:
                record.used = True
            records.append(record)
    return records


def _group_result(
    key: tuple[str, ...],
    label: str,
    records: list[RunRecord],
    *,
    reps: int,
    seed: int,
    confidence: float,
) -> GroupResult:
    candidates = [r for r in records if r.used]
    by_task: dict[str, list[RunRecord]] = {}
    for record in candidates:
        by_task.setdefault(record.env, []).append(record)
    if not by_task:
        empty = np.zeros((0, 0), dtype=np.float64)
        return GroupResult(
            key, label, [], empty, empty.copy(), records, "n/a", eval_policy=_policy_of(records)
        )
    norm_scores = {t: [float(r.norm_score or 0.0) for r in rs] for t, rs in by_task.items()}
    matrix, tasks, dropped = stack_task_scores(norm_scores, on_unequal="drop")
    n_keep = matrix.shape[0]
    for task, task_records in by_task.items():
        for record in task_records[n_keep:]:
            record.used = False
            record.note = (
                f"dropped: {task} has more runs than other tasks of this group "
                f"(rliable needs equal runs per task; kept {n_keep})"
            )
    raw = np.array([[float(r.raw_score or 0.0) for r in by_task[t][:n_keep]] for t in tasks]).T
    used = [r for r in records if r.used]
    result = GroupResult(
        key=key,
        label=label,
        tasks=tasks,
        scores=matrix,
        raw_scores=raw,
        records=records,
        normalization=_normalization_kind([r.normalizer for r in used]),
        dropped=dropped,
        eval_policy=_policy_of(records),
    )
    result.estimates = interval_estimates(
        {label: matrix}, reps=reps, seed=seed, confidence=confidence
    )[label]
    return result


def _curve_series(
    label: str,
    records: Sequence[RunRecord],
    *,
    normalized: bool,
    n_tasks: int,
    reps: int,
    seed: int,
    confidence: float,
) -> CurveSeries | None:
    """IQM curve over ``records`` (ordered task-major, equal runs per task when n_tasks > 1)."""
    curves = []
    for record in records:
        steps, values = record.run.eval_curve()
        if normalized:
            values = record.normalizer(values)
        curves.append((steps, values))
    if any(len(steps) == 0 for steps, _ in curves):
        if n_tasks > 1:
            return None  # keeping equal runs per task would need dropping more runs
        curves = [c for c in curves if len(c[0])]
        if not curves:
            return None
    grid, matrix = align_curves(curves)
    if grid.size == 0:
        return None
    n_runs = matrix.shape[0] // n_tasks
    tensor = matrix.reshape(n_tasks, n_runs, grid.size).transpose(1, 0, 2)
    center, lo, hi = iqm_curve(tensor, reps=reps, seed=seed, confidence=confidence)
    return CurveSeries(label, grid, center, lo, hi, n_runs=matrix.shape[0])


def analyze(
    runs: Sequence[Run],
    *,
    group_keys: Sequence[str] | None = None,
    exclude_statuses: Collection[str] = DEFAULT_EXCLUDED_STATUSES,
    reps: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
    references: bool = True,
) -> Analysis:
    """Compute every table and curve of a report.

    Args:
        runs: Runs to analyse (already filtered).
        group_keys: Dotted config keys; ``None`` for the default rule, the keys that differ
            across the runs (see :func:`rlbench.analysis.runs.resolve_grouping`).
        exclude_statuses: ``results.json`` statuses left out of statistics (still listed).
        reps: Bootstrap replications for every CI.
        seed: Seed of every bootstrap (results are deterministic given ``seed``/``reps``).
        confidence: CI coverage.
        references: Draw published reference scores on learning curves.

    Raises:
        AnalysisError: no runs, or an unknown group key.
    """
    if not runs:
        raise AnalysisError("no runs to analyse")
    grouping = resolve_grouping(runs, group_keys)
    keys = list(grouping.keys)
    groups = group_runs(runs, keys)
    records = _build_records(groups, set(exclude_statuses), grouping)
    notes: list[str] = []

    group_results: list[GroupResult] = []
    for key in groups:
        members = [r for r in records if r.group == key]
        group_results.append(
            _group_result(
                key, grouping.label(key), members, reps=reps, seed=seed, confidence=confidence
            )
        )

    normalizers: dict[str, ScoreNormalizer] = {}
    for record in records:
        normalizers.setdefault(record.env, record.normalizer)
        if record.normalizer != normalizers[record.env]:
            notes.append(
                f"runs of {record.env} disagree on score normalization "
                f"(e.g. env.score_range); each run uses its own config"
            )
    raw_envs = sorted(env for env, n in normalizers.items() if n.kind == "raw")
    if raw_envs:
        notes.append(
            "no normalization known for "
            + ", ".join(raw_envs)
            + ": raw scores are used (set env.score_range to normalize)"
        )
    for res in group_results:
        if not res.tasks:
            notes.append(f"group {res.label}: no usable runs (see run table)")
            continue
        if len(res.tasks) > 1 and "raw" in res.normalization:
            notes.append(
                f"group {res.label} aggregates raw scores across {len(res.tasks)} "
                "envs; its aggregate metrics depend on each env's score scale"
            )
        if res.dropped:
            detail = ", ".join(f"{t}: {n}" for t, n in res.dropped.items())
            notes.append(
                f"group {res.label}: dropped runs to equalize runs per task "
                f"({detail}); rliable needs equal runs per task"
            )
        if res.scores.shape[0] < 2:
            notes.append(f"group {res.label}: a single run per task, CIs are degenerate")
        seeds_by_task: dict[str, list[int | None]] = {}
        for record in res.records:
            if record.used:
                seeds_by_task.setdefault(record.env, []).append(record.seed)
        for task, seeds in seeds_by_task.items():
            if len(set(seeds)) < len(seeds):
                notes.append(f"group {res.label}: duplicate seeds on {task}")
        if res.eval_policy == MIXED_POLICY:
            notes.append(
                f"group {res.label} mixes greedy and sampled evaluations "
                "(results.json eval_deterministic); its scores measure two different policies"
            )
    policies = {g.eval_policy for g in group_results if g.tasks}
    if len(policies) > 1:
        by_policy = {
            policy: ", ".join(g.label for g in group_results if g.tasks and g.eval_policy == policy)
            for policy in sorted(policies)
        }
        notes.append(
            "groups differ in evaluation policy ("
            + "; ".join(f"{policy}: {labels}" for policy, labels in by_policy.items())
            + "): compare their scores with care"
        )
    notes = list(dict.fromkeys(notes))

    active = [g for g in group_results if g.tasks]
    score_dict = {g.label: g.scores for g in active}
    task_dict = {g.label: g.tasks for g in active}
    poi = probability_of_improvement_pairs(
        score_dict, task_dict, reps=reps, seed=seed, confidence=confidence
    )
    profiles = performance_profiles(score_dict, reps=reps, seed=seed, confidence=confidence)

    env_panels: list[CurvePanel] = []
    for env in sorted({t for g in active for t in g.tasks}):
        panel = CurvePanel(title=env, series=[])
        algos: set[str] = set()
        for res in active:
            task_records = [r for r in res.records if r.used and r.env == env]
            if not task_records:
                continue
            for record in task_records:
                algo = record.run.config.get("algo")
                if isinstance(algo, Mapping) and algo.get("name") is not None:
                    algos.add(str(algo["name"]))
            series = _curve_series(
                res.label,
                task_records,
                normalized=False,
                n_tasks=1,
                reps=reps,
                seed=seed,
                confidence=confidence,
            )
            if series is None:
                notes.append(f"group {res.label}: no common eval steps on {env}, no curve")
            else:
                panel.series.append(series)
        if references:
            panel.references = reference_scores(env, sorted(algos))
        env_panels.append(panel)

    normalized_panels: list[CurvePanel] = []
    multi = [g for g in active if len(g.tasks) > 1]
    if multi:
        panel = CurvePanel(
            title="aggregate over envs (" + _score_word(normalizers) + ")", series=[]
        )
        for res in multi:
            ordered = [r for t in res.tasks for r in res.records if r.used and r.env == t]
            series = _curve_series(
                res.label,
                ordered,
                normalized=True,
                n_tasks=len(res.tasks),
                reps=reps,
                seed=seed,
                confidence=confidence,
            )
            if series is not None:
                panel.series.append(series)
        normalized_panels.append(panel)

    return Analysis(
        grouping=grouping,
        group_keys=keys,
        records=records,
        groups=group_results,
        poi=poi,
        profiles=profiles,
        env_panels=env_panels,
        normalized_panels=normalized_panels,
        normalizers=dict(sorted(normalizers.items())),
        notes=notes,
        settings={
            "group by": ", ".join(keys)
            + (
                " (default: algo or variant, env, and the config keys that differ across "
                "the runs, apart from seed)"
                if grouping.default
                else " (--group-by)"
            ),
            "bootstrap reps": str(reps),
            "seed": str(seed),
            "confidence": f"{confidence:g}",
            "excluded statuses": ", ".join(sorted(exclude_statuses)) or "none",
        },
    )


def _score_word(normalizers: Mapping[str, ScoreNormalizer]) -> str:
    kinds = {n.kind for n in normalizers.values()}
    return "raw scores" if kinds == {"raw"} else "normalized scores"


# ------------------------------------------------------------------------------- writing
def _num(value: float | None, digits: int = 4) -> str:
    if value is None or not math.isfinite(value):
        return ""
    return f"{value:.{digits}g}" if abs(value) >= 1e4 else f"{value:.{digits}f}"


def _summary_rows(analysis: Analysis) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for res in analysis.groups:
        row: dict[str, Any] = {"group": res.label}
        row.update(zip(analysis.group_keys, res.key, strict=True))
        row.update(
            eval_policy=res.eval_policy,
            envs=";".join(res.tasks),
            n_tasks=len(res.tasks),
            n_runs=res.n_runs,
            runs_per_task=res.scores.shape[0],
            n_dropped=sum(res.dropped.values()),
            normalization=res.normalization,
        )
        for metric in METRIC_NAMES:
            est = res.estimates.get(metric)
            row[metric] = est.point if est else float("nan")
            row[f"{metric}_lo"] = est.lo if est else float("nan")
            row[f"{metric}_hi"] = est.hi if est else float("nan")
        single = len(res.tasks) == 1
        row["raw_iqm"] = iqm(res.raw_scores) if single else float("nan")
        row["raw_mean"] = float(np.mean(res.raw_scores)) if single else float("nan")
        rows.append(row)
    return rows


def _csv_cell(value: Any) -> Any:
    """NaN -> empty cell; floats rounded to 12 significant digits (hides 0.30000000000000004)."""
    if isinstance(value, float | np.floating):
        return "" if not math.isfinite(value) else float(f"{float(value):.12g}")
    return value


def _write_csv(path: Path, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _csv_cell(v) for k, v in row.items()})


def _display_path(path: Path, root: Path | None) -> str:
    if root is not None:
        try:
            rel = os.path.relpath(path.resolve(), root)
        except ValueError:
            return str(path)
        return rel
    return str(path)


def _common_root(records: Sequence[RunRecord]) -> Path | None:
    paths = [str(r.run.path.resolve()) for r in records]
    if not paths:
        return None
    try:
        common = Path(os.path.commonpath(paths))
    except ValueError:
        return None
    return common.parent if len(paths) == 1 else common


def _run_rows(analysis: Analysis) -> list[dict[str, Any]]:
    root = _common_root(analysis.records)
    return [
        {
            "path": _display_path(r.run.path, root),
            "group": r.label,
            "env": r.env,
            "seed": "" if r.seed is None else r.seed,
            "status": r.status,
            "eval_policy": r.eval_policy,
            "final_score": "" if r.raw_score is None else r.raw_score,
            "normalized_score": "" if r.norm_score is None else r.norm_score,
            "score_source": r.score_source,
            "used": "yes" if r.used else "no",
            "note": r.note,
        }
        for r in analysis.records
    ]


def _poi_rows(analysis: Analysis) -> list[dict[str, Any]]:
    return [
        {
            "x": p.x,
            "y": p.y,
            "tasks": ";".join(p.tasks),
            "p_x_better": p.estimate.point,
            "lo": p.estimate.lo,
            "hi": p.estimate.hi,
        }
        for p in analysis.poi
    ]


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _table(columns: Sequence[str], rows: Sequence[Sequence[Any]], css: str = "") -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_e(cell)}</td>" for cell in row) + "</tr>\n" for row in rows
    )
    cls = f' class="{_e(css)}"' if css else ""
    return f"<table{cls}><thead><tr>{head}</tr></thead><tbody>\n{body}</tbody></table>"


_CSS: Final[str] = """
body{font-family:system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:2em;
color:#222;max-width:1400px}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.8em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:0.85em;margin:0.5em 0}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f3f3f3}tr.unused td{color:#888}
td.num{text-align:right;font-variant-numeric:tabular-nums}
figure{margin:1em 0}img{max-width:100%;border:1px solid #eee}
figcaption{font-size:0.85em;color:#555}.notes li{margin:0.2em 0}
code{background:#f5f5f5;padding:0 3px}
"""


def _figure_html(title: str, png: Path, caption: str) -> str:
    data = base64.b64encode(png.read_bytes()).decode("ascii")
    pdf = png.with_suffix(".pdf").name
    return (
        f'<figure><img alt="{_e(title)}" src="data:image/png;base64,{data}">'
        f'<figcaption>{_e(caption)} (<a href="{_e(pdf)}">PDF</a>)</figcaption></figure>'
    )


def _html(
    analysis: Analysis,
    figures: Sequence[tuple[str, Path, str]],
    *,
    title: str,
    inputs: Sequence[str],
    filters: Sequence[str],
) -> str:
    parts: list[str] = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
    ]
    n_used = sum(r.used for r in analysis.records)
    settings = [
        ("inputs", ", ".join(inputs)),
        ("filters", ", ".join(filters) or "none"),
        ("runs found", str(len(analysis.records))),
        ("runs in statistics", str(n_used)),
        *analysis.settings.items(),
    ]
    parts.append(_table(["setting", "value"], settings))
    parts.append(
        "<p>Final score per run: <code>eval_return_mean</code> from <code>results.json</code>, "
        "else the last logged <code>eval/return_mean</code>. <em>eval policy</em>: "
        "<code>greedy</code> when the runs evaluated their deterministic policy (greedy "
        "action, or the distribution's mode), <code>sampled</code> when they sampled actions "
        "from it (<code>eval_deterministic</code> in <code>results.json</code>; runs without "
        "it count as greedy), <code>mixed</code> when a group has both. Aggregates use rliable "
        "(stratified bootstrap over runs, percentile CIs); IQM = 25% trimmed mean over all "
        "runs and tasks of a group. Optimality gap uses threshold 1 (meaningful for "
        "normalized scores).</p>"
    )
    if analysis.notes:
        parts.append('<h2>Notes</h2><ul class="notes">')
        parts.extend(f"<li>{_e(note)}</li>" for note in analysis.notes)
        parts.append("</ul>")

    parts.append("<h2>Summary</h2>")
    cols = ["group", *analysis.group_keys, "envs", "runs", "eval policy", "normalization"]
    for metric in METRIC_NAMES:
        cols.append(
            f"{metric} [95% CI]" if analysis.settings["confidence"] == "0.95" else f"{metric} [CI]"
        )
    rows: list[list[Any]] = []
    for res in analysis.groups:
        row: list[Any] = [
            res.label,
            *res.key,
            ", ".join(res.tasks),
            res.n_runs,
            res.eval_policy,
            res.normalization,
        ]
        for metric in METRIC_NAMES:
            est = res.estimates.get(metric)
            row.append(f"{_num(est.point)} [{_num(est.lo)}, {_num(est.hi)}]" if est else "")
        rows.append(row)
    parts.append(_table(cols, rows))

    parts.append("<h2>Score normalization</h2>")
    parts.append(
        _table(
            ["env", "kind", "0 at", "1 at", "source"],
            [
                (
                    env,
                    n.kind,
                    "" if n.kind == "raw" else _num(n.low),
                    "" if n.kind == "raw" else _num(n.high),
                    n.source,
                )
                for env, n in analysis.normalizers.items()
            ],
        )
    )

    parts.append("<h2>Figures</h2>")
    parts.extend(_figure_html(t, png, caption) for t, png, caption in figures)

    parts.append("<h2>Probability of improvement</h2>")
    if analysis.poi:
        parts.append(
            "<p>P(X &gt; Y): probability that a random run of X beats a random run of "
            "Y on the same task, averaged over tasks (only groups evaluated on the "
            "same tasks are compared).</p>"
        )
        parts.append(
            _table(
                ["X", "Y", "tasks", "P(X > Y)", "CI low", "CI high"],
                [
                    (
                        p.x,
                        p.y,
                        ", ".join(p.tasks),
                        _num(p.estimate.point),
                        _num(p.estimate.lo),
                        _num(p.estimate.hi),
                    )
                    for p in analysis.poi
                ],
            )
        )
    else:
        parts.append("<p>No two groups were evaluated on the same set of tasks.</p>")

    refs: dict[ReferenceScore, str] = {}
    for panel in analysis.env_panels:
        for ref in panel.references:
            refs.setdefault(ref, panel.title)
    if refs:
        parts.append("<h2>Published reference scores shown</h2>")
        parts.append(
            "<p>Drawn as dashed lines on the learning curves. Check steps and metric "
            "before comparing: published numbers often measure training episodes.</p>"
        )
        parts.append(
            _table(
                ["panel", "env", "algo", "env steps", "score", "std", "seeds", "metric", "source"],
                [
                    (
                        panel,
                        r.env,
                        r.algo,
                        _num(r.env_steps, 6),
                        _num(r.score),
                        _num(r.std),
                        "" if r.seeds is None else r.seeds,
                        r.metric,
                        r.source,
                    )
                    for r, panel in refs.items()
                ],
            )
        )

    parts.append("<h2>Runs</h2>")
    run_rows = _run_rows(analysis)
    run_cols = [
        "path",
        "group",
        "env",
        "seed",
        "status",
        "eval_policy",
        "final_score",
        "normalized_score",
        "score_source",
        "used",
        "note",
    ]
    body = []
    for run_row in run_rows:
        cells = []
        for col in run_cols:
            value = run_row[col]
            text = _num(value) if isinstance(value, float) else str(value)
            css = ' class="num"' if isinstance(value, int | float) else ""
            cells.append(f"<td{css}>{_e(text)}</td>")
        cls = "" if run_row["used"] == "yes" else ' class="unused"'
        body.append(f"<tr{cls}>" + "".join(cells) + "</tr>")
    parts.append(
        "<table><thead><tr>"
        + "".join(f"<th>{_e(c)}</th>" for c in run_cols)
        + "</tr></thead><tbody>\n"
        + "\n".join(body)
        + "\n</tbody></table>"
    )
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_report(
    analysis: Analysis,
    out_dir: Path,
    *,
    title: str = "rlbench report",
    inputs: Sequence[str] = (),
    filters: Sequence[str] = (),
) -> Path:
    """Write CSV tables, figures (PNG + PDF) and ``index.html`` into ``out_dir``.

    Returns:
        Path of ``index.html``.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = _summary_rows(analysis)
    summary_cols = [
        "group",
        *analysis.group_keys,
        "eval_policy",
        "envs",
        "n_tasks",
        "n_runs",
        "runs_per_task",
        "n_dropped",
        "normalization",
    ]
    for metric in METRIC_NAMES:
        summary_cols += [metric, f"{metric}_lo", f"{metric}_hi"]
    summary_cols += ["raw_iqm", "raw_mean"]
    _write_csv(out_dir / "summary.csv", summary, summary_cols)
    _write_csv(
        out_dir / "probability_of_improvement.csv",
        _poi_rows(analysis),
        ["x", "y", "tasks", "p_x_better", "lo", "hi"],
    )
    run_rows = _run_rows(analysis)
    _write_csv(out_dir / "runs.csv", run_rows, list(run_rows[0]) if run_rows else ["path"])

    colors = group_colors([g.label for g in analysis.groups])
    label = analysis.score_label
    figures: list[tuple[str, Path, str]] = []

    def add(title: str, paths: list[Path], caption: str) -> None:
        if paths:
            figures.append((title, paths[0], caption))

    add(
        "Learning curves",
        plot_learning_curves(
            analysis.env_panels, out_dir=out_dir, name="learning_curves", colors=colors
        ),
        "Eval return vs env steps per env: IQM over seeds, shaded 95% stratified-bootstrap "
        "CI (pointwise); dashed: published reference scores.",
    )
    add(
        "Aggregate learning curves",
        plot_learning_curves(
            analysis.normalized_panels,
            out_dir=out_dir,
            name="learning_curves_normalized",
            ylabel=f"IQM {label}",
            colors=colors,
        ),
        "IQM over runs and envs of each multi-env group vs env steps, with CIs.",
    )
    estimates = {g.label: g.estimates for g in analysis.groups if g.estimates}
    add(
        "Interval estimates",
        plot_interval_estimates(estimates, out_dir=out_dir, xlabel=label, colors=colors),
        "Aggregate metrics of final scores per group with bootstrap CIs "
        "(optimality gap: lower is better).",
    )
    add(
        "Performance profiles",
        plot_performance_profiles(
            analysis.profiles, out_dir=out_dir, xlabel=label + r" $\tau$", colors=colors
        ),
        "Fraction of runs scoring above tau, with CI bands.",
    )
    add(
        "Probability of improvement",
        plot_probability_of_improvement(analysis.poi, out_dir=out_dir),
        "P(X > Y) per pair of groups on the same tasks, with CIs.",
    )

    index = out_dir / "index.html"
    index.write_text(
        _html(analysis, figures, title=title, inputs=inputs, filters=filters), encoding="utf-8"
    )
    return index


# ----------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    """The ``rlbench-report`` argument parser."""
    parser = ArgumentParser(
        prog=PROG,
        description="Aggregate rlbench runs (run dirs, sweep dirs or globs) into a report "
        "with rliable statistics, figures and an offline index.html.",
    )
    parser.add_argument("paths", nargs="+", help="run dirs, sweep dirs or glob patterns")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output dir (default: <path>/report for a single dir, else ./report)",
    )
    parser.add_argument(
        "--group-by",
        default=None,
        help="comma-separated config keys (default: algo.name, or variant when runs set "
        "one, and env.id, plus every config key whose value differs across the runs, apart "
        "from seed and bookkeeping keys such as resume, tags, logger.*, video.*, paths)",
    )
    parser.add_argument(
        "--filter",
        dest="filters",
        action="extend",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="keep runs whose config KEY equals VALUE (KEY!=VALUE negates; "
        "status=completed reads results.json); repeatable; give paths first",
    )
    parser.add_argument("--reps", type=int, default=2000, help="bootstrap replications")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    parser.add_argument("--confidence", type=float, default=0.95, help="CI coverage")
    parser.add_argument(
        "--exclude-status",
        default=",".join(sorted(DEFAULT_EXCLUDED_STATUSES)),
        help="comma-separated results.json statuses left out of statistics "
        "(default: %(default)s; '' keeps all)",
    )
    parser.add_argument(
        "--no-reference", action="store_true", help="do not draw published reference scores"
    )
    parser.add_argument("--title", default="rlbench report", help="report title")
    return parser


def _default_out(paths: Sequence[str]) -> Path:
    if len(paths) == 1 and Path(paths[0]).is_dir():
        return Path(paths[0]) / "report"
    return Path("report")


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``rlbench-report``; returns the exit code (2 on bad input)."""
    try:
        args = build_parser().parse_args(argv)
        if args.reps < 1:
            raise AnalysisError(f"--reps must be >= 1, got {args.reps}")
        if not 0 <= args.seed < 2**32:
            raise AnalysisError(f"--seed must be in [0, 2**32), got {args.seed}")
        if not 0.0 < args.confidence < 1.0:
            raise AnalysisError(f"--confidence must be in (0, 1), got {args.confidence}")
        group_keys = None if args.group_by is None else args.group_by.split(",")
        excluded = {s.strip() for s in args.exclude_status.split(",") if s.strip()}

        runs = discover_runs(args.paths)
        if args.filters:
            runs = filter_runs(runs, args.filters)
            if not runs:
                raise AnalysisError("no runs match filter(s): " + " ".join(args.filters))
        analysis = analyze(
            runs,
            group_keys=group_keys,
            exclude_statuses=excluded,
            reps=args.reps,
            seed=args.seed,
            confidence=args.confidence,
            references=not args.no_reference,
        )
        out_dir: Path = args.out if args.out is not None else _default_out(args.paths)
        index = write_report(
            analysis, out_dir, title=args.title, inputs=args.paths, filters=args.filters
        )
    except AnalysisError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    n_used = sum(r.used for r in analysis.records)
    print(
        f"{PROG}: {len(analysis.records)} runs ({n_used} in statistics), "
        f"{len(analysis.groups)} groups"
    )
    for note in analysis.notes:
        print(f"{PROG}: note: {note}")
    print(f"Report written to {index}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
