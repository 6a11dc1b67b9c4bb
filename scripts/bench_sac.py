"""rlbench SAC vs Stable-Baselines3 SAC vs a bare PyTorch loop on HalfCheetah-v5.

Hyperparameters are CleanRL ``sac_continuous_action.py``'s where the three can share them:
1 env, batch 256, buffer 1e6, learning_starts 5000 (uniformly random actions before),
tau 0.005 every gradient step, gamma 0.99, one gradient step per env step, 256-256 ReLU
actor and twin critics, log-std bounded in [-5, 2] (SB3 clamps to [-20, 2]), automatic
entropy tuning towards -dim(A) from alpha 0.2, Adam, one torch thread. Two settings differ
from CleanRL's (and from rlbench's ``experiment=sac_mujoco``) so that the speed comparison
is like for like, and the script prints them:

- learning rates: SB3 SAC has ONE ``learning_rate`` for actor, critics and temperature,
  so all three contenders use 3e-4 for all three (CleanRL: 3e-4 actor, 1e-3 critics and
  temperature);
- policy delay: SB3 has none, so rlbench runs ``algo.policy_frequency=1`` (one actor and
  one temperature step per critic step; CleanRL: 2, with two actor steps every second).

The three still differ in small ways that cost little: SB3 reuses one policy sample for
the actor and temperature losses and computes the critics' weight gradients in the actor's
backward; rlbench and the bare loop freeze the critics there and draw a fresh sample for
the temperature (CleanRL's order). rlbench acts through numpy views of the actor's
weights, the bare loop and SB3 through a torch forward.

The bare loop is the same maths in plain PyTorch -- a Gymnasium env, a numpy replay
buffer, ``torch.optim.Adam(fused=True)`` (the kernel under rlbench's Adam), no Lightning
and no rlbench code -- so rlbench/bare is the cost of the engine's layers.

Each contender runs in a fresh subprocess (start-up and imports count in total wall),
interleaved rlbench, sb3, bare, rlbench, ... with seeds 0, 1, 2, ...; each run ends with
one deterministic evaluation episode (a sanity check, not a learning result). The figure
that matters is STEADY-STATE env steps/s: from ``learning_starts + window`` env steps to
the end (learning under way, start-up and the random-action phase excluded; rlbench from
the throughput it logs every ``window`` env steps, SB3 from a callback's clock, the bare
loop from its own clock). Ratios are paired per repeat (rlbench run i against sb3/bare
run i), min and median printed. Targets: rlbench >= 1.3x SB3, and within 10% of the bare
loop (rlbench/bare >= 0.9).

    python scripts/bench_sac.py [--repeats 3] [--steps 20000] [--learning-starts 5000]
    python scripts/bench_sac.py --quick    # a smoke test: 200 steps, 1 repeat (SB3 if present)

The full benchmark needs Stable-Baselines3 (``pip install -e '.[bench]'``) and MuJoCo.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import time
from pathlib import Path
from typing import Any

from benchlib import ROOT, run_child, train_instrumented

ENV_ID = "HalfCheetah-v5"
LR = 3e-4
BATCH = 256
BUFFER = 1_000_000
TAU = 0.005
GAMMA = 0.99
HIDDEN = (256, 256)
ALPHA0 = 0.2
LOG_STD = (-5.0, 2.0)
KINDS = ("rlbench", "sb3", "bare")
STEADY_TARGET_SB3 = 1.3
STEADY_TARGET_BARE = 0.9


def rlbench_overrides(steps: int, learning_starts: int, seed: int) -> list[str]:
    """rlbench's overrides for SB3's SAC maths (shared with ``bench_sac_learning.py``)."""
    return [
        "experiment=sac_mujoco",  # CleanRL sac_continuous_action.py defaults (conf/experiment)
        "env=halfcheetah",
        f"total_env_steps={steps}",
        f"network.hidden=[{HIDDEN[0]},{HIDDEN[1]}]",
        "network.activation=relu",
        f"algo.batch_size={BATCH}",
        f"buffer.capacity={BUFFER}",
        f"algo.learning_starts={learning_starts}",
        f"algo.tau={TAU}",
        "algo.target_update_every=1",
        f"algo.gamma={GAMMA}",
        "algo.train_every=1",
        "algo.gradient_steps=1",
        "algo.policy_frequency=1",  # like for like: SB3 has no policy delay
        f"algo.alpha={ALPHA0}",
        "algo.autotune=true",
        f"algo.log_std_min={LOG_STD[0]}",
        f"algo.log_std_max={LOG_STD[1]}",
        f"algo.actor_optimizer.lr={LR}",  # like for like: SB3 has one learning rate
        f"algo.critic_optimizer.lr={LR}",
        f"algo.alpha_optimizer.lr={LR}",
        "trainer.torch_threads=1",
        f"seed={seed}",
    ]


def sb3_model(env: Any, *, learning_starts: int, seed: int) -> Any:
    """Stable-Baselines3 SAC with the settings above (shared with ``bench_sac_learning.py``)."""
    import torch
    from stable_baselines3 import SAC

    torch.set_num_threads(1)
    return SAC(
        "MlpPolicy",
        env,
        learning_rate=LR,
        buffer_size=BUFFER,
        learning_starts=learning_starts,
        batch_size=BATCH,
        tau=TAU,
        gamma=GAMMA,
        train_freq=1,
        gradient_steps=1,
        ent_coef=f"auto_{ALPHA0}",
        target_update_interval=1,
        target_entropy="auto",
        policy_kwargs={"net_arch": list(HIDDEN), "activation_fn": torch.nn.ReLU},
        seed=seed,
        device="cpu",
    )


def child_rlbench(
    steps: int, learning_starts: int, window: int, seed: int, out_dir: str
) -> dict[str, Any]:
    overrides = [
        *rlbench_overrides(steps, learning_starts, seed),
        "trainer.eval_every=0",
        "trainer.eval_episodes=1",
        "trainer.checkpoint_every=0",
        f"trainer.log_every={window}",
        "trainer.progress_bar=false",
        "logger=csv",
    ]
    return train_instrumented(
        "rlbench.algos.sac.SAC", overrides, out_dir, steady_from=learning_starts + window
    )


def child_sb3(steps: int, learning_starts: int, window: int, seed: int) -> dict[str, Any]:
    import gymnasium as gym
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.evaluation import evaluate_policy

    steady_from = learning_starts + window

    class Clock(BaseCallback):
        t_start: float | None = None
        steps_at_start = 0

        def _on_step(self) -> bool:
            if self.t_start is None and self.num_timesteps >= steady_from:
                self.t_start = time.perf_counter()
                self.steps_at_start = self.num_timesteps
            return True

    model = sb3_model(gym.make(ENV_ID), learning_starts=learning_starts, seed=seed)
    clock = Clock()
    model.learn(steps, callback=clock)
    t_end = time.perf_counter()
    assert clock.t_start is not None
    sps = (model.num_timesteps - clock.steps_at_start) / (t_end - clock.t_start)
    mean, _ = evaluate_policy(model, gym.make(ENV_ID), n_eval_episodes=1, warn=False)
    return {"steady_sps": sps, "eval": mean}


def child_bare(steps: int, learning_starts: int, window: int, seed: int) -> dict[str, Any]:
    """The same SAC in plain PyTorch: one file's worth, no framework."""
    import math

    import gymnasium as gym
    import numpy as np
    import torch
    import torch.nn.functional as F
    from torch import nn

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    env = gym.make(ENV_ID)
    space = env.action_space
    assert isinstance(space, gym.spaces.Box) and env.observation_space.shape is not None
    obs_dim = int(np.prod(env.observation_space.shape))
    act_dim = int(space.shape[0])
    scale = torch.as_tensor((space.high - space.low) / 2.0, dtype=torch.float32)
    bias = torch.as_tensor((space.high + space.low) / 2.0, dtype=torch.float32)
    lo, hi = LOG_STD

    def mlp(n_in: int, n_out: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Linear(n_in, HIDDEN[0]),
            nn.ReLU(),
            nn.Linear(HIDDEN[0], HIDDEN[1]),
            nn.ReLU(),
            nn.Linear(HIDDEN[1], n_out),
        )

    actor = mlp(obs_dim, 2 * act_dim)
    critics = nn.ModuleList([mlp(obs_dim + act_dim, 1) for _ in range(2)])
    targets = nn.ModuleList([mlp(obs_dim + act_dim, 1) for _ in range(2)])
    targets.load_state_dict(critics.state_dict())
    targets.requires_grad_(False)
    log_alpha = torch.tensor(math.log(ALPHA0), requires_grad=True)
    actor_opt = torch.optim.Adam(actor.parameters(), lr=LR, fused=True)
    critic_opt = torch.optim.Adam(critics.parameters(), lr=LR, fused=True)
    alpha_opt = torch.optim.Adam([log_alpha], lr=LR, fused=True)
    target_entropy = -float(act_dim)
    online_params: list[torch.Tensor] = list(critics.parameters())
    target_params: list[torch.Tensor] = list(targets.parameters())

    def policy(o: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, raw = actor(o).chunk(2, dim=-1)
        return mean, lo + 0.5 * (hi - lo) * (torch.tanh(raw) + 1.0)

    def sample(o: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = policy(o)
        u = mean + log_std.exp() * torch.randn_like(mean)
        normal = -0.5 * ((u - mean) / log_std.exp()).pow(2) - log_std - 0.5 * math.log(2 * math.pi)
        log_det = 2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))  # log(1 - tanh(u)^2)
        log_prob = (normal - log_det).sum(-1) - scale.log().sum()
        return torch.tanh(u) * scale + bias, log_prob

    def q_values(nets: nn.ModuleList, o: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        x = torch.cat([o, a], dim=-1)
        return torch.stack([q(x).squeeze(-1) for q in nets])

    capacity = min(BUFFER, steps)
    buf_obs = np.zeros((capacity, obs_dim), np.float32)
    buf_next = np.zeros((capacity, obs_dim), np.float32)
    buf_act = np.zeros((capacity, act_dim), np.float32)
    buf_rew = np.zeros(capacity, np.float32)
    buf_disc = np.zeros(capacity, np.float32)

    def update(size: int) -> None:
        idx = rng.integers(0, size, BATCH)
        o, a = torch.from_numpy(buf_obs[idx]), torch.from_numpy(buf_act[idx])
        r, d = torch.from_numpy(buf_rew[idx]), torch.from_numpy(buf_disc[idx])
        o2 = torch.from_numpy(buf_next[idx])
        alpha = log_alpha.detach().exp()
        with torch.no_grad():
            a2, logp2 = sample(o2)
            target = r + d * (q_values(targets, o2, a2).amin(0) - alpha * logp2)
        critic_loss = (q_values(critics, o, a) - target).pow(2).mean(dim=1).sum()
        critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        critic_opt.step()

        critics.requires_grad_(False)
        pi, logp = sample(o)
        actor_loss = (alpha * logp - q_values(critics, o, pi).amin(0)).mean()
        critics.requires_grad_(True)
        actor_opt.zero_grad(set_to_none=True)
        actor_loss.backward()
        actor_opt.step()

        with torch.no_grad():
            _, logp = sample(o)
        alpha_loss = -(log_alpha.exp() * (logp + target_entropy)).mean()
        alpha_opt.zero_grad(set_to_none=True)
        alpha_loss.backward()
        alpha_opt.step()

        with torch.no_grad():
            torch._foreach_lerp_(target_params, online_params, TAU)

    steady_from = learning_starts + window
    space.seed(seed)
    obs, _ = env.reset(seed=seed)
    t_start = 0.0
    for step in range(steps):
        if step == steady_from:
            t_start = time.perf_counter()
        if step < learning_starts:
            action = space.sample()
        else:
            with torch.inference_mode():
                action = sample(torch.as_tensor(obs, dtype=torch.float32)[None])[0][0].numpy()
        next_obs, reward, terminated, truncated, _ = env.step(action)
        i = step % capacity
        buf_obs[i], buf_act[i], buf_next[i] = obs, action, next_obs
        buf_rew[i], buf_disc[i] = reward, 0.0 if terminated else GAMMA
        obs = env.reset()[0] if terminated or truncated else next_obs
        if step >= learning_starts:
            update(min(step + 1, capacity))
    sps = (steps - steady_from) / (time.perf_counter() - t_start)

    ret, done, obs = 0.0, False, env.reset(seed=seed + 10_000)[0]
    while not done:
        with torch.inference_mode():
            mean, _ = policy(torch.as_tensor(obs, dtype=torch.float32)[None])
        action = (torch.tanh(mean) * scale + bias)[0].numpy()
        obs, reward, terminated, truncated, _ = env.step(action)
        ret += float(reward)
        done = terminated or truncated
    return {"steady_sps": sps, "eval": ret}


def ratios(runs: dict[str, list[dict[str, Any]]], num: str, den: str) -> list[float]:
    pairs = zip(runs[num], runs[den], strict=True)
    return [a["steady_sps"] / b["steady_sps"] for a, b in pairs]


def summarize_sac(runs: dict[str, list[dict[str, Any]]], *, title: str) -> None:
    """min / median per contender, then the paired steady ratios against their targets."""
    kinds = [k for k in KINDS if runs.get(k)]
    print(f"\n{title} (min / median)")
    for key, label in (
        ("wall_s", "total wall s"),
        ("steady_sps", "steady env steps/s"),
        ("eval", "eval return (1 ep)"),
    ):
        cells = []
        for kind in kinds:
            values = [r[key] for r in runs[kind]]
            cells.append(f"{kind} {min(values):9.2f} / {statistics.median(values):9.2f}")
        print(f"  {label:20s} " + "   ".join(cells))
    for den, target in (("sb3", STEADY_TARGET_SB3), ("bare", STEADY_TARGET_BARE)):
        if not runs.get(den):
            print(f"  steady ratio rlbench/{den:4s}  skipped ({den} not run)")
            continue
        r = ratios(runs, "rlbench", den)
        verdict = "met" if statistics.median(r) >= target else "NOT met"
        print(
            f"  steady ratio rlbench/{den:4s}  min {min(r):.3f}  median {statistics.median(r):.3f}"
            f"   (target >= {target}: {verdict})"
        )
    share = [r["lightning_share"] for r in runs["rlbench"]]
    print(
        f"  Lightning share of rlbench's loop  min {min(share):.1%}  median "
        f"{statistics.median(share):.1%}"
    )


def have_sb3() -> bool:
    return importlib.util.find_spec("stable_baselines3") is not None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--learning-starts", type=int, default=5_000)
    parser.add_argument("--window", type=int, default=1_000, help="rlbench's log window")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: 200 steps, learning_starts 50, window 50, 1 repeat; SB3 if installed",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", choices=KINDS)
    parser.add_argument("--out", default=str(ROOT / "outputs" / "bench_sac"))
    args = parser.parse_args()
    if args.quick:
        args.steps, args.learning_starts, args.window, args.repeats = 200, 50, 50, 1
    steady_from = args.learning_starts + args.window
    if args.steps < steady_from + 2 * args.window:
        least = steady_from + 2 * args.window
        raise SystemExit(
            f"--steps must be at least learning_starts + 3 windows ({least}) so the "
            "steady-state window holds two of rlbench's log windows"
        )
    timing = (args.steps, args.learning_starts, args.window, args.seed)
    if args.child == "rlbench":
        print(json.dumps(child_rlbench(*timing, args.out)))
        return
    if args.child == "sb3":
        print(json.dumps(child_sb3(*timing)))
        return
    if args.child == "bare":
        print(json.dumps(child_bare(*timing)))
        return

    kinds = list(KINDS)
    if not have_sb3():
        if not args.quick:
            raise SystemExit(
                "bench_sac.py needs Stable-Baselines3 for the full benchmark: "
                "pip install -e '.[bench]' (or run --quick, which skips it)"
            )
        kinds.remove("sb3")
        print("stable-baselines3 not installed: --quick skips it")
    print(
        f"SAC {ENV_ID}: like-for-like speed settings -- every learning rate {LR} (SB3 has one "
        "for actor, critics and temperature; CleanRL: critics and temperature 1e-3), "
        "rlbench algo.policy_frequency=1 (SB3 has no policy delay; CleanRL: 2), "
        f"learning_starts {args.learning_starts}, steady state from env step {steady_from}",
        flush=True,
    )
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
    for i in range(args.repeats):
        seed = args.seed + i
        for kind in kinds:
            out = str(Path(args.out) / f"{kind}_{i}")
            child_args = ["--child", kind, "--steps", str(args.steps), "--seed", str(seed)]
            child_args += ["--learning-starts", str(args.learning_starts)]
            child_args += ["--window", str(args.window), "--out", out]
            r = run_child(__file__, child_args)
            runs[kind].append(r)
            print(
                f"[seed {seed}] {kind:8s} wall {r['wall_s']:7.2f} s  steady "
                f"{r['steady_sps']:7.1f} env steps/s  eval {r['eval']:.1f}",
                flush=True,
            )
    summarize_sac(
        runs,
        title=(
            f"SAC {ENV_ID}, {args.steps} env steps (learning_starts {args.learning_starts}), "
            f"{args.repeats} interleaved repeats"
        ),
    )


if __name__ == "__main__":
    main()
