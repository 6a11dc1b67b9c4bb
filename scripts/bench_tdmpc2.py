"""What one step of TD-MPC2 (sizes 1M and 5M) and TD-MPC costs on this machine: planning
(acting) and one update, with a profile naming where the time goes.

Each contender is the library's own module (``TDMPC2`` with ``size=1M`` or ``5M``, the
authors' other defaults; ``TDMPC`` with the 2022 defaults) built for walker-walk's spaces
(24 observations, 6 actions; no simulator is stepped), with:

- **act**: one call of the training actor (``make_actor(num_envs=1, mode="train")``) on
  one observation: a whole MPPI plan (TD-MPC2: 6 iterations x 512 sequences of 3 steps;
  TD-MPC: 6 x 537 of 5 steps, its scheduled horizon and std at their final values);
- **update**: one ``training_step`` on a random batch of the algorithm's sequence shape
  (batch 256, horizon 3 for TD-MPC2; 512 and 5 with importance weights for TD-MPC):
  world-model and policy gradient steps and the target update, through the module's own
  ``gradient_step`` without a Lightning trainer.

One update per agent step is the authors' ratio, so act + update is the cost of one agent
step in steady state (2 env steps under ``env.action_repeat=2``, the DMC presets). Each
repeat times ``--calls`` calls of each after ``--warmup`` untimed ones; the per-call min
and median over repeats are printed, then a ``torch.profiler`` table of the top operators
(self CPU time; on a GPU, self device time) over a few more calls. On a GPU (``--device
cuda``) the module lives there, batches and observations start on the host as in training
(the module moves them), and each repeat ends with ``torch.cuda.synchronize()`` so the
clock sees the kernels finish.

    python scripts/bench_tdmpc2.py [--repeats 5] [--calls 20] [--threads 1] [--device cuda]
    python scripts/bench_tdmpc2.py --quick    # smoke test: 1M and TD-MPC, small batch and
                                              # planner, 1 repeat of 2 calls
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from rlbench.algos.base import RLModule  # noqa: E402
from rlbench.algos.tdmpc import TDMPC  # noqa: E402
from rlbench.algos.tdmpc2 import TDMPC2  # noqa: E402

OBS_DIM, ACTION_DIM = 24, 6  # dm_control walker-walk
CONTENDERS = ("tdmpc2-1M", "tdmpc2-5M", "tdmpc")


class _Step:
    """Stands in for Lightning's optimizer wrapper: ``gradient_step`` reaches the bare
    optimizer through it (no trainer here)."""

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer

    def step(self) -> None:
        self.optimizer.step()


#: --quick: a small batch and planner, so the smoke test takes seconds
QUICK: dict[str, int] = {"batch_size": 16, "iterations": 2, "num_samples": 64, "num_elites": 8}


def build(name: str, *, quick: bool = False, device: str = "cpu") -> RLModule:
    """The contender ``name`` for walker-walk's spaces on ``device``, its optimizers
    attached."""
    # max_grad_norm is rlbench's key on an optimizer partial (split_clip takes it off)
    opt = functools.partial(torch.optim.Adam, lr=3e-4, max_grad_norm=20.0)  # type: ignore[call-arg]
    kw: dict[str, Any] = dict(QUICK) if quick else {}
    module: RLModule
    if name.startswith("tdmpc2"):
        if quick:
            kw["num_pi_trajs"] = 4
        module = TDMPC2(optimizer=opt, pi_optimizer=opt, size=name.split("-")[1], **kw)
    elif name == "tdmpc":
        module = TDMPC(optimizer=opt, pi_optimizer=opt, **kw)
    else:
        raise SystemExit(f"contender {name!r}: allowed {', '.join(CONTENDERS)}")
    module.build_for(
        gym.spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float32),
        gym.spaces.Box(-1.0, 1.0, (ACTION_DIM,), np.float32),
    )
    module.to(device)
    steps = {k: _Step(o) for k, o in module.make_optimizers().items()}
    module.__dict__["optimizer"] = lambda name="main": steps[name]  # shadows the method
    return module


def random_batch(module: RLModule, rng: np.random.Generator) -> dict[str, Any]:
    """A batch of the module's sequence shape ``(B, L+1, obs)``, ``(B, L, A)``, ..."""
    spec = module.data_spec
    b, length = spec.batch_size, spec.length
    batch: dict[str, Any] = {
        "obs": torch.from_numpy(rng.standard_normal((b, length + 1, OBS_DIM), np.float32)),
        "action": torch.from_numpy(rng.uniform(-1, 1, (b, length, ACTION_DIM)).astype(np.float32)),
        "reward": torch.from_numpy(rng.uniform(0, 1, (b, length)).astype(np.float32)),
        "terminated": torch.zeros(b, length, dtype=torch.bool),
        "env_step": 100_000,  # past TD-MPC's schedules
    }
    if isinstance(module, TDMPC):
        batch["weights"] = torch.from_numpy(rng.uniform(0.5, 1, b).astype(np.float32))
    return batch


