"""rlbench PPO vs Stable-Baselines3 PPO on CartPole-v1, in one invocation.

CleanRL ``ppo.py`` defaults on both sides: 4 envs x 128 steps, 4 epochs of 4 minibatches
(128 samples), lr 2.5e-4 annealed linearly to 0, gamma 0.99, GAE lambda 0.95, clip 0.2,
advantage normalization, entropy 0.01, value 0.5, max grad norm 0.5, separate 64x64 tanh
actor and critic with orthogonal init, Adam eps 1e-5, one torch thread, 100k env steps;
a final 10-episode deterministic evaluation on both sides. (rlbench also clips the value
loss, as CleanRL does; SB3 leaves it unclipped by default, which costs it nothing.)

Each contender runs in a fresh subprocess (so start-up and imports count in total wall),
interleaved rlbench, sb3, rlbench, sb3, ... with seeds 0, 1, 2, ...; min and median are
printed.

    python scripts/bench_ppo.py [--repeats 3] [--steps 100000]

Printed: total wall, steady-state env steps/s (after the first ``STEADY_FROM`` env steps;
start-up excluded), the ratios, final eval returns, and the share of rlbench's training
loop spent inside Lightning itself.
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
STEADY_FROM = 10_240  # 20 rollouts of 512 env steps


def child_rlbench(steps: int, seed: int, out_dir: str) -> dict[str, Any]:
    """Train through rlbench's real config path; time the loop and its parts."""
    import csv

    from hydra import compose, initialize_config_dir

    from rlbench.algos.ppo import PPO
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

    PPO.training_step = timed(PPO.training_step, "step")  # type: ignore[method-assign]
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
        "experiment=ppo_cartpole",  # CleanRL ppo.py defaults (see conf/experiment)
        f"total_env_steps={steps}",
        "trainer.eval_every=0",
        "trainer.eval_episodes=10",
        "trainer.checkpoint_every=0",
        "trainer.log_every=1000",
        "trainer.progress_bar=false",
        "logger=csv",
        f"seed={seed}",
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
            if prev >= STEADY_FROM:
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


def child_sb3(steps: int, seed: int) -> dict[str, Any]:
    import gymnasium as gym
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy

    torch.set_num_threads(1)

    class Clock(BaseCallback):
        t_start: float | None = None
        steps_at_start = 0

        def _on_step(self) -> bool:
            if self.t_start is None and self.num_timesteps >= STEADY_FROM:
                self.t_start = time.perf_counter()
                self.steps_at_start = self.num_timesteps
            return True

    model = PPO(
        "MlpPolicy",
        make_vec_env("CartPole-v1", n_envs=4, seed=seed),
        learning_rate=lambda remaining: 2.5e-4 * remaining,
        n_steps=128,
        batch_size=128,
        n_epochs=4,
        gamma=0.99,
        gae_lambda=0.95,
        clip_range=0.2,
        normalize_advantage=True,
        ent_coef=0.01,
        vf_coef=0.5,
        max_grad_norm=0.5,
        policy_kwargs={
            "net_arch": {"pi": [64, 64], "vf": [64, 64]},
            "activation_fn": torch.nn.Tanh,
        },
        seed=seed,
        device="cpu",
    )
    clock = Clock()
    model.learn(steps, callback=clock)
    t_end = time.perf_counter()
    assert clock.t_start is not None
    mean, _ = evaluate_policy(model, gym.make("CartPole-v1"), n_eval_episodes=10, warn=False)
    sps = (model.num_timesteps - clock.steps_at_start) / (t_end - clock.t_start)
    return {"steady_sps": sps, "eval": mean}


def run_child(kind: str, steps: int, seed: int, out_dir: Path) -> dict[str, Any]:
    t0 = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            kind,
            "--steps",
            str(steps),
            "--seed",
            str(seed),
            "--out",
            str(out_dir),
        ],
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
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", choices=["rlbench", "sb3"])
    parser.add_argument("--out", default=str(ROOT / "outputs" / "bench_ppo"))
    args = parser.parse_args()
    if args.steps <= STEADY_FROM:
        raise SystemExit(f"--steps must exceed {STEADY_FROM} (the start-up window)")
    if args.child == "rlbench":
        print(json.dumps(child_rlbench(args.steps, args.seed, args.out)))
        return
    if args.child == "sb3":
        print(json.dumps(child_sb3(args.steps, args.seed)))
        return

    runs: dict[str, list[dict[str, Any]]] = {"rlbench": [], "sb3": []}
    for i in range(args.repeats):
        for kind in ("rlbench", "sb3"):
            r = run_child(kind, args.steps, args.seed + i, Path(args.out) / f"{kind}_{i}")
            runs[kind].append(r)
            print(
                f"[seed {args.seed + i}] {kind:8s} wall {r['wall_s']:6.2f} s  steady "
                f"{r['steady_sps']:8.0f} env steps/s  eval {r['eval']:.1f}",
                flush=True,
            )

    def stat(kind: str, key: str) -> tuple[float, float]:
        values = [r[key] for r in runs[kind]]
        return min(values), statistics.median(values)

    print(
        f"\nPPO CartPole-v1, {args.steps} env steps, {args.repeats} interleaved seeds "
        "(min / median)"
    )
    for key, label in (
        ("wall_s", "total wall s"),
        ("steady_sps", "steady env steps/s"),
        ("eval", "final eval return"),
    ):
        a, b = stat("rlbench", key), stat("sb3", key)
        print(f"  {label:20s} rlbench {a[0]:9.2f} / {a[1]:9.2f}   sb3 {b[0]:9.2f} / {b[1]:9.2f}")
    pairs = list(zip(runs["rlbench"], runs["sb3"], strict=True))
    walls = [r["wall_s"] / s["wall_s"] for r, s in pairs]
    sps = [r["steady_sps"] / s["steady_sps"] for r, s in pairs]
    print(
        f"  wall ratio rlbench/sb3     min {min(walls):.3f}  median {statistics.median(walls):.3f}"
        "   (target <= 0.55)"
    )
    print(
        f"  steady ratio rlbench/sb3   min {min(sps):.3f}  median {statistics.median(sps):.3f}"
        "   (target >= 2.5)"
    )
    share = [r["lightning_share"] for r in runs["rlbench"]]
    print(
        f"  Lightning share of rlbench's loop  min {min(share):.1%}  median "
        f"{statistics.median(share):.1%}"
    )


if __name__ == "__main__":
    main()
