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
import json
import time
from pathlib import Path
from typing import Any

from benchlib import ROOT, run_child, summarize, train_instrumented

STEADY_FROM = 10_240  # 20 rollouts of 512 env steps


def child_rlbench(steps: int, seed: int, out_dir: str) -> dict[str, Any]:
    overrides = [
        "experiment=ppo_cartpole_cleanrl",  # CleanRL ppo.py defaults (see conf/experiment)
        f"total_env_steps={steps}",
        "trainer.eval_every=0",
        "trainer.eval_episodes=10",
        "trainer.checkpoint_every=0",
        "trainer.log_every=1000",
        "trainer.progress_bar=false",
        "logger=csv",
        f"seed={seed}",
    ]
    return train_instrumented("rlbench.algos.ppo.PPO", overrides, out_dir, steady_from=STEADY_FROM)


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
            out = str(Path(args.out) / f"{kind}_{i}")
            r = run_child(
                __file__,
                [
                    "--child",
                    kind,
                    "--steps",
                    str(args.steps),
                    "--seed",
                    str(args.seed + i),
                    "--out",
                    out,
                ],
            )
            runs[kind].append(r)
            print(
                f"[seed {args.seed + i}] {kind:8s} wall {r['wall_s']:6.2f} s  steady "
                f"{r['steady_sps']:8.0f} env steps/s  eval {r['eval']:.1f}",
                flush=True,
            )

    summarize(
        runs,
        title=f"PPO CartPole-v1, {args.steps} env steps, {args.repeats} interleaved seeds",
        wall_target=0.55,
        steady_target=2.5,
        show_eval=True,
    )


if __name__ == "__main__":
    main()
