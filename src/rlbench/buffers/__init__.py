"""Replay buffers: ordered per-env trajectories, n-step sampling at sample time."""

from rlbench.buffers.replay import Batch, TrajectoryReplayBuffer

__all__ = ["Batch", "TrajectoryReplayBuffer"]