def timers(module: RLModule, *, seed: int = 0) -> dict[str, Callable[[], None]]:
    """``{"act": ..., "update": ...}``: one planning call, one training step."""
    rng = np.random.default_rng(seed)
    actor = module.make_actor(num_envs=1, mode="train")
    actor.env_step = 100_000
    obs = rng.standard_normal((1, OBS_DIM)).astype(np.float32)
    first = np.zeros(1, dtype=bool)
    batch = random_batch(module, rng)

    def act() -> None:
        actor.act(obs, first=first)

    def update() -> None:
        module.training_step(iter([(batch, 0, 0)]))

    return {"act": act, "update": update}


def synchronize(device: str) -> None:
    """Wait for ``device``'s queued kernels (a no-op on CPU)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def measure(
    fn: Callable[[], None], *, repeats: int, calls: int, warmup: int, device: str = "cpu"
) -> tuple[float, float]:
    """``(min, median)`` over repeats of the mean seconds per call."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    per_call = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        synchronize(device)
        per_call.append((time.perf_counter() - start) / calls)
    return min(per_call), statistics.median(per_call)


def profile(
    fns: dict[str, Callable[[], None]], *, calls: int, rows: int, device: str = "cpu"
) -> str:
    """``torch.profiler`` table over ``calls`` calls of each function: by self CPU time, or
    on a GPU by self device (kernel) time."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    cuda = torch.device(device).type == "cuda"
    activities = [ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if cuda else [])]
    with torch_profile(activities=activities) as prof:
        for fn in fns.values():
            for _ in range(calls):
                fn()
        synchronize(device)
    key = "self_device_time_total" if cuda else "self_cpu_time_total"
    return str(prof.key_averages().table(sort_by=key, row_limit=rows))


def bench(
    names: list[str],
    *,
    repeats: int,
    calls: int,
    warmup: int,
    quick: bool,
    profile_calls: int,
    rows: int,
    device: str = "cpu",
) -> dict[str, dict[str, tuple[float, float]]]:
    """Times (and prints) act and update per contender; returns ``{name: {kind: (min,
    median)}}`` in seconds per call."""
    results: dict[str, dict[str, tuple[float, float]]] = {}
    for name in names:
        module = build(name, quick=quick, device=device)
        fns = timers(module)
        model: torch.nn.Module = module.model  # type: ignore[assignment]
        params = sum(p.numel() for p in model.parameters() if p.requires_grad)
        spec = module.data_spec
        print(
            f"\n== {name}: {params / 1e6:.2f}M parameters, batch {spec.batch_size}, "
            f"horizon {spec.length}"
        )
        results[name] = {}
        for kind, fn in fns.items():
            lo, med = measure(fn, repeats=repeats, calls=calls, warmup=warmup, device=device)
            results[name][kind] = (lo, med)
            print(f"{kind:>7}: min {lo * 1e3:8.2f} ms   median {med * 1e3:8.2f} ms   per call")
        step = [results[name]["act"][i] + results[name]["update"][i] for i in (0, 1)]
        print(
            f"  agent step (act + update): min {step[0] * 1e3:.2f} ms, median "
            f"{step[1] * 1e3:.2f} ms; per env step at action repeat 2: {step[1] * 500:.2f} ms"
        )
        if profile_calls > 0:
            print(f"-- profile of {name} ({profile_calls} act + {profile_calls} update calls)")
            print(profile(fns, calls=profile_calls, rows=rows, device=device))
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--calls", type=int, default=20, help="timed calls per repeat")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--profile-calls", type=int, default=5)
    parser.add_argument("--rows", type=int, default=15, help="operators in the profile table")
    parser.add_argument("--only", nargs="*", choices=CONTENDERS, default=list(CONTENDERS))
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:<index>")
    parser.add_argument("--quick", action="store_true", help="smoke test: tiny and short")
    args = parser.parse_args(argv)
    try:
        device = torch.device(args.device)
    except RuntimeError:
        parser.error(f"--device {args.device!r}: not a torch device; allowed: cpu, cuda, cuda:<i>")
    if device.type not in ("cpu", "cuda"):
        parser.error(f"--device {args.device!r}: allowed: cpu, cuda, cuda:<i>")
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device!r}: no CUDA device on this machine; allowed: cpu")
    where = args.device
    if device.type == "cuda":
        where += f" ({torch.cuda.get_device_name(device)})"
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.quick:
        args.repeats, args.calls, args.warmup, args.profile_calls, args.rows = 1, 2, 1, 1, 5
        args.only = [n for n in args.only if n != "tdmpc2-5M"]  # 5M: its build is the same
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), device {where}; "
        f"repeats {args.repeats} x {args.calls} calls"
    )
    bench(
        args.only,
        repeats=args.repeats,
        calls=args.calls,
        warmup=args.warmup,
        quick=args.quick,
        profile_calls=args.profile_calls,
        rows=args.rows,
        device=args.device,
    )


if __name__ == "__main__":
    main()
