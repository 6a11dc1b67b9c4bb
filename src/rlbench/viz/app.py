"""``rlbench-viz <outputs dir>``: a local Dash app to compare runs and seeds.

Serves on 127.0.0.1 only. The page lists every run under the outputs dir (filters: algo,
env, seed, tags, status); ticking runs plots, per env, the IQM over seeds with a 95%
stratified-bootstrap band (rliable, via :mod:`rlbench.analysis`) and each seed's own curve,
shows the config keys that differ between the ticked runs, and plays their eval videos
(``videos/*.mp4``). The page rescans the outputs dir every ``--refresh`` seconds, so curves
grow while runs are still writing.

Curves group the ticked runs by what differs between them, as ``rlbench-report`` does: the
config keys whose values differ, apart from ``seed`` and bookkeeping keys (ticking a sweep
``algo.double=true,false seed=0,1,2`` gives two curves, ``algo.double=false`` and
``algo.double=true``). The "group by" box (initially ``--group-by``) names keys instead.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

import plotly.graph_objects as go
from dash import Dash, Input, Output, State, dcc, html, no_update
from dash_ag_grid import AgGrid
from flask import Response, abort, send_file
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from rlbench.analysis.runs import AnalysisError, ArgumentParser
from rlbench.viz.data import (
    FILTER_KEYS,
    CurveGroup,
    RunIndex,
    config_diff,
    default_metric,
    flatten_config,
)

__all__ = ["HOST", "build_parser", "create_app", "figure", "main"]

PROG: Final[str] = "rlbench-viz"
#: The only interface the server binds: the visualizer is never reachable from the network.
HOST: Final[str] = "127.0.0.1"
MEDIA_ROUTE: Final[str] = "/rlbench-media"
_PALETTE: Final[tuple[str, ...]] = tuple(qualitative.D3)
_PANEL_HEIGHT: Final[int] = 380
_MAX_VIDEOS_PER_RUN: Final[int] = 3
_AUTO_KEYS_HINT: Final[str] = "group by: the keys that differ (default)"
_SHOW_SEEDS: Final[str] = "seeds"
_SHOW_IQM: Final[str] = "iqm"

_COLUMNS: Final[tuple[dict[str, Any], ...]] = (
    {"field": "id", "headerName": "run", "flex": 4, "minWidth": 340, "tooltipField": "id"},
    {"field": "algo", "flex": 1, "minWidth": 90},
    {"field": "env", "flex": 1, "minWidth": 120},
    {"field": "seed", "width": 80},
    {"field": "tags", "flex": 1, "minWidth": 90},
    {"field": "status", "width": 110},
    {"field": "env_steps", "headerName": "env steps", "width": 110},
    {"field": "eval_return", "headerName": "eval return", "width": 120},
    {"field": "videos", "width": 90},
    {"field": "updated", "width": 170},
    {"field": "error", "flex": 2, "minWidth": 120, "tooltipField": "error"},
)
_CSS: Final[dict[str, dict[str, str]]] = {
    "page": {
        "fontFamily": 'system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif',
        "margin": "1em 2em",
        "color": "#222",
    },
    "row": {"display": "flex", "gap": "0.8em", "flexWrap": "wrap", "alignItems": "center"},
    "filter": {"minWidth": "170px", "flex": "1"},
    "muted": {"color": "#666", "fontSize": "0.9em"},
    "cell": {"border": "1px solid #ccc", "padding": "3px 7px", "fontSize": "0.85em"},
}


def _color(index: int) -> str:
    return _PALETTE[index % len(_PALETTE)]


def _rgba(hex_color: str, alpha: float) -> str:
    value = hex_color.lstrip("#")
    r, g, b = (int(value[i : i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def figure(
    groups: Sequence[CurveGroup],
    *,
    metric: str,
    show_seeds: bool = True,
    show_iqm: bool = True,
    confidence: float = 0.95,
) -> go.Figure:
    """One subplot per env: IQM line with CI band per group, and thin per-seed lines.

    Trace names: ``"<label> IQM (n=<runs>)"`` for aggregates, ``"<label> seed <seed>"`` for
    runs (a group with a single run always shows its run).
    """
    envs = sorted({g.env for g in groups})
    if not envs:
        fig = go.Figure()
        fig.add_annotation(
            text="Tick runs in the table to plot them", showarrow=False, font={"size": 16}
        )
        fig.update_layout(
            height=_PANEL_HEIGHT,
            xaxis={"visible": False},
            yaxis={"visible": False},
            template="plotly_white",
        )
        return fig
    cols = min(len(envs), 2)
    rows = math.ceil(len(envs) / cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=envs, horizontal_spacing=0.08)
    labels = sorted({g.label for g in groups})
    colors = {label: _color(i) for i, label in enumerate(labels)}
    shown: set[str] = set()
    pct = f"{confidence:.0%}"
    for group in groups:
        row, col = divmod(envs.index(group.env), cols)
        color = colors[group.label]
        has_iqm = show_iqm and group.center is not None
        if has_iqm:
            assert group.steps is not None and group.center is not None
            assert group.lo is not None and group.hi is not None
            x = group.steps.tolist()
            fig.add_trace(
                go.Scatter(
                    x=x + x[::-1],
                    y=group.hi.tolist() + group.lo.tolist()[::-1],
                    fill="toself",
                    fillcolor=_rgba(color, 0.18),
                    line={"width": 0},
                    hoverinfo="skip",
                    legendgroup=group.label,
                    showlegend=False,
                    name=f"{group.label} {pct} CI",
                ),
                row=row + 1,
                col=col + 1,
            )
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=group.center.tolist(),
                    mode="lines",
                    line={"width": 3, "color": color},
                    name=f"{group.label} IQM (n={len(group.runs)})",
                    legendgroup=group.label,
                    showlegend=group.label not in shown,
                    hovertemplate=f"{group.label} IQM<br>env step %{{x}}<br>{metric} %{{y:.4g}}"
                    f"<br>{pct} CI [%{{customdata[0]:.4g}}, %{{customdata[1]:.4g}}]"
                    "<extra></extra>",
                    customdata=list(zip(group.lo.tolist(), group.hi.tolist(), strict=True)),
                ),
                row=row + 1,
                col=col + 1,
            )
            shown.add(group.label)
        if show_seeds or not has_iqm:
            for run_id, seed, steps, values in group.runs:
                fig.add_trace(
                    go.Scatter(
                        x=steps.tolist(),
                        y=values.tolist(),
                        mode="lines+markers" if steps.size < 3 else "lines",
                        line={"width": 1.2, "color": color, "dash": "dot" if has_iqm else "solid"},
                        opacity=0.45 if has_iqm else 0.9,
                        name=f"{group.label} seed {seed}",
                        legendgroup=group.label,
                        showlegend=not has_iqm and group.label not in shown,
                        hovertemplate=f"{run_id}<br>env step %{{x}}<br>{metric} %{{y:.4g}}"
                        "<extra></extra>",
                    ),
                    row=row + 1,
                    col=col + 1,
                )
                shown.add(group.label)
    fig.update_xaxes(title_text="env steps")
    fig.update_yaxes(title_text=metric)
    fig.update_layout(
        height=_PANEL_HEIGHT * rows,
        template="plotly_white",
        margin={"l": 60, "r": 20, "t": 40, "b": 50},
        legend={"orientation": "h", "y": -0.15 if rows == 1 else -0.05},
        uirevision=metric,  # keep zoom across live refreshes
    )
    return fig


def _diff_table(index: RunIndex, ids: Sequence[str]) -> Any:
    entries = index.select(ids)
    if len(entries) < 2:
        return html.P("Tick two or more runs to compare their configs.", style=_CSS["muted"])
    rows = config_diff({e.id: e.run.config for e in entries})
    n_keys = len(set().union(*(flatten_config(e.run.config) for e in entries)))
    head = html.Tr(
        [html.Th("key", style=_CSS["cell"])] + [html.Th(e.id, style=_CSS["cell"]) for e in entries]
    )
    body = [
        html.Tr(
            [html.Td(key, style=_CSS["cell"])]
            + [html.Td("(missing)" if v is None else v, style=_CSS["cell"]) for v in values]
        )
        for key, values in rows
    ]
    note = f"{len(rows)} of {n_keys} config keys differ"
    return html.Div(
        [
            html.P(note, style=_CSS["muted"]),
            html.Table(
                [html.Thead(head), html.Tbody(body)],
                id="config-diff-table",
                style={"borderCollapse": "collapse"},
            ),
        ]
    )


def _videos(index: RunIndex, ids: Sequence[str]) -> Any:
    blocks = []
    for entry in index.select(ids):
        if not entry.videos:
            continue
        clips = [
            html.Figure(
                [
                    html.Video(
                        src=f"{MEDIA_ROUTE}/{entry.token}/{quote(path.name)}",
                        controls=True,
                        preload="metadata",
                        muted=True,
                        style={"width": "320px", "display": "block"},
                    ),
                    html.Figcaption(path.name, style=_CSS["muted"]),
                ],
                style={"margin": "0"},
            )
            for path in entry.videos[-_MAX_VIDEOS_PER_RUN:]
        ]
        blocks.append(
            html.Div(
                [
                    html.H4(entry.id, style={"margin": "0.6em 0 0.3em"}),
                    html.Div(clips, style=_CSS["row"]),
                ]
            )
        )
    if not blocks:
        return html.P("No eval videos (videos/*.mp4) in the ticked runs.", style=_CSS["muted"])
    return blocks


def _layout(index: RunIndex, *, refresh_s: float, group_by: Sequence[str]) -> html.Div:
    filters = [
        dcc.Dropdown(
            id=f"filter-{key}",
            options=[],
            multi=True,
            placeholder=key,
            style=_CSS["filter"],
        )
        for key in FILTER_KEYS
    ]
    return html.Div(
        [
            html.H2(f"rlbench runs: {index.root}", style={"marginBottom": "0.2em"}),
            html.Div(id="status-line", style=_CSS["muted"]),
            html.Div(filters, style={**_CSS["row"], "margin": "0.6em 0"}),
            html.Div(
                [
                    html.Button("tick all shown", id="select-all", n_clicks=0),
                    html.Button("clear ticks", id="select-none", n_clicks=0),
                    html.Span(id="selection-line", style=_CSS["muted"]),
                ],
                style={**_CSS["row"], "marginBottom": "0.4em"},
            ),
            AgGrid(
                id="runs",
                rowData=[],
                columnDefs=list(_COLUMNS),
                getRowId="params.data.id",
                defaultColDef={"sortable": True, "resizable": True, "filter": True},
                dashGridOptions={
                    "rowSelection": {
                        "mode": "multiRow",
                        "checkboxes": True,
                        "headerCheckbox": True,
                        "enableClickSelection": True,
                    },
                    "animateRows": False,
                    "tooltipShowDelay": 300,
                },
                selectedRows=[],
                style={"height": "330px", "width": "100%"},
            ),
            html.Div(
                [
                    html.Label("metric"),
                    dcc.Dropdown(
                        id="metric", options=[], clearable=False, style={"width": "280px"}
                    ),
                    html.Label("group by"),
                    dcc.Dropdown(
                        id="group-keys",
                        options=[{"label": k, "value": k} for k in group_by],
                        value=list(group_by),
                        multi=True,
                        placeholder=_AUTO_KEYS_HINT,
                        style={"minWidth": "280px", "flex": "1"},
                    ),
                    dcc.Checklist(
                        id="curve-options",
                        options=[
                            {"label": " IQM over seeds with CI band", "value": _SHOW_IQM},
                            {"label": " per-seed curves", "value": _SHOW_SEEDS},
                        ],
                        value=[_SHOW_IQM, _SHOW_SEEDS],
                        inline=True,
                        inputStyle={"marginLeft": "1em"},
                    ),
                ],
                style={**_CSS["row"], "margin": "1em 0 0.4em"},
            ),
            dcc.Graph(id="curves", figure=figure([], metric=""), config={"displaylogo": False}),
            html.H3("Config diff"),
            html.Div(id="config-diff"),
            html.H3("Eval videos"),
            html.Div(id="videos"),
            dcc.Store(id="selected", data=[]),
            dcc.Store(id="version", data=-1),
            dcc.Interval(
                id="tick",
                interval=max(int(refresh_s * 1000), 250),
                disabled=refresh_s <= 0,
            ),
        ],
        style=_CSS["page"],
    )


def _filters(values: Sequence[Any]) -> dict[str, list[str]]:
    return {key: list(v or []) for key, v in zip(FILTER_KEYS, values, strict=True)}


def _selected_ids(selected_rows: Any) -> list[str]:
    if isinstance(selected_rows, Mapping):
        return [str(i) for i in selected_rows.get("ids", [])]
    return [str(r["id"]) for r in selected_rows or [] if isinstance(r, Mapping) and "id" in r]


def create_app(index: RunIndex, *, refresh_s: float = 5.0, group_by: Sequence[str] = ()) -> Dash:
    """The Dash app over ``index`` (scans it once now, then every ``refresh_s`` seconds from
    the page; ``refresh_s <= 0`` disables live refresh). Curves group runs by ``group_by``
    when given, else by the config keys that differ between the ticked runs."""
    index.refresh()
    app = Dash(__name__, title=PROG, update_title="")
    app.layout = _layout(index, refresh_s=refresh_s, group_by=list(group_by))
    filter_inputs = [Input(f"filter-{key}", "value") for key in FILTER_KEYS]

    @app.server.route(f"{MEDIA_ROUTE}/<token>/<name>")
    def media(token: str, name: str) -> Response:
        entry = index.by_token(token)
        path = next((p for p in entry.videos if p.name == name), None) if entry else None
        if path is None or not path.is_file():
            abort(404)
        return send_file(path, mimetype="video/mp4", conditional=True)

    @app.callback(
        Output("runs", "rowData"),
        Output("runs", "selectedRows"),
        *(Output(f"filter-{key}", "options") for key in FILTER_KEYS),
        Output("status-line", "children"),
        Output("version", "data"),
        Input("tick", "n_intervals"),
        *filter_inputs,
        State("selected", "data"),
        State("runs", "rowData"),
    )
    def refresh(_tick: Any, *args: Any) -> tuple[Any, ...]:
        *filter_values, selected, current = args
        index.refresh()
        rows = index.rows(_filters(filter_values))
        options = index.filter_options()
        n_total = len(index.entries())
        status = f"{n_total} runs ({len(rows)} shown); " + (
            f"refreshing every {refresh_s:g} s" if refresh_s > 0 else "live refresh off"
        )
        if rows == current:
            row_data: Any = no_update
            selection: Any = no_update
        else:
            visible = {r["id"] for r in rows}
            row_data = rows
            selection = {"ids": [i for i in selected or [] if i in visible]}
        return (
            row_data,
            selection,
            *(options[key] for key in FILTER_KEYS),
            status,
            index.version,
        )

    @app.callback(
        Output("selected", "data"),
        Input("runs", "selectedRows"),
        State("runs", "rowData"),
        State("selected", "data"),
    )
    def remember_selection(selected_rows: Any, row_data: Any, stored: Any) -> Any:
        visible = {str(r["id"]) for r in row_data or []}
        ticked = _selected_ids(selected_rows)
        kept = [i for i in stored or [] if i not in visible]  # ticked runs hidden by filters
        new = kept + [i for i in ticked if i not in kept]
        return no_update if new == (stored or []) else new

    @app.callback(
        Output("runs", "selectedRows", allow_duplicate=True),
        Input("select-all", "n_clicks"),
        Input("select-none", "n_clicks"),
        State("runs", "rowData"),
        prevent_initial_call=True,
    )
    def bulk_select(_all: int, _none: int, row_data: Any) -> Any:
        from dash import ctx

        if ctx.triggered_id == "select-all":
            return {"ids": [str(r["id"]) for r in row_data or []]}
        return {"ids": []}

    @app.callback(
        Output("metric", "options"),
        Output("metric", "value"),
        Output("group-keys", "options"),
        Input("selected", "data"),
        Input("version", "data"),
        State("metric", "value"),
        State("group-keys", "value"),
    )
    def controls(selected: Any, _version: Any, metric: Any, keys: Any) -> tuple[Any, ...]:
        ids = list(selected or [])
        metrics = index.metrics(ids or [e.id for e in index.entries()])
        value = metric if metric in metrics else default_metric(metrics)
        flat = [flatten_config(e.run.config) for e in index.select(ids)]
        all_keys: list[str] = sorted(set().union(*flat)) if flat else []
        varying = [k for k in all_keys if len({f.get(k) for f in flat}) > 1]
        key_options = list(dict.fromkeys([*(keys or []), *varying, *all_keys]))
        return metrics, value, key_options

    @app.callback(
        Output("curves", "figure"),
        Output("config-diff", "children"),
        Output("videos", "children"),
        Output("selection-line", "children"),
        Input("selected", "data"),
        Input("version", "data"),
        Input("metric", "value"),
        Input("group-keys", "value"),
        Input("curve-options", "value"),
    )
    def view(selected: Any, _version: Any, metric: Any, keys: Any, options: Any) -> tuple[Any, ...]:
        ids = [i for i in selected or [] if index.get(i) is not None]
        metric = metric or default_metric(index.metrics(ids))
        grouping = index.grouping(ids, keys or None)
        groups = index.curves(ids, metric=metric, keys=keys or None)
        fig = figure(
            groups,
            metric=metric,
            show_seeds=_SHOW_SEEDS in (options or []),
            show_iqm=_SHOW_IQM in (options or []),
            confidence=index.confidence,
        )
        line = f"{len(ids)} ticked" if ids else "no runs ticked"
        if ids:
            named = ", ".join(grouping.shown) or "nothing"
            line += f"; curves named by {named}" + (" (default)" if grouping.default else "")
        return fig, _diff_table(index, ids), _videos(index, ids), line

    return app


# ----------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    """The ``rlbench-viz`` argument parser."""
    parser = ArgumentParser(
        prog=PROG,
        description=f"Browse and compare rlbench runs in a local web page (served on {HOST} only).",
    )
    parser.add_argument("outputs", type=Path, help="outputs dir (run dirs and sweep dirs)")
    parser.add_argument("--port", type=int, default=8050, help="port (default: %(default)s)")
    parser.add_argument(
        "--refresh",
        type=float,
        default=5.0,
        help="seconds between rescans of the outputs dir; 0 turns live refresh off "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--reps", type=int, default=1000, help="bootstrap replications (default: %(default)s)"
    )
    parser.add_argument(
        "--group-by",
        default=None,
        help="comma-separated config keys the curves group runs by (default: the keys whose "
        "values differ between the ticked runs, apart from seed; the page can change it)",
    )
    parser.add_argument(
        "--running-window",
        type=float,
        default=120.0,
        help="a run without results.json counts as running while it wrote within this many "
        "seconds (default: %(default)s)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``rlbench-viz``; returns the exit code (2 on bad input)."""
    try:
        args = build_parser().parse_args(argv)
        if not args.outputs.is_dir():
            raise AnalysisError(f"no such directory: {args.outputs}")
        if not 1 <= args.port <= 65535:
            raise AnalysisError(f"--port={args.port}: must be in [1, 65535]")
        if args.reps < 1:
            raise AnalysisError(f"--reps={args.reps}: must be >= 1")
        if args.refresh < 0 or args.running_window < 0:
            raise AnalysisError("--refresh and --running-window must be >= 0")
        group_by = [k.strip() for k in (args.group_by or "").split(",") if k.strip()]
        if args.group_by is not None and not group_by:
            raise AnalysisError("--group-by: no keys given")
        index = RunIndex(args.outputs, reps=args.reps, running_window_s=args.running_window)
        app = create_app(index, refresh_s=args.refresh, group_by=group_by)
        print(
            f"{PROG}: {len(index.entries())} runs under {args.outputs}; "
            f"open http://{HOST}:{args.port}/ (Ctrl-C to stop)",
            flush=True,
        )
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
        app.run(host=HOST, port=args.port, debug=False)
    except AnalysisError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # e.g. the port is taken
        print(
            f"{PROG}: error: cannot serve on {HOST}:{args.port}: {err.strerror or err}",
            file=sys.stderr,
        )
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
