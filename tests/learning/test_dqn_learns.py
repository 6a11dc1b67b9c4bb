"""Learning check: a fixed seed really learns (slow; runs in CI because it fits)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import assert_learns


@pytest.mark.slow
def test_dqn_cartpole_preset_reaches_475_within_100k_steps(tmp_path: Path) -> None:
    assert_learns(tmp_path, ["experiment=dqn_cartpole", "seed=0"], threshold=475, within=100_000)
