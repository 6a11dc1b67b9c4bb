"""scripts/bench_shortcuts.py: its paired ratios and verdicts on fabricated runs, each
shortcut's off switch (it must put the public path back), and a smoke run of ``--quick``
(a few thousand env steps; the benchmark itself takes tens of minutes)."""

from __future__ import annotations

import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import bench_shortcuts

ROOT = Path(__file__).resolve().parents[2]


def _runs(on: list[float], **off: list[float]) -> dict[str, list[dict[str, Any]]]:
    runs = {"none": [{"steady_sps": s} for s in on]}
    runs.update({k: [{"steady_sps": s} for s in v] for k, v in off.items()})
    return runs


def test_ratios_are_paired_per_round_and_judged_on_the_median(
    capsys: pytest.CaptureFixture[str],
) -> None:
    runs = _runs([100.0, 200.0, 110.0], adam=[90.0, 190.0, 100.0], clip=[99.0, 201.0, 109.0])
    assert bench_shortcuts.paired_ratios(runs, "adam") == pytest.approx([100 / 90, 200 / 190, 1.1])
    assert bench_shortcuts.verdict(bench_shortcuts.paired_ratios(runs, "adam")) == "keep"
    assert bench_shortcuts.verdict(bench_shortcuts.paired_ratios(runs, "clip")) == "remove"
    assert bench_shortcuts.verdict([1.03, 1.03]) == "keep"  # 3% is enough
    lines = bench_shortcuts.summarize("dqn", runs, steps=1000)
    assert lines[0].startswith("DQN, 1000 env steps, 3 interleaved rounds")
    assert (
        "adam" in lines[1] and "min 1.053  median 1.100" in lines[1] and lines[1].endswith("keep)")
    )
    assert "clip" in lines[2] and lines[2].endswith("remove)")
    assert "clip" in capsys.readouterr().out


def test_every_benchmark_names_known_shortcuts() -> None:
    for bench in bench_shortcuts.BENCHES.values():
        assert set(bench.shortcuts) <= set(bench_shortcuts.SHORTCUTS)
        assert bench.quick_steps < bench.steps


@pytest.fixture
def restored() -> Iterator[None]:
    """Put back whatever an off switch replaced in rlbench's modules."""
    import rlbench.algos.base
    import rlbench.callbacks.logging

    modules: list[types.ModuleType] = [rlbench.algos.base, rlbench.callbacks.logging]
    saved = [dict(vars(m)) for m in modules]
    yield
    for module, names in zip(modules, saved, strict=True):
        vars(module).update(names)


@pytest.mark.usefixtures("restored")
def test_the_clip_switch_puts_torchs_clip_back() -> None:
    """After the switch the same maths runs by the public path: torch's clip_grad_norm_."""
    import rlbench.algos.base

    original = rlbench.algos.base.clip_grad_norm_
    bench_shortcuts.SHORTCUTS["clip"].off()
    assert rlbench.algos.base.clip_grad_norm_ is not original
    grads = [torch.full((4,), 3.0), torch.full((2,), 4.0)]
    params = [torch.zeros_like(g, requires_grad=True) for g in grads]
    for p, g in zip(params, grads, strict=True):
        p.grad = g.clone()
    norm = rlbench.algos.base.clip_grad_norm_(params, 1.0)
    torch.testing.assert_close(norm, torch.linalg.vector_norm(torch.cat(grads)))
    total = torch.linalg.vector_norm(torch.cat([p.grad for p in params]))  # type: ignore[misc]
    torch.testing.assert_close(total, torch.tensor(1.0), atol=1e-5, rtol=0)


@pytest.mark.usefixtures("restored")
def test_cpu_clock_times_the_logged_throughput_in_cpu_seconds() -> None:
    import time

    import rlbench.callbacks.logging

    bench_shortcuts.cpu_clock()
    assert rlbench.callbacks.logging.time.perf_counter is time.process_time


def test_quick_run_prints_a_paired_ratio_and_verdict(tmp_path: Path) -> None:
    args = ["scripts/bench_shortcuts.py", "--quick", "--bench", "ppo", "--out", str(tmp_path)]
    proc = subprocess.run(
        [sys.executable, *args], cwd=ROOT, timeout=600, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "SUMMARY" in proc.stdout and "on/off min" in proc.stdout, proc.stdout[-2000:]
    assert "keep if median >= 1.03" in proc.stdout
