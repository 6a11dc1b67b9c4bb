"""Figures for benchmark reports (PNG + PDF).

Figures are built with :class:`matplotlib.figure.Figure` directly (Agg canvas, no pyplot
state), so plotting works headless and never touches the caller's pyplot backend.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from rlbench.analysis.runs import LABEL_SEP
from rlbench.analysis.stats import (
    METRIC_NAMES,
    IntervalEstimate,
    PerformanceProfile,
    PoiResult,
    ReferenceScore,
)

__all__ = [
    "CurvePanel",
    "CurveSeries",
    "group_colors",
    "plot_interval_estimates",
    "plot_learning_curves",
    "plot_performance_profiles",
    "plot_probability_of_improvement",
    "save_figure",
]

FloatArray = npt.NDArray[np.float64]
Color = tuple[float, float, float]

METRIC_TITLES: Final[Mapping[str, str]] = {
    "iqm": "IQM",
    "median": "Median",
    "mean": "Mean",
    "optimality_gap": "Optimality gap",
}
_MAX_LABEL: Final[int] = 40


@dataclass
class CurveSeries:
    """One line with a CI band.

    Attributes:
        label: Legend label (group name).
        steps: Env steps, shape ``(num_steps,)``.
        center, lo, hi: IQM and CI bounds, each of shape ``(num_steps,)``.
        n_runs: Number of runs behind the curve (shown in the legend).
    """

    label: str
    steps: FloatArray
    center: FloatArray
    lo: FloatArray
    hi: FloatArray
    n_runs: int


@dataclass
class CurvePanel:
    """One subplot of a learning-curve figure: several series plus reference lines."""

    title: str
    series: list[CurveSeries]
    references: list[ReferenceScore] = field(default_factory=list)


def _text(label: str, limit: int = _MAX_LABEL) -> str:
    """Make data-derived text safe for matplotlib (no mathtext) and short enough."""
    if len(label) > limit:
        label = label[: limit - 1] + "\u2026"
    return label.replace("$", r"\$")


def _short_labels(labels: Sequence[str], *, drop: str | None = None) -> list[str]:
    """Drop the parts (:data:`~rlbench.analysis.runs.LABEL_SEP`-separated) shared by all
    labels (or equal to ``drop``), e.g. the env in a per-env panel; a label is never emptied."""
    parts = [label.split(LABEL_SEP) for label in labels]
    common = set.intersection(*(set(p) for p in parts)) if len(parts) > 1 else set()
    if drop is not None:
        common.add(drop)
    out = []
    for label, pieces in zip(labels, parts, strict=True):
        kept = [piece for piece in pieces if piece not in common]
        out.append(LABEL_SEP.join(kept) if kept else label)
    return out


def group_colors(labels: Sequence[str]) -> dict[str, Color]:
    """A stable colour per group label (order of first appearance)."""
    unique = list(dict.fromkeys(labels))
    palette = sns.color_palette("tab10" if len(unique) <= 10 else "husl", len(unique))
    return {
        label: (float(c[0]), float(c[1]), float(c[2]))
        for label, c in zip(unique, palette, strict=True)
    }


def save_figure(fig: Figure, out_dir: Path, name: str) -> list[Path]:
    """Save ``fig`` as ``<out_dir>/<name>.png`` (150 dpi) and ``.pdf``; returns both paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    png = out_dir / f"{name}.png"
    pdf = out_dir / f"{name}.pdf"
    fig.savefig(png, dpi=150, bbox_inches="tight")
    fig.savefig(pdf, bbox_inches="tight", metadata={"CreationDate": None})
    return [png, pdf]


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _fmt_steps(steps: float) -> str:
    if not math.isfinite(steps):
        return "?"
    for div, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if steps >= div:
            return f"{steps / div:g}{suffix}"
    return f"{steps:g}"


