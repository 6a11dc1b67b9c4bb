"""Multi-seed analysis of rlbench runs: discovery, rliable statistics, figures, HTML reports.

Submodules:

- :mod:`rlbench.analysis.runs`: find/load/filter/group run directories.
- :mod:`rlbench.analysis.stats`: score normalization and rliable aggregate statistics.
- :mod:`rlbench.analysis.plots`: figures (PNG + PDF).
- :mod:`rlbench.analysis.report`: the ``rlbench-report`` command.

Heavy dependencies (matplotlib, seaborn, rliable) load only when those submodules are imported.
"""

__all__ = ["plots", "report", "runs", "stats"]
