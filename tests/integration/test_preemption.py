"""Preemption: SIGTERM (what SLURM and ``kill`` send) stops a run like Ctrl-C, with a
checkpoint, ``results.json`` status ``interrupted`` and exit status 143; a submitit job
stopped by its preemption signal requeues itself and finishes the run where it stopped."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import DEBUG, ROOT, train_in_process

# a checkpoint every 250 env steps: the signal is sent once the first one is on disk (the
# run is then past start-up, in its training loop) and lands long before the end
RUN = [*DEBUG, "trainer.checkpoint_every=250"]


def read_metrics(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "metrics.csv").open(newline="") as f:
        return [
            {k: v for k, v in r.items() if not k.startswith("perf/")} for r in csv.DictReader(f)
        ]


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]


def start_cli(args: list[str]) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests")}
    return subprocess.Popen(
        [sys.executable, "-m", "rlbench.cli", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(
    folder: Path, pattern: str, proc: subprocess.Popen[str], *, timeout: float = 120
) -> Path:
    """The first file ``folder.glob(pattern)`` finds, once one exists."""
    deadline = time.time() + timeout
    while not (found := sorted(folder.glob(pattern))):
        if proc.poll() is not None:
            _, err = proc.communicate()
            pytest.fail(f"exited ({proc.returncode}) before {folder / pattern}:\n{err[-3000:]}")
        if time.time() > deadline:
            proc.kill()
            pytest.fail(f"no {folder / pattern} within {timeout} s")
        time.sleep(0.02)
    return found[0]


def test_sigterm_saves_a_checkpoint_and_exits_143(tmp_path: Path) -> None:
    proc = start_cli([*RUN, f"hydra.run.dir={tmp_path}", "total_env_steps=200000"])
    wait_for(tmp_path, "checkpoints/last.ckpt", proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-3000:]
    assert "Traceback" not in err
    assert "interrupted (SIGTERM) at env step" in err and "rlbench resume=" in err
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["status"] == "interrupted" and results["signal"] == "SIGTERM"
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["ReplayDataModule"]["env_steps"] == results["env_steps"] < 200000


def task_pids(marker: str) -> list[int]:
    """Pids of the submitit task processes (``python -m submitit.core._submit FOLDER``)
    whose command line contains ``marker``."""
    pids = []
    for proc_dir in Path("/proc").iterdir():
        if not proc_dir.name.isdigit():
            continue
        try:
            cmdline = (proc_dir / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if "submitit.core._submit" in cmdline and marker in cmdline:
            pids.append(int(proc_dir.name))
    return pids


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the job's process in /proc")
def test_preempted_submitit_job_requeues_and_finishes_like_a_straight_run(
    tmp_path: Path,
) -> None:
    """``hydra/launcher=submitit_local``: the job gets submitit's preemption signal (USR2)
    mid-run, checkpoints, is requeued (submitit's local executor restarts it, as SLURM would
    after ``scontrol requeue``) and the restarted job continues the run in its run dir: same
    metrics and weights as a run never interrupted."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    total = 4000
    sweep = tmp_path / "sweep"
    proc = start_cli(
        [
            "-m",
            *RUN,
            f"total_env_steps={total}",
            "hydra/launcher=submitit_local",
            "hydra.launcher.timeout_min=5",
            f"hydra.sweep.dir={sweep}",
        ]
    )
    job_dir = wait_for(sweep, "0_*/checkpoints/last.ckpt", proc).parents[1]
    pids = task_pids(str(sweep))
    assert len(pids) == 1, pids
    os.kill(pids[0], signal.SIGUSR2)
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err[-3000:]

    (err_log,) = sweep.glob(".submitit/*/*_0_log.err")
    (out_log,) = sweep.glob(".submitit/*/*_0_log.out")
    assert "interrupted (SIGUSR2) at env step" in err_log.read_text()
    assert "Requeued job" in out_log.read_text()
    assert "requeued submitit job" in (job_dir / "cli.log").read_text()
    results = json.loads((job_dir / "results.json").read_text())
    assert results["status"] == "completed" and results["env_steps"] == total

    straight = tmp_path / "straight"
    straight.mkdir()
    train_in_process(straight, [*RUN, f"total_env_steps={total}"])
    assert read_metrics(job_dir) == read_metrics(straight)
    a, b = weights(job_dir), weights(straight)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
