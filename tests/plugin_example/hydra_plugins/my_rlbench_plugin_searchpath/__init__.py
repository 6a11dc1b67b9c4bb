"""Puts ``my_rlbench_plugin``'s configs on Hydra's search path whenever the package is
installed, so ``rlbench algo=myalgo`` works without ``hydra.searchpath=...``.

Hydra imports every module of the ``hydra_plugins`` namespace package it finds on
``sys.path`` at start-up (no ``hydra_plugins/__init__.py``: several distributions share it).
"""

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin


class MyRLBenchPluginSearchPath(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        search_path.append(provider="my_rlbench_plugin", path="pkg://my_rlbench_plugin.conf")
