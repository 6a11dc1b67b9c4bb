"""rlbench: a hackable reinforcement-learning engine and benchmark."""

__version__ = "0.1.0"
