"""What sweeps are named and grouped by, on configs composed from ``conf/`` by Hydra itself.

Sweep job dirs carry the job's overrides (``hydra.sweep.subdir`` with
``${hydra.job.override_dirname}``), and ``rlbench-report`` / ``rlbench-viz`` group the runs of
a sweep by the keys it varied, apart from the seed. Composing (no training) keeps this fast.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf, open_dict

from conftest import CONF
from rlbench.analysis.runs import (
    GROUPING_IGNORED_KEYS,
    discover_runs,
    group_runs,
    resolve_grouping,
)

SAFE = re.compile(r"^[A-Za-z0-9_.-]+$")


def compose_job(overrides: list[str], num: int) -> DictConfig:
    """The config of job ``num`` of a sweep, with Hydra's own node (``hydra.job.num`` is set
    by the launcher, so here by hand)."""
    import rlbench.cli  # noqa: F401  (registers schemas and the slug resolver)

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.job.num = num
    return cfg


def subdir(overrides: list[str], num: int = 0) -> str:
    return str(compose_job(overrides, num).hydra.sweep.subdir)


def test_sweep_subdirs_name_the_overrides_and_the_seed() -> None:
    names = {
        (double, seed): subdir(
            ["experiment=dqn_cartpole", f"algo.double={double}", f"seed={seed}"], num=i
        )
        for i, (double, seed) in enumerate((d, s) for d in ("true", "false") for s in range(3))
    }
    assert names["true", 0] == "0_dqn-CartPole-v1_algo.double_true__experiment_dqn_cartpole_seed0"
    assert names["false", 2] == (
        "5_dqn-CartPole-v1_algo.double_false__experiment_dqn_cartpole_seed2"
    )
    assert len(set(names.values())) == 6
    # filesystem-safe values ("/"), bookkeeping overrides left out, the seed kept
    name = subdir(
        ["env=atari", "env.game=pong", "seed=3", "trainer.progress_bar=false", "tags=[a,b]"]
    )
    assert name == "0_dqn-ALE_pong_env.game_pong__env_atari_seed3"
    assert SAFE.match(name)
    # nothing overridden but the seed: algo and env still name the run
    assert subdir(["seed=1"], num=7) == "7_dqn-CartPole-v1__seed1"


def test_override_dirname_excludes_what_reports_do_not_group_by() -> None:
    excluded = set(compose_job([], 0).hydra.job.config.override_dirname.exclude_keys)
    assert GROUPING_IGNORED_KEYS - {"variants"} <= excluded


def write_job(sweep: Path, num: int, overrides: list[str]) -> None:
    """A job dir as Hydra and the CLI write it (config.yaml unresolved, as Hydra saves it)."""
    cfg = compose_job(overrides, num)
    job = sweep / str(cfg.hydra.sweep.subdir)
    (job / ".hydra").mkdir(parents=True)
    with open_dict(cfg):
        del cfg["hydra"]
    OmegaConf.save(cfg, job / ".hydra" / "config.yaml")
    (job / "metrics.csv").write_text("env_step,eval/return_mean\n0,10\n1000,100\n")
    results = {"status": "completed", "env_steps": 1000, "eval_return_mean": 100.0}
    (job / "results.json").write_text(json.dumps(results))


@pytest.mark.parametrize(
    ("common", "swept", "keys", "shown"),
    [
        (  # the sweep: only algo.double (and the seed) differs
            ["experiment=dqn_cartpole"],
            [[f"algo.double={d}"] for d in ("true", "false")],
            ("algo.name", "env.id", "algo.double"),
            ("algo.double",),
        ),
        (  # algo presets: every key ddqn changes follows algo.name
            ["logger=wandb"],  # logger.name embeds the seed
            [["algo=dqn"], ["algo=ddqn"]],
            ("algo.name", "env.id"),
            ("algo.name",),
        ),
        (  # two swept keys
            [],
            [[f"algo.lr={lr}", f"buffer.n_step={n}"] for lr in (1e-3, 1e-4) for n in (1, 3)],
            ("algo.name", "env.id", "algo.lr", "buffer.n_step"),
            ("algo.lr", "buffer.n_step"),
        ),
        (  # the Rainbow ablation: variants set many keys through interpolations
            ["experiment=rainbow_ablation", "env=cartpole", "network=mlp"],
            [[f"variant={v}"] for v in ("rainbow", "no_noisy", "dqn")],
            ("variant", "env.id"),
            ("variant",),
        ),
    ],
)
def test_real_sweeps_group_by_what_they_vary(
    tmp_path: Path,
    common: list[str],
    swept: list[list[str]],
    keys: tuple[str, ...],
    shown: tuple[str, ...],
) -> None:
    num = 0
    for point in swept:
        for seed in (0, 1):
            write_job(tmp_path, num, [*common, *point, f"seed={seed}"])
            num += 1
    runs = discover_runs([tmp_path])
    grouping = resolve_grouping(runs)
    assert (grouping.keys, grouping.shown) == (keys, shown)
    groups = group_runs(runs)
    assert len(groups) == len(swept) and all(len(g) == 2 for g in groups.values())  # 2 seeds
    assert len({grouping.label(key) for key in groups}) == len(swept)