def plot_learning_curves(
    panels: Sequence[CurvePanel],
    *,
    out_dir: Path,
    name: str = "learning_curves",
    ylabel: str = "eval return (IQM over seeds)",
    colors: Mapping[str, Color] | None = None,
    ncols: int = 3,
) -> list[Path]:
    """One subplot per panel (e.g. per env): IQM line with a CI band per series, plus dashed
    horizontal lines for published reference scores.

    Returns:
        The written PNG and PDF paths (empty when there is nothing to draw).
    """
    panels = [p for p in panels if p.series]
    if not panels:
        return []
    colors = dict(colors) if colors else group_colors([s.label for p in panels for s in p.series])
    ncols = max(1, min(ncols, len(panels)))
    nrows = math.ceil(len(panels) / ncols)
    fig = _new_figure(4.6 * ncols, 3.4 * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    ref_styles = ("--", ":", "-.")
    for index, panel in enumerate(panels):
        ax: Axes = axes[index // ncols][index % ncols]
        short = _short_labels([s.label for s in panel.series], drop=panel.title)
        for series, text in zip(panel.series, short, strict=True):
            color = colors.get(series.label, (0.3, 0.3, 0.3))
            ax.plot(
                series.steps,
                series.center,
                color=color,
                lw=1.8,
                label=_text(f"{text} (n={series.n_runs})"),
            )
            ax.fill_between(series.steps, series.lo, series.hi, color=color, alpha=0.2, lw=0)
        for ref_index, ref in enumerate(panel.references):
            ax.axhline(
                ref.score,
                color="0.35",
                lw=1.0,
                ls=ref_styles[ref_index % 3],
                label=_text(
                    f"published {ref.algo} @{_fmt_steps(ref.env_steps)}"
                    f" ({ref.source.split(' ')[0]})",
                    60,
                ),
            )
        ax.set_title(_text(panel.title, 60), fontsize=10)
        ax.set_xlabel("env steps")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    for index in range(len(panels), nrows * ncols):
        axes[index // ncols][index % ncols].set_visible(False)
    return save_figure(fig, out_dir, name)


def plot_interval_estimates(
    estimates: Mapping[str, Mapping[str, IntervalEstimate]],
    *,
    out_dir: Path,
    name: str = "interval_estimates",
    xlabel: str = "normalized score",
    colors: Mapping[str, Color] | None = None,
) -> list[Path]:
    """Point estimate and CI of each aggregate metric (columns) for each group (rows)."""
    groups = list(estimates)
    if not groups:
        return []
    colors = dict(colors) if colors else group_colors(groups)
    fig = _new_figure(3.2 * len(METRIC_NAMES) + 1.5, 0.9 + 0.45 * len(groups))
    axes = fig.subplots(1, len(METRIC_NAMES), squeeze=False, sharey=True)[0]
    ys = np.arange(len(groups))
    for ax, metric in zip(axes, METRIC_NAMES, strict=True):
        for y, group in zip(ys, groups, strict=True):
            est = estimates[group][metric]
            color = colors.get(group, (0.3, 0.3, 0.3))
            ax.barh(y, est.hi - est.lo, left=est.lo, height=0.6, color=color, alpha=0.55)
            ax.vlines(est.point, y - 0.3, y + 0.3, color="k", lw=1.5)
        ax.set_title(METRIC_TITLES[metric], fontsize=10)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(ys, [_text(g) for g in groups], fontsize=8)
    axes[0].invert_yaxis()
    return save_figure(fig, out_dir, name)


def plot_performance_profiles(
    profiles: Mapping[str, PerformanceProfile],
    *,
    out_dir: Path,
    name: str = "performance_profiles",
    xlabel: str = r"normalized score $\tau$",
    colors: Mapping[str, Color] | None = None,
) -> list[Path]:
    """Score distributions: fraction of runs with score > tau, with CI bands."""
    if not profiles:
        return []
    colors = dict(colors) if colors else group_colors(list(profiles))
    fig = _new_figure(6.0, 4.0)
    ax = fig.subplots()
    for group, prof in profiles.items():
        color = colors.get(group, (0.3, 0.3, 0.3))
        ax.plot(prof.taus, prof.values, color=color, lw=1.8, label=_text(group))
        ax.fill_between(prof.taus, prof.lo, prof.hi, color=color, alpha=0.2, lw=0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(r"fraction of runs with score $> \tau$")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    return save_figure(fig, out_dir, name)


def plot_probability_of_improvement(
    results: Sequence[PoiResult],
    *,
    out_dir: Path,
    name: str = "probability_of_improvement",
) -> list[Path]:
    """Heatmap of P(row > column), one panel per set of tasks (groups are only compared on
    identical task sets)."""
    if not results:
        return []
    blocks: dict[tuple[str, ...], list[PoiResult]] = {}
    for res in results:
        blocks.setdefault(res.tasks, []).append(res)
    fig = _new_figure(1, 1)
    sizes = [len({r.x for r in block}) for block in blocks.values()]
    fig.set_size_inches(sum(2.2 + 1.1 * s for s in sizes) + 1.0, 1.8 + 0.9 * max(sizes))
    axes = fig.subplots(1, len(blocks), squeeze=False)[0]
    for ax, (tasks, block) in zip(axes, blocks.items(), strict=True):
        labels = list(dict.fromkeys([r.x for r in block] + [r.y for r in block]))
        matrix = np.full((len(labels), len(labels)), np.nan)
        annot = np.full(matrix.shape, "", dtype=object)
        pos = {label: i for i, label in enumerate(labels)}
        for res in block:
            i, j = pos[res.x], pos[res.y]
            est = res.estimate
            matrix[i, j] = est.point
            annot[i, j] = f"{est.point:.2f}\n[{est.lo:.2f}, {est.hi:.2f}]"
        heat_kwargs: dict[str, Any] = {
            "ax": ax,
            "annot": annot,
            "fmt": "",
            "vmin": 0.0,
            "vmax": 1.0,
            "center": 0.5,
            "cmap": "vlag",
            "mask": np.isnan(matrix),
            "square": True,
            "cbar": ax is axes[-1],
            "annot_kws": {"fontsize": 7},
        }
        with warnings.catch_warnings():  # seaborn 0.13 calls the soon-deprecated set_bad
            warnings.simplefilter("ignore", PendingDeprecationWarning)
            sns.heatmap(matrix, **heat_kwargs)
        ticks = [_text(label, 24) for label in _short_labels(labels)]
        ax.set_xticks(np.arange(len(labels)) + 0.5, ticks, rotation=45, ha="right", fontsize=7)
        ax.set_yticks(np.arange(len(labels)) + 0.5, ticks, rotation=0, fontsize=7)
        ax.set_xlabel("Y")
        ax.set_ylabel("X")
        ax.set_title(_text("P(X > Y): " + ", ".join(tasks), 60), fontsize=9)
    return save_figure(fig, out_dir, name)
