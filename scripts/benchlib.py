"""Shared plumbing of the rlbench-vs-peer benchmarks (``bench_dqn.py``, ``bench_ppo.py``).

Each contender runs in a fresh subprocess (so start-up and imports count in total wall);
the parent interleaves them and prints min / median and the ratios.
"""

from __future__ import annotations

import argparse
import csv
import functools
import importlib
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def train_instrumented(
    module: str, overrides: list[str], out_dir: str, *, steady_from: int
) -> dict[str, Any]:
    """Train ``overrides`` through rlbench's real config path, timing the loop and its parts.

    Returns steady-state env steps/s after ``steady_from`` (from the per-window throughput
    the run logged itself), the final eval return, and the share of the fit loop spent in
    Lightning itself (not in ``training_step`` -- which pulls the batch -- or our callbacks).
    ``module`` is the algorithm's dotted class path, imported after the start-up.
    """
    from rlbench.cli import CONF_DIR, import_training_stack, train

    import_training_stack()  # first: the start-up (and exit) of the ``rlbench`` command
    import lightning as L
    from hydra import compose, initialize_config_dir

    from rlbench.callbacks import CheckpointCallback, EvalCallback, MetricsFlush

    spent = {"ours": 0.0, "fit": 0.0}

    def timed(fn: Any, key: str) -> Any:
        @functools.wraps(fn)  # keeps the signature: Lightning inspects it for dataloader_iter
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[key] += time.perf_counter() - t0

        return wrapper

    module_path, _, class_name = module.rpartition(".")
    module_cls = getattr(importlib.import_module(module_path), class_name)
    module_cls.training_step = timed(module_cls.training_step, "ours")
    for cb in (EvalCallback, MetricsFlush, CheckpointCallback):
        cb.on_train_batch_end = timed(cb.on_train_batch_end, "ours")  # type: ignore[method-assign]
    L.Trainer.fit = timed(L.Trainer.fit, "fit")  # type: ignore[method-assign]

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    run_dir = Path(out_dir)
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    results = train(cfg, run_dir=run_dir)
    dt = dsteps = 0.0
    prev = 0
    with (run_dir / "metrics.csv").open() as f:
        for row in csv.DictReader(f):
            rate = row.get("perf/env_steps_per_s")
            if not rate:
                continue
            step = int(row["env_step"])
            if prev >= steady_from:
                dsteps += step - prev
                dt += (step - prev) / float(rate)
            prev = step
    return {
        "steady_sps": dsteps / dt,
        "eval": results["eval_return_mean"],
        "loop_s": spent["fit"],
        "lightning_share": (spent["fit"] - spent["ours"]) / spent["fit"],
    }


def run_child(script: str, args: list[str]) -> dict[str, Any]:
    """Run ``script args`` in a fresh interpreter; its last stdout line is a JSON result."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, script, *args], capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    result["wall_s"] = wall
    return result


def summarize(
    runs: dict[str, list[dict[str, Any]]],
    *,
    title: str,
    wall_target: float,
    steady_target: float,
    show_eval: bool = False,
) -> None:
    """Print min / median per contender, the rlbench/sb3 ratios and Lightning's share."""

    def stat(kind: str, key: str) -> tuple[float, float]:
        values = [r[key] for r in runs[kind]]
        return min(values), statistics.median(values)

    print(f"\n{title} (min / median)")
    keys = [("wall_s", "total wall s"), ("steady_sps", "steady env steps/s")]
    if show_eval:
        keys.append(("eval", "final eval return"))
    for key, label in keys:
        a, b = stat("rlbench", key), stat("sb3", key)
        print(f"  {label:20s} rlbench {a[0]:9.2f} / {a[1]:9.2f}   sb3 {b[0]:9.2f} / {b[1]:9.2f}")
    pairs = list(zip(runs["rlbench"], runs["sb3"], strict=True))
    walls = [r["wall_s"] / s["wall_s"] for r, s in pairs]
    sps = [r["steady_sps"] / s["steady_sps"] for r, s in pairs]
    print(
        f"  wall ratio rlbench/sb3     min {min(walls):.3f}  median {statistics.median(walls):.3f}"
        f"   (target <= {wall_target})"
    )
    print(
        f"  steady ratio rlbench/sb3   min {min(sps):.3f}  median {statistics.median(sps):.3f}"
        f"   (target >= {steady_target})"
    )
    share = [r["lightning_share"] for r in runs["rlbench"]]
    print(
        f"  Lightning share of rlbench's loop  min {min(share):.1%}  median "
        f"{statistics.median(share):.1%}   (target <= 20%)"
    )


def write_peer_run(
    run_dir: Path,
    rows: list[dict[str, float]],
    *,
    env_steps: int,
    started: float,
) -> None:
    """A peer's run as rlbench writes its own (beside the ``.hydra/config.yaml`` the caller
    wrote): ``metrics.csv`` from ``rows`` (``env_step`` and ``eval/*`` columns, the last row
    the final evaluation) and a completed ``results.json``, so ``rlbench-report`` reads it
    like any run. ``started``: the run's ``time.time()`` at its start."""
    with (run_dir / "metrics.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    last = rows[-1]
    results = {
        "status": "completed",
        "env_steps": env_steps,
        "eval_return_mean": last["eval/return_mean"],
        "eval_return_std": last["eval/return_std"],
        "eval_episodes": int(last["eval/episodes"]),
        "eval_deterministic": True,
        "wall_time_s": time.time() - started,
    }
    (run_dir / "results.json").write_text(json.dumps(results, indent=2))


def parse_ints(text: str) -> tuple[int, ...]:
    """``"0,1,2"`` or ``"0-4"`` (inclusive) as a tuple of ints (an argparse ``type``: a bad
    value is a one-line error naming it)."""
    out: list[int] = []
    for part in text.split(","):
        lo, sep, hi = part.strip().partition("-")
        try:
            out.extend(range(int(lo), int(hi) + 1) if sep else [int(lo)])
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"bad seeds {text!r}: allowed e.g. 0,1,2 or 0-4"
            ) from None
    return tuple(out)


def completed(run_dir: Path) -> bool:
    """Whether ``run_dir``'s ``results.json`` says the run completed."""
    try:
        return json.loads((run_dir / "results.json").read_text())["status"] == "completed"
    except (OSError, ValueError, KeyError):
        return False
