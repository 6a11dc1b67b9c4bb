"""rlbench DQN vs Stable-Baselines3 DQN on CartPole-v1, in one invocation.

CleanRL ``dqn.py`` defaults on both sides: 1 env, 50k env steps, lr 2.5e-4, buffer 10k,
batch 128, learning_starts 10k, one gradient step every 10 env steps, hard target update
every 500 env steps, epsilon 1 -> 0.05 over half the run, MLP 120-84, Huber loss, max grad
norm 10, one torch thread; a final 10-episode greedy evaluation on both sides.

Each contender runs in a fresh subprocess (so start-up and imports count in total wall),
interleaved rlbench, sb3, rlbench, sb3, ... ``--repeats`` times; min and median are printed.

    python scripts/bench_dqn.py [--repeats 3] [--steps 50000]

Printed: total wall, steady-state env steps/s (after learning_starts; start-up excluded),
the ratios, and the share of rlbench's training loop spent inside Lightning itself.
"""

from __future__ import annotations

import argparse
import functools
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
LEARNING_STARTS = 10_000


def child_rlbench(steps: int, out_dir: str) -> dict[str, Any]:
    """Train through rlbench's real config path; time the loop and its parts."""
    import csv

    from hydra import compose, initialize_config_dir

    from rlbench.algos.dqn import DQN
    from rlbench.callbacks import CheckpointCallback, EvalCallback, MetricsFlush
    from rlbench.cli import CONF_DIR, train

    spent = {"step": 0.0, "callbacks": 0.0}

    def timed(fn: Any, key: str) -> Any:
        @functools.wraps(fn)  # keeps the signature: Lightning inspects it for dataloader_iter
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[key] += time.perf_counter() - t0

        return wrapper

    DQN.training_step = timed(DQN.training_step, "step")  # type: ignore[method-assign]
    for cb in (EvalCallback, MetricsFlush, CheckpointCallback):
        cb.on_train_batch_end = timed(cb.on_train_batch_end, "callbacks")  # type: ignore[method-assign]
    fit: dict[str, float] = {}
    import lightning as L

    orig_fit = L.Trainer.fit

    def fit_timed(self: Any, *args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return orig_fit(self, *args, **kwargs)
        finally:
            fit["s"] = time.perf_counter() - t0

    L.Trainer.fit = fit_timed  # type: ignore[method-assign]

    overrides = [
        "algo=dqn",
        "env=cartpole",
        "network.hidden=[120,84]",
        f"total_env_steps={steps}",
        "algo.lr=2.5e-4",
        "buffer.capacity=10000",
        "algo.batch_size=128",
        f"algo.learning_starts={LEARNING_STARTS}",
        "algo.train_every=10",
        "algo.gradient_steps=1",
        "algo.target_update_every=500",
        "algo.loss=huber",
        "sampler.start=1.0",
        "sampler.end=0.05",
        f"sampler.decay_steps={steps // 2}",
        "trainer.eval_every=0",
        "trainer.eval_episodes=10",
        "trainer.checkpoint_every=0",
        "trainer.log_every=1000",
        "trainer.progress_bar=false",
        "logger=csv",
        "seed=1",
    ]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    run_dir = Path(out_dir)
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    results = train(cfg, run_dir=run_dir)
    # steady state from the per-window throughput the run logged itself
    dt = dsteps = 0.0
    prev = 0
    with (run_dir / "metrics.csv").open() as f:
        for row in csv.DictReader(f):
            rate = row.get("perf/env_steps_per_s")
            if not rate:
                continue
            step = int(row["env_step"])
            if prev >= LEARNING_STARTS:
                dsteps += step - prev
                dt += (step - prev) / float(rate)
            prev = step
    loop = fit["s"]
    ours = spent["step"] + spent["callbacks"]
    return {
        "steady_sps": dsteps / dt,
        "eval": results["eval_return_mean"],
        "loop_s": loop,
        "lightning_share": (loop - ours) / loop,
    }


def child_sb3(steps: int) -> dict[str, Any]:
    import gymnasium as gym
    import torch
    from stable_baselines3 import DQN
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.evaluation import evaluate_policy

    torch.set_num_threads(1)

    class Clock(BaseCallback):
        t_start: float | None = None

        def _on_step(self) -> bool:
            if self.t_start is None and self.num_timesteps >= LEARNING_STARTS:
                self.t_start = time.perf_counter()
            return True

    model = DQN(
        "MlpPolicy",
        gym.make("CartPole-v1"),
        learning_rate=2.5e-4,
        buffer_size=10_000,
        batch_size=128,
        learning_starts=LEARNING_STARTS,
        train_freq=10,
        gradient_steps=1,
        target_update_interval=500,
        exploration_fraction=0.5,
        exploration_initial_eps=1.0,
        exploration_final_eps=0.05,
        gamma=0.99,
        tau=1.0,
        max_grad_norm=10,
        policy_kwargs={"net_arch": [120, 84]},
        seed=1,
        device="cpu",
    )
    clock = Clock()
    model.learn(steps, callback=clock)
    t_end = time.perf_counter()
    assert clock.t_start is not None
    mean, _ = evaluate_policy(model, gym.make("CartPole-v1"), n_eval_episodes=10, warn=False)
    return {"steady_sps": (steps - LEARNING_STARTS) / (t_end - clock.t_start), "eval": mean}


def run_child(kind: str, steps: int, out_dir: Path) -> dict[str, Any]:
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, __file__, "--child", kind, "--steps", str(steps), "--out", str(out_dir)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{kind} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["wall_s"] = wall
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=50_000)
    parser.add_argument("--child", choices=["rlbench", "sb3"])
    parser.add_argument("--out", default=str(ROOT / "outputs" / "bench_dqn"))
    args = parser.parse_args()
    if args.child == "rlbench":
        print(json.dumps(child_rlbench(args.steps, args.out)))
        return
    if args.child == "sb3":
        print(json.dumps(child_sb3(args.steps)))
        return

    runs: dict[str, list[dict[str, Any]]] = {"rlbench": [], "sb3": []}
    for i in range(args.repeats):
        for kind in ("rlbench", "sb3"):
            r = run_child(kind, args.steps, Path(args.out) / f"{kind}_{i}")
            runs[kind].append(r)
            print(
                f"[{i}] {kind:8s} wall {r['wall_s']:6.2f} s  steady {r['steady_sps']:8.0f} "
                f"env steps/s  eval {r['eval']:.1f}",
                flush=True,
            )

    def stat(kind: str, key: str) -> tuple[float, float]:
        values = [r[key] for r in runs[kind]]
        return min(values), statistics.median(values)

    print(
        f"\nDQN CartPole-v1, {args.steps} env steps, {args.repeats} interleaved repeats "
        "(min / median)"
    )
    for key, label in (("wall_s", "total wall s"), ("steady_sps", "steady env steps/s")):
        a, b = stat("rlbench", key), stat("sb3", key)
        print(f"  {label:20s} rlbench {a[0]:9.2f} / {a[1]:9.2f}   sb3 {b[0]:9.2f} / {b[1]:9.2f}")
    walls = [r["wall_s"] / s["wall_s"] for r, s in zip(runs["rlbench"], runs["sb3"], strict=True)]
    sps = [
        r["steady_sps"] / s["steady_sps"] for r, s in zip(runs["rlbench"], runs["sb3"], strict=True)
    ]
    print(
        f"  wall ratio rlbench/sb3     min {min(walls):.3f}  median {statistics.median(walls):.3f}"
        "   (target <= 0.65)"
    )
    print(
        f"  steady ratio rlbench/sb3   min {min(sps):.3f}  median {statistics.median(sps):.3f}"
        "   (target >= 2.5)"
    )
    share = [r["lightning_share"] for r in runs["rlbench"]]
    print(
        f"  Lightning share of rlbench's loop  min {min(share):.1%}  median "
        f"{statistics.median(share):.1%}   (target <= 20%)"
    )


if __name__ == "__main__":
    main()
