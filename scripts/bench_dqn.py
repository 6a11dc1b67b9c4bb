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
import json
import time
from pathlib import Path
from typing import Any

from benchlib import ROOT, run_child, summarize, train_instrumented

LEARNING_STARTS = 10_000


def child_rlbench(steps: int, out_dir: str) -> dict[str, Any]:
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
    return train_instrumented(
        "rlbench.algos.dqn.DQN", overrides, out_dir, steady_from=LEARNING_STARTS
    )


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
            out = str(Path(args.out) / f"{kind}_{i}")
            r = run_child(__file__, ["--child", kind, "--steps", str(args.steps), "--out", out])
            runs[kind].append(r)
            print(
                f"[{i}] {kind:8s} wall {r['wall_s']:6.2f} s  steady {r['steady_sps']:8.0f} "
                f"env steps/s  eval {r['eval']:.1f}",
                flush=True,
            )

    summarize(
        runs,
        title=f"DQN CartPole-v1, {args.steps} env steps, {args.repeats} interleaved repeats",
        wall_target=0.65,
        steady_target=2.5,
    )


if __name__ == "__main__":
    main()
