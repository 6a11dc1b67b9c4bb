"""Learning check: a fixed seed really learns (slow; runs in CI because it fits)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import assert_learns


@pytest.mark.slow
def test_dqn_cartpole_preset_reaches_475_within_100k_steps(tmp_path: Path) -> None:
    assert_learns(tmp_path, ["experiment=dqn_cartpole", "seed=0"], threshold=475, within=100_000)


@pytest.mark.slow
def test_the_readme_ddqn_acrobot_example_learns_with_the_default_values(tmp_path: Path) -> None:
    """``rlbench algo=ddqn env=acrobot seed=3 total_env_steps=200000`` (README): algo=dqn's
    defaults, not a preset. Measured: two evaluations of at least -100 in a row by 60k env
    steps (the run stops there), and from 60k to 200k every evaluation in [-130, -68]."""
    overrides = ["algo=ddqn", "env=acrobot", "seed=3"]
    assert_learns(tmp_path, overrides, threshold=-100, within=200_000)
