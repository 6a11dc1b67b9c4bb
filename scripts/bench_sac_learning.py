"""SAC learning on HalfCheetah-v5: rlbench beside Stable-Baselines3, same maths, same seeds.

Both contenders train with the like-for-like settings of ``bench_sac.py`` (every learning
rate 3e-4, no policy delay, batch 256, buffer 1e6, 5,000 uniformly random steps, tau 0.005,
gamma 0.99, 256-256 ReLU, automatic entropy tuning from alpha 0.2, one torch thread), and
both evaluate the deterministic policy over ``--eval-episodes`` episodes every
``--eval-every`` env steps and at the end. Each run is a fresh subprocess; ``--jobs`` of them
run at once (pair them: the default 2 runs the rlbench and SB3 runs of one seed together, so
both see the same load).

Every run leaves an rlbench run dir (``.hydra/config.yaml``, ``metrics.csv``,
``results.json``): rlbench's are written by the ``rlbench`` command itself, SB3's by this
script in the same format (``algo.name=sac_sb3``). ``rlbench-report`` then aggregates them
(IQM of the final evaluations with 95% stratified-bootstrap CIs, curves, probability of
improvement) into ``<out>/report/index.html``; the script prints the report's table.
Resumable: a rerun skips runs whose ``results.json`` says ``completed``.

    python scripts/bench_sac_learning.py [--steps 100000] [--seeds 0,1,2] [--jobs 2]
    python scripts/bench_sac_learning.py --quick   # 6,000 steps, 1 seed: checks the pipeline

Needs Stable-Baselines3 (``pip install -e '.[bench]'``) and MuJoCo.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

from bench_sac import ENV_ID, rlbench_overrides, sb3_model
from benchlib import ROOT, completed, write_peer_run

LEARNING_STARTS = 5_000
KINDS = ("rlbench", "sb3")


def rlbench_command(args: argparse.Namespace, seed: int, run_dir: Path) -> list[str]:
    rlbench = Path(sys.executable).with_name("rlbench")
    return [
        str(rlbench),
        *rlbench_overrides(args.steps, args.learning_starts, seed),
        f"trainer.eval_every={args.eval_every}",
        f"trainer.eval_episodes={args.eval_episodes}",
        "trainer.eval_deterministic=true",
        "trainer.checkpoint_every=0",
        "trainer.progress_bar=false",
        "logger=csv",
        f"hydra.run.dir={run_dir}",
    ]


def child_sb3(args: argparse.Namespace, seed: int, run_dir: Path) -> None:
    """Train SB3 SAC and write an rlbench-format run dir (config, metrics, results)."""
    import gymnasium as gym
    import numpy as np
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.evaluation import evaluate_policy

    start = time.time()
    (run_dir / ".hydra").mkdir(parents=True, exist_ok=True)
    config = {
        "algo": {"name": "sac_sb3", "implementation": "stable-baselines3"},
        "env": {"id": ENV_ID},
        "seed": seed,
        "total_env_steps": args.steps,
        "trainer": {
            "eval_every": args.eval_every,
            "eval_episodes": args.eval_episodes,
            "eval_deterministic": True,
        },
    }
    (run_dir / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    eval_env = gym.make(ENV_ID)
    eval_env.reset(seed=seed + 1_000_000)  # the eval env's own stream, apart from training
    rows: list[dict[str, float]] = []

    def evaluate(model: Any) -> None:
        episode_returns, _ = evaluate_policy(
            model,
            eval_env,
            n_eval_episodes=args.eval_episodes,
            deterministic=True,
            return_episode_rewards=True,
            warn=False,
        )
        returns = np.asarray(episode_returns, dtype=np.float64)  # one return per episode
        rows.append(
            {
                "env_step": model.num_timesteps,
                "eval/return_mean": float(np.mean(returns)),
                "eval/return_std": float(np.std(returns)),
                "eval/episodes": len(returns),
            }
        )

    class Evaluate(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps % args.eval_every == 0 and self.num_timesteps < args.steps:
                evaluate(self.model)
            return True

    model = sb3_model(gym.make(ENV_ID), learning_starts=args.learning_starts, seed=seed)
    model.learn(args.steps, callback=Evaluate())
    evaluate(model)
    write_peer_run(run_dir, rows, env_steps=model.num_timesteps, started=start)


def run_one(args: argparse.Namespace, kind: str, seed: int) -> str:
    run_dir = args.out / kind / f"seed{seed}"
    if completed(run_dir):
        return f"{kind} seed {seed}: done before, skipped"
    t0 = time.perf_counter()
    if kind == "rlbench":
        command = rlbench_command(args, seed, run_dir)
    else:
        command = [sys.executable, __file__, "--child-sb3", str(seed), *args.passthrough]
        command += ["--out", str(args.out)]
    proc = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"{kind} seed {seed} failed:\n{proc.stderr[-3000:]}")
    final = json.loads((run_dir / "results.json").read_text())["eval_return_mean"]
    return f"{kind:8s} seed {seed}: final eval {final:9.1f}  wall {time.perf_counter() - t0:7.1f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated")
    parser.add_argument("--learning-starts", type=int, default=LEARNING_STARTS)
    parser.add_argument("--eval-every", type=int, default=10_000)
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=2, help="runs at once")
    parser.add_argument("--quick", action="store_true", help="6,000 steps, seed 0, 2 episodes")
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "bench_sac_learning")
    parser.add_argument("--child-sb3", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.steps, args.seeds, args.eval_every, args.eval_episodes = 6_000, "0", 3_000, 2
        args.learning_starts = 1_000
    args.passthrough = [
        f"--steps={args.steps}",
        f"--learning-starts={args.learning_starts}",
        f"--eval-every={args.eval_every}",
        f"--eval-episodes={args.eval_episodes}",
    ]
    args.out = args.out.resolve()
    if args.child_sb3 is not None:
        child_sb3(args, args.child_sb3, args.out / "sb3" / f"seed{args.child_sb3}")
        return

    seeds = [int(s) for s in args.seeds.split(",")]
    print(
        f"SAC {ENV_ID}, {args.steps} env steps, seeds {seeds}, rlbench and SB3 with the same "
        f"maths (bench_sac.py's settings), eval every {args.eval_every} env steps "
        f"({args.eval_episodes} deterministic episodes); runs in {args.out}",
        flush=True,
    )
    jobs = [(kind, seed) for seed in seeds for kind in KINDS]
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for line in pool.map(lambda job: run_one(args, *job), jobs):
            print(line, flush=True)
    report = Path(sys.executable).with_name("rlbench-report")
    command = [str(report), str(args.out), "--out", str(args.out / "report")]
    command += ["--group-by", "algo.name,env.id", "--title", f"SAC {ENV_ID}: rlbench vs SB3"]
    subprocess.run(command, check=True)
    table = args.out / "report" / "summary.csv"
    if table.exists():
        print(table.read_text())


if __name__ == "__main__":
    main()
