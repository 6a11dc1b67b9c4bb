"""Every benchmark script is run by exactly one of `make bench` and `make bench-learning`."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def make_list(name: str) -> list[str]:
    match = re.search(rf"^{name}\s*:=(.*)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert match, f"Makefile defines no {name}"
    return match.group(1).split()


def test_each_benchmark_script_is_in_one_make_target() -> None:
    speed, learning = make_list("SPEED_BENCHES"), make_list("LEARNING_BENCHES")
    scripts = sorted(p.stem.removeprefix("bench_") for p in (ROOT / "scripts").glob("bench_*.py"))
    assert sorted(speed + learning) == scripts
    assert not set(speed) & set(learning)
