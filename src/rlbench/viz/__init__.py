"""``rlbench-viz``: a local web page (Dash + Plotly) to compare runs and seeds while they run.

- :mod:`rlbench.viz.data`: the live run index, filters, config diffs and curve statistics.
- :mod:`rlbench.viz.app`: the Dash layout, callbacks and the command line.

Needs the optional extra ``viz`` (dash, dash-ag-grid, plotly); importing this package alone
does not import them.
"""

__all__ = ["app", "data"]
