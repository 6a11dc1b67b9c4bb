"""``rlbench --help`` and a mistyped group option: only what users can pick, no schemas."""

from __future__ import annotations

import re

from tests.conftest import CONF, run_cli

GROUPS = ("algo", "env", "network", "buffer", "sampler", "trainer", "logger", "experiment")


def test_help_opens_with_rlbench_and_lists_the_groups() -> None:
    proc = run_cli(["--help"], timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert out.startswith("rlbench: "), out[:300]
    assert "Usage:" in out and "cli is powered by Hydra" not in out
    assert "schema" not in out.lower()
    listed = dict(
        line.split(": ", 1)
        for line in out.splitlines()
        if re.match(r"^[a-z_]+: [a-z0-9_, ]+$", line)
    )
    for group in GROUPS:
        options = {p.stem for p in (CONF / group).glob("*.yaml")}
        assert set(listed[group].split(", ")) == options, group


def test_mistyped_algo_lists_the_algos_and_no_schema() -> None:
    proc = run_cli(["algo=dqnn"], timeout=120)
    assert proc.returncode != 0
    err = proc.stderr
    assert "Could not find 'algo/dqnn'" in err, err[-3000:]
    block = err.split("Available options in 'algo':", 1)[1].split("Config search path", 1)[0]
    offered = set(block.split())
    assert offered == {p.stem for p in (CONF / "algo").glob("*.yaml")}
    assert "schema_" not in err  # ("provider=schema" in the search path is Hydra's own name)
