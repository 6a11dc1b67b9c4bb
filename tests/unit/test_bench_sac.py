"""Smoke test of scripts/bench_sac.py: the harness runs all its contenders and prints the
ratios (a few hundred steps; the benchmark itself is `make bench`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_quick_benchmark_prints_its_ratios(tmp_path: Path) -> None:
    pytest.importorskip("mujoco")
    proc = subprocess.run(
        [sys.executable, "scripts/bench_sac.py", "--quick", "--out", str(tmp_path)],
        cwd=ROOT,
        timeout=300,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "steady ratio rlbench/bare" in proc.stdout, proc.stdout[-2000:]
