"""Learning check: Rainbow with all six components really learns CartPole (slow)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import assert_learns


@pytest.mark.slow
def test_rainbow_cartpole_preset_reaches_475_within_50k_steps(tmp_path: Path) -> None:
    assert_learns(tmp_path, ["experiment=rainbow_cartpole", "seed=0"], threshold=475, within=50_000)
