"""rlbench: a hackable reinforcement-learning engine and benchmark.

``rlbench.load(run_dir)`` returns the trained agent of a run (or of a policy file that
``rlbench-eval RUN_DIR --export FILE`` wrote) as a ``Policy`` for plain Gymnasium envs:
``policy.act(obs)`` for one observation, ``policy.reset()`` when an episode starts
(``rlbench.evaluate``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rlbench.evaluate import Policy

__version__ = "0.1.0"
__all__ = ["__version__", "load"]


def load(
    source: str | Path,
    checkpoint: str = "best",
    *,
    num_envs: int = 1,
    deterministic: bool | None = None,
    seed: int | None = None,
    env_overrides: Sequence[str] = (),
) -> Policy:
    """The trained agent of a run dir (``checkpoints/best.ckpt``, or ``last.ckpt`` with
    ``checkpoint="last"``) or of an exported policy file; see ``rlbench.evaluate.load``.
    Imports torch on first use only: ``import rlbench`` stays light."""
    from rlbench.evaluate import load as _load

    return _load(
        source,
        checkpoint,
        num_envs=num_envs,
        deterministic=deterministic,
        seed=seed,
        env_overrides=env_overrides,
    )
