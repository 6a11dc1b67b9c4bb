"""Stable-Baselines3 with the zoo's values of a DQN or PPO preset, on the seeds rlbench ran: the
peer beside ``scripts/bench_presets.py``'s rows.

rl-baselines3-zoo publishes one trained seed per env. Where an rlbench preset misses the
zoo's number, the question is whether the zoo's own library reaches it on other seeds with
the same values. This script trains SB3's ``DQN`` or ``PPO`` with the hyperparameters each
preset translates from the zoo (its yaml header names the zoo file and commit; ``normalize:
true`` is SB3's ``VecNormalize``, as the zoo wraps it), evaluates the greedy policy every
``--eval-every`` env steps and at the end on ``--eval-episodes`` episodes seeded as rlbench
seeds its evaluation episodes (episode ``j`` of seed ``s``: ``reset(seed=s + 1_000_000 +
j)``; with ``VecNormalize``, observations standardized by the training moments, frozen, and
raw rewards, as rlbench evaluates), and writes each run as an rlbench run dir
(``.hydra/config.yaml`` with ``algo.name=dqn_sb3`` or ``ppo_sb3``, ``metrics.csv``,
``results.json``) under ``<out>/<preset>/seed<k>``. ``rlbench-report`` then aggregates these
runs with the preset's rlbench runs (``--rlbench-out``, ``scripts/bench_presets.py``'s
folder) and the script prints the report's IQM table: the two libraries side by side, same
estimator, same seeds. Where a preset tuned a zoo key (``TUNED``), SB3 keeps the zoo's
value: the peer is the zoo as published. Resumable: a run whose ``results.json`` says
``completed`` is skipped.

    python scripts/bench_zoo_sb3.py --presets dqn_mountaincar,ppo_mountaincar [--seeds 0-4]
    python scripts/bench_zoo_sb3.py --quick    # 2,000 steps of dqn_acrobot and ppo_acrobot

Needs Stable-Baselines3 (``pip install -e '.[bench]'``); one torch thread per run.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from benchlib import ROOT, completed, parse_ints, write_peer_run
from rlbench.envs.factory import EVAL_SEED_OFFSET  # evaluation episode j of seed s: s + it + j


@dataclass(frozen=True)
class Zoo:
    """One zoo entry: what SB3 trains for a preset.

    ``algo``: ``"dqn"`` or ``"ppo"`` (SB3's class); ``kwargs``: its keyword arguments, the
    zoo's keys; ``n_envs``: the zoo's ``n_envs``; ``normalize``: the zoo's ``normalize``
    (``VecNormalize`` with ``gamma`` the algorithm's, SB3's other defaults)."""

    env_id: str
    steps: int
    algo: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    n_envs: int = 1
    normalize: bool = False


def _zoo_dqn(**kwargs: Any) -> dict[str, Any]:
    """SB3 ``DQN`` keyword arguments: the zoo's keys, ``net_arch`` into ``policy_kwargs``."""
    net_arch = kwargs.pop("net_arch")
    return {**kwargs, "policy_kwargs": {"net_arch": net_arch}}


def _zoo_ppo(env_id: str, *, n_steps: int, gae_lambda: float) -> Zoo:
    """The zoo's PPO entry for a classic-control env: 16 envs, ``normalize: true``, 1M steps,
    gamma 0.99, 4 epochs, no entropy bonus; only ``n_steps`` and ``gae_lambda`` differ."""
    kwargs = {"n_steps": n_steps, "gae_lambda": gae_lambda, "gamma": 0.99, "n_epochs": 4}
    return Zoo(env_id, 1_000_000, "ppo", {**kwargs, "ent_coef": 0.0}, n_envs=16, normalize=True)


#: The zoo's DQN values for Acrobot-v1 and LunarLander-v2 (the same for both).
ACROBOT_LUNARLANDER = _zoo_dqn(
    learning_rate=6.3e-4,
    batch_size=128,
    buffer_size=50_000,
    learning_starts=0,
    gamma=0.99,
    target_update_interval=250,
    train_freq=4,
    gradient_steps=-1,
    exploration_fraction=0.12,
    exploration_final_eps=0.1,
    net_arch=[256, 256],
)
#: preset -> its zoo entry: the zoo's values at
#: DLR-RM/rl-baselines3-zoo@22e3ff2450fd92033f7f032915e1f64894a09584, hyperparams/dqn.yml and
#: hyperparams/ppo.yml, as each preset's header translates them (LunarLander: the zoo's v2
#: entry run on v3). PPO keeps SB3's defaults for what the zoo leaves out (lr 3e-4, batch
#: 64, clip 0.2, 64-64 tanh actor and critic).
ZOO: dict[str, Zoo] = {
    "dqn_acrobot": Zoo("Acrobot-v1", 100_000, "dqn", ACROBOT_LUNARLANDER),
    "dqn_mountaincar": Zoo(
        "MountainCar-v0",
        120_000,
        "dqn",
        _zoo_dqn(
            learning_rate=4e-3,
            batch_size=128,
            buffer_size=10_000,
            learning_starts=1000,
            gamma=0.98,
            target_update_interval=600,
            train_freq=16,
            gradient_steps=8,
            exploration_fraction=0.2,
            exploration_final_eps=0.07,
            net_arch=[256, 256],
        ),
    ),
    "dqn_lunarlander": Zoo("LunarLander-v3", 100_000, "dqn", ACROBOT_LUNARLANDER),
    "ppo_acrobot": _zoo_ppo("Acrobot-v1", n_steps=256, gae_lambda=0.94),
    "ppo_mountaincar": _zoo_ppo("MountainCar-v0", n_steps=16, gae_lambda=0.98),
}
#: Zoo keys a preset tuned away from the zoo's value, keeping the gradient steps per env step
#: (its header says what was measured): SB3 keeps the zoo's values there.
TUNED: dict[str, tuple[str, ...]] = {"dqn_lunarlander": ("train_freq", "gradient_steps")}


def preset_env(preset: str) -> dict[str, Any]:
    """The env config (``conf/env/<name>.yaml``) ``preset`` overrides ``/env`` with."""
    text = (ROOT / "conf" / "experiment" / f"{preset}.yaml").read_text()
    match = re.search(r"override /env: (\w+)", text)
    if match is None:
        raise SystemExit(f"{preset}: no 'override /env' in its yaml")
    env: dict[str, Any] = yaml.safe_load((ROOT / "conf" / "env" / f"{match[1]}.yaml").read_text())
    return env


def evaluate(
    model: Any, env_id: str, *, seed: int, episodes: int, normalize: Any = None
) -> list[float]:
    """Greedy returns of ``episodes`` episodes, episode ``j`` reset with
    ``seed + EVAL_SEED_OFFSET + j`` (rlbench's evaluation seeds). ``normalize``: the training
    ``VecNormalize``, whose moments standardize the observations without being updated."""
    import gymnasium as gym

    env = gym.make(env_id)
    returns = []
    for j in range(episodes):
        obs, _ = env.reset(seed=seed + EVAL_SEED_OFFSET + j)
        total, done = 0.0, False
        while not done:
            seen = obs if normalize is None else normalize.normalize_obs(obs)
            action, _ = model.predict(seen, deterministic=True)
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            done = bool(terminated or truncated)
        returns.append(total)
    env.close()
    return returns


def child(preset: str, seed: int, run_dir: Path, *, steps: int, every: int, episodes: int) -> None:
    """Train SB3 with ``preset``'s zoo values; write an rlbench-format run dir."""
    import numpy as np
    import torch
    from stable_baselines3 import DQN, PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    torch.set_num_threads(1)
    start = time.time()
    zoo = ZOO[preset]
    (run_dir / ".hydra").mkdir(parents=True, exist_ok=True)
    config = {
        "algo": {"name": f"{zoo.algo}_sb3", "implementation": "stable-baselines3", **zoo.kwargs},
        "env": {
            "id": zoo.env_id,
            "num_envs": zoo.n_envs,
            "normalize": zoo.normalize,
            "score_range": preset_env(preset).get("score_range"),
        },
        "seed": seed,
        "total_env_steps": steps,
        "trainer": {"eval_every": every, "eval_episodes": episodes, "eval_deterministic": True},
    }
    (run_dir / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    rows: list[dict[str, float]] = []
    venv = make_vec_env(zoo.env_id, n_envs=zoo.n_envs, seed=seed)
    if zoo.normalize:
        venv = VecNormalize(venv, gamma=zoo.kwargs["gamma"])
    normalize = venv if zoo.normalize else None

    def record(model: Any) -> None:
        returns = np.asarray(
            evaluate(model, zoo.env_id, seed=seed, episodes=episodes, normalize=normalize)
        )
        rows.append(
            {
                "env_step": model.num_timesteps,
                "eval/return_mean": float(returns.mean()),
                "eval/return_std": float(returns.std()),
                "eval/episodes": len(returns),
            }
        )

    class Evaluate(BaseCallback):
        """Evaluate once per ``every`` env steps crossed (with several envs, ``num_timesteps``
        moves ``n_envs`` at a time), the final evaluation after training."""

        def _on_step(self) -> bool:
            due = self.num_timesteps // every > (self.num_timesteps - zoo.n_envs) // every
            if due and self.num_timesteps < steps:
                record(self.model)
            return True

    algo_class = {"dqn": DQN, "ppo": PPO}[zoo.algo]
    model = algo_class("MlpPolicy", venv, seed=seed, verbose=0, **zoo.kwargs)
    model.learn(steps, callback=Evaluate())
    record(model)
    write_peer_run(run_dir, rows, env_steps=model.num_timesteps, started=start)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # default: the presets whose zoo number rlbench misses (the question this script answers)
    default = "dqn_mountaincar,ppo_mountaincar"
    parser.add_argument("--presets", default=default, help=f"of {', '.join(ZOO)}")
    parser.add_argument("--seeds", type=parse_ints, default="0-4", help="e.g. 0,1,2 or 0-4")
    parser.add_argument("--eval-every", type=int, default=10_000)
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--steps", type=int, default=None, help="default: the zoo's budget")
    parser.add_argument("--jobs", type=int, default=2, help="runs at once")
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "bench_zoo_sb3")
    parser.add_argument("--rlbench-out", type=Path, default=ROOT / "outputs" / "bench_presets")
    parser.add_argument("--quick", action="store_true", help="2,000 steps, dqn and ppo acrobot")
    parser.add_argument("--child", nargs=2, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    presets = args.presets.split(",")
    unknown = [p for p in presets if p not in ZOO]
    if unknown:
        parser.error(f"unknown presets {', '.join(unknown)}; allowed: {', '.join(ZOO)}")
    if args.quick:
        presets, args.seeds, args.steps = ["dqn_acrobot", "ppo_acrobot"], (0,), 2_000
        args.eval_every, args.eval_episodes = 1_000, 2
        args.out = Path(tempfile.mkdtemp(prefix="bench_zoo_sb3_"))
    out = args.out.resolve()

    def steps_of(preset: str) -> int:
        return args.steps if args.steps is not None else ZOO[preset].steps

    if args.child is not None:
        preset, seed = args.child[0], int(args.child[1])
        run_dir = out / preset / f"seed{seed}"
        child(preset, seed, run_dir, steps=steps_of(preset), every=args.eval_every,
              episodes=args.eval_episodes)  # fmt: skip
        return

    seeds = args.seeds

    def run_one(job: tuple[str, int]) -> str:
        preset, seed = job
        run_dir = out / preset / f"seed{seed}"
        if completed(run_dir):
            return f"{preset} seed {seed}: done before, skipped"
        command = [sys.executable, __file__, "--child", preset, str(seed), "--out", str(out)]
        command += [f"--eval-every={args.eval_every}", f"--eval-episodes={args.eval_episodes}"]
        command += [f"--steps={steps_of(preset)}"]
        t0 = time.perf_counter()
        proc = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
        if proc.returncode != 0:
            return f"{preset} seed {seed}: FAILED\n{proc.stderr[-3000:]}"
        final = json.loads((run_dir / "results.json").read_text())["eval_return_mean"]
        wall = time.perf_counter() - t0
        return f"{preset} seed {seed}: final eval {final:8.1f}  wall {wall:.0f} s"

    jobs = [(p, s) for p in presets for s in seeds]
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for line in pool.map(run_one, jobs):
            print(line, flush=True)
    # the report: these SB3 runs beside the preset's rlbench runs on the same seeds
    run_dirs = [str(out / p / f"seed{s}") for p, s in jobs if completed(out / p / f"seed{s}")]
    rlbench_runs = [args.rlbench_out / p / f"seed{s}" for p, s in jobs]
    run_dirs += [str(d) for d in rlbench_runs if completed(d)]
    report = out / "report"
    from rlbench.analysis.report import main as report_main

    title = f"rlbench vs Stable-Baselines3 with the zoo's values: {', '.join(presets)}"
    code = report_main(
        [*run_dirs, "--out", str(report), "--group-by", "algo.name,env.id", "--title", title]
    )
    if code != 0:
        raise SystemExit("rlbench-report failed (see above)")
    print((report / "summary.csv").read_text())


if __name__ == "__main__":
    main()
