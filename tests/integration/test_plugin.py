"""Extending rlbench from a package of one's own: ``tests/plugin_example/`` holds
``my_rlbench_plugin`` (an algorithm subclassing rlbench's DQN and its
``conf/algo/myalgo.yaml``) and a Hydra search-path plugin (``hydra_plugins/``) that adds the
package's configs by itself. Nothing in rlbench changes."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import torch

from tests.conftest import DEBUG, ROOT, compose_cfg, run_cli

PLUGIN_ROOT = ROOT / "tests" / "plugin_example"  # what a user's pip install puts on sys.path


def test_search_path_by_folder_composes_the_plugin_algo() -> None:
    conf = PLUGIN_ROOT / "my_rlbench_plugin" / "conf"
    cfg = compose_cfg([f"hydra.searchpath=[file://{conf}]", "algo=myalgo"])
    dqn = compose_cfg(["algo=dqn"])
    assert cfg.algo._target_ == "my_rlbench_plugin.algo.MyDQN"
    assert cfg.algo.name == "myalgo" and cfg.algo.lr == 5e-4
    assert cfg.algo.gamma == dqn.algo.gamma  # the rest comes from rlbench's conf/algo/dqn.yaml


def test_plugin_algo_trains_through_the_cli(tmp_path: Path) -> None:
    # the package alone (no hydra_plugins/): its configs come in through hydra.searchpath
    site = tmp_path / "site"
    shutil.copytree(PLUGIN_ROOT / "my_rlbench_plugin", site / "my_rlbench_plugin")
    run_dir = tmp_path / "run"
    proc = run_cli(
        [
            "algo=myalgo",
            "hydra.searchpath=[pkg://my_rlbench_plugin.conf]",
            *DEBUG,
            f"hydra.run.dir={run_dir}",
        ],
        env={"PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(site)])},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "completed" and results["env_steps"] == 1000
    with (run_dir / "metrics.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert any(r.get("train/loss") for r in rows) and any(r.get("eval/return_mean") for r in rows)
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    mark = ckpt["my_rlbench_plugin"]  # written by MyDQN.on_save_checkpoint
    assert mark["algorithm"] == "MyDQN" and mark["global_step"] > 0


def test_search_path_plugin_adds_the_configs_by_itself() -> None:
    pythonpath = os.pathsep.join([str(ROOT / "tests"), str(PLUGIN_ROOT)])
    proc = run_cli(["algo=myalgo", "--cfg", "job"], timeout=120, env={"PYTHONPATH": pythonpath})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "_target_: my_rlbench_plugin.algo.MyDQN" in proc.stdout
