"""Hydra configs of my_rlbench_plugin (``pkg://my_rlbench_plugin.conf`` needs this file)."""
