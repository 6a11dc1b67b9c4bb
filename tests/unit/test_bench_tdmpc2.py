"""Smoke test of scripts/bench_tdmpc2.py: its quick mode builds TD-MPC2 (1M) and TD-MPC,
times acting and one update of each and prints a profile (the benchmark itself is run by
hand: ``python scripts/bench_tdmpc2.py``)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


def load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "bench_tdmpc2", ROOT / "scripts" / "bench_tdmpc2.py"
    )
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    sys.modules["bench_tdmpc2"] = bench
    spec.loader.exec_module(bench)
    return bench


def test_quick_benchmark_times_acting_and_updates(capsys: pytest.CaptureFixture[str]) -> None:
    bench = load_bench()
    threads = torch.get_num_threads()
    try:
        bench.main(["--quick", "--device", "cpu"])
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    for name in ("tdmpc2-1M", "tdmpc"):
        assert f"== {name}:" in out, out[-2000:]
    assert out.count("act: min") == 2 and out.count("update: min") == 2
    assert "agent step (act + update)" in out and "Self CPU" in out  # the profile table
    assert "device cpu;" in out


@pytest.mark.parametrize(
    ("device", "message"),
    [("tpu", "not a torch device"), ("meta", "allowed: cpu, cuda"), ("cuda", "no CUDA device")],
)
def test_bad_device_is_a_one_line_error(
    device: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA: --device cuda is valid here")
    with pytest.raises(SystemExit):
        load_bench().main(["--quick", "--device", device])
    err = capsys.readouterr().err
    assert f"--device {device!r}: {message}" in err, err
