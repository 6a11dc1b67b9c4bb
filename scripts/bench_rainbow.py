"""Rainbow vs plain DQN throughput: env steps/s and gradient steps/s, CartPole and MinAtar.

Each (env, algorithm) pair trains in a fresh subprocess through rlbench's real config path
for ``--steps`` env steps with the tuned presets' schedules (no periodic evaluation or
checkpoints); steady-state rates are read from the run's own ``perf/*`` columns after
``learning_starts``, so start-up is excluded. Pairs are interleaved ``--repeats`` times and
the medians printed.

- CartPole-v1: ``experiment=rainbow_cartpole`` against ``experiment=dqn_cartpole`` (same
  64x64 MLP, batch 64, one gradient step per 4 env steps).
- MinAtar Breakout (when ``conf/env/minatar_breakout.yaml`` exists and ``minatar`` imports):
  ``experiment=rainbow_minatar`` against DQN with the same network and schedule (MinAtar
  CNN, batch 32, one gradient step per 4 env steps, uniform 1-step replay, epsilon-greedy).

    python scripts/bench_rainbow.py [--steps 20000] [--repeats 1] [--quick]
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
LEARNING_STARTS = 1000
COMMON = [
    f"algo.learning_starts={LEARNING_STARTS}",
    "trainer.eval_every=0",
    "trainer.eval_episodes=1",
    "trainer.checkpoint_every=0",
    "trainer.log_every=1000",
    "trainer.progress_bar=false",
    "logger=csv",
    "seed=0",
]
MINATAR_DQN = [  # rainbow_minatar's network and schedule, every Rainbow component off
    "env=minatar_breakout",
    "network=minatar_cnn",
    "algo=dqn",
    "algo.lr=1e-4",
    "algo.optimizer.eps=3.125e-4",
    "algo.batch_size=32",
    "algo.train_every=4",
    "algo.target_update_every=1000",
    "buffer.capacity=100000",
    "sampler.end=0.01",
    "sampler.decay_steps=62500",
]
CASES: dict[str, dict[str, list[str]]] = {
    "cartpole": {
        "rainbow": ["experiment=rainbow_cartpole"],
        "dqn": ["experiment=dqn_cartpole"],
    },
    "minatar_breakout": {
        "rainbow": ["experiment=rainbow_minatar"],
        "dqn": MINATAR_DQN,
    },
}


def available(env: str) -> str | None:
    """Why ``env`` cannot run here, or ``None``."""
    if not (ROOT / "conf" / "env" / f"{env}.yaml").is_file():
        return f"conf/env/{env}.yaml is missing"
    if env.startswith("minatar") and importlib.util.find_spec("minatar") is None:
        return "the minatar package is not installed"
    return None


def child(overrides: list[str], out_dir: str) -> dict[str, Any]:
    """Train in this process; steady-state rates from the run's own perf columns."""
    from hydra import compose, initialize_config_dir

    from rlbench.cli import CONF_DIR, train

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    run_dir = Path(out_dir)
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    t0 = time.perf_counter()
    results = train(cfg, run_dir=run_dir)
    wall = time.perf_counter() - t0
    dt = env_steps = grad_steps = 0.0
    prev = 0
    with (run_dir / "metrics.csv").open() as f:
        for row in csv.DictReader(f):
            rate, grad_rate = row.get("perf/env_steps_per_s"), row.get("perf/grad_steps_per_s")
            if not rate or not grad_rate:
                continue
            step = int(row["env_step"])
            if prev >= LEARNING_STARTS and float(rate) > 0:
                window = (step - prev) / float(rate)
                dt += window
                env_steps += step - prev
                grad_steps += float(grad_rate) * window
            prev = step
    return {
        "env_sps": env_steps / dt,
        "grad_sps": grad_steps / dt,
        "wall_s": wall,
        "eval": results["eval_return_mean"],
    }


def run_child(overrides: list[str], out_dir: Path) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(overrides), "--out", str(out_dir)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    if proc.returncode != 0:
        raise SystemExit(f"{overrides} failed:\n{proc.stderr[-3000:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="5000 env steps, one repeat")
    parser.add_argument("--child")
    parser.add_argument("--out", default=str(ROOT / "outputs" / "bench_rainbow"))
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child), args.out)))
        return
    steps, repeats = (5000, 1) if args.quick else (args.steps, args.repeats)

    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for env, algos in CASES.items():
        reason = available(env)
        if reason:
            print(f"skipping {env}: {reason}")
            continue
        for i in range(repeats):
            for algo, overrides in algos.items():
                r = run_child(
                    [*overrides, *COMMON, f"total_env_steps={steps}"],
                    Path(args.out) / f"{env}_{algo}_{i}",
                )
                results.setdefault((env, algo), []).append(r)
                print(
                    f"[{i}] {env:16s} {algo:8s} {r['env_sps']:8.0f} env steps/s "
                    f"{r['grad_sps']:7.0f} grad steps/s  wall {r['wall_s']:6.1f} s",
                    flush=True,
                )

    print(f"\n{steps} env steps per run, {repeats} repeat(s), medians (steady state)")
    print(f"  {'env':16s} {'algo':8s} {'env steps/s':>12s} {'grad steps/s':>13s}")
    for (env, algo), runs in results.items():
        env_sps = statistics.median(r["env_sps"] for r in runs)
        grad_sps = statistics.median(r["grad_sps"] for r in runs)
        print(f"  {env:16s} {algo:8s} {env_sps:12.0f} {grad_sps:13.0f}")


if __name__ == "__main__":
    main()
