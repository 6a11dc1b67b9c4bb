"""``MyDQN``: rlbench's DQN with one small, visible change (a mark in every checkpoint).

A real plugin would change the loss, the network or the schedule the same way: subclass,
override, and point a yaml ``_target_`` here.
"""

from __future__ import annotations

from typing import Any

from rlbench.algos.dqn import DQN


class MyDQN(DQN):
    """DQN that records its own class and step count under ``checkpoint["my_rlbench_plugin"]``."""

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["my_rlbench_plugin"] = {
            "algorithm": type(self).__name__,
            "global_step": int(self.global_step),
        }
