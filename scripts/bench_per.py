"""Prioritized replay cost per batch: sample + priority update on a full 1M-slot buffer.

The buffer is filled through its public ``add`` (8 envs of CartPole-sized observations, with
episode ends and autoreset rows), every slot gets a random priority, then each iteration
samples a batch of 3-step transitions (sum-tree search, n-step gather, importance weights)
and writes new priorities for it, as the learner does after each gradient step:

    python scripts/bench_per.py [--capacity 1000000] [--batch-size 32] [--iters 2000]

Prints the median and mean cost per batch (target: < 0.5 ms) and its parts.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np

from rlbench.buffers.prioritized import PrioritizedReplayBuffer


def fill(buf: PrioritizedReplayBuffer, rng: np.random.Generator, obs_dim: int) -> float:
    """Fill the ring once with a NEXT_STEP stream; returns seconds per ``add`` call."""
    n = buf.num_envs
    buf.start(rng.random((n, obs_dim), dtype=np.float32))
    prev_done = np.zeros(n, dtype=np.bool_)
    t0 = time.perf_counter()
    for _ in range(buf.rows):
        terminated = rng.random(n) < 0.01
        buf.add(
            action=rng.integers(0, 2, size=n),
            reward=np.ones(n, dtype=np.float32),
            terminated=terminated & ~prev_done,
            truncated=np.zeros(n, dtype=np.bool_),
            next_obs=rng.random((n, obs_dim), dtype=np.float32),
            ignored=prev_done,
        )
        prev_done = terminated & ~prev_done
    return (time.perf_counter() - t0) / buf.rows


def timed(fn: Callable[[], object], iters: int) -> tuple[list[float], float]:
    """Wall seconds per call and the mean CPU seconds per call of this process.

    On a shared machine the wall times carry the scheduler's preemptions (spikes of a few
    ms); the CPU time does not, so it is the fairer mean.
    """
    out = []
    cpu0 = time.process_time()
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out, (time.process_time() - cpu0) / iters


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--capacity", type=int, default=1_000_000)
    parser.add_argument("--num-envs", type=int, default=8)
    parser.add_argument("--obs-dim", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--n-step", type=int, default=3)
    parser.add_argument("--iters", type=int, default=2000)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    buf = PrioritizedReplayBuffer(
        capacity=args.capacity,
        num_envs=args.num_envs,
        obs_shape=(args.obs_dim,),
        obs_dtype=np.float32,
        n_step=args.n_step,
        beta_steps=args.capacity,
        seed=0,
    )
    t0 = time.perf_counter()
    add_s = fill(buf, rng, args.obs_dim)
    print(
        f"filled {len(buf):,} steps ({buf.num_sampleable():,} sampleable) in "
        f"{time.perf_counter() - t0:.1f} s: {add_s * 1e6:.1f} us per add of {args.num_envs} envs"
    )
    live = np.flatnonzero(buf.tree.leaves)
    buf.update(live, rng.exponential(1.0, size=live.size))

    b, n, gamma = args.batch_size, args.n_step, 0.99
    new_priorities = rng.exponential(1.0, size=(args.iters, b))
    state = {"i": 0}

    def step() -> None:
        batch = buf.sample(b, n_step=n, gamma=gamma)
        buf.update(batch["indices"], new_priorities[state["i"] % args.iters])
        state["i"] += 1

    timed(step, 100)  # warm-up
    total, cpu = timed(step, args.iters)
    targets = (np.arange(b) + rng.random(b)) * (buf.tree.total / b)
    slots = buf.tree.find(targets)
    rows, envs = np.divmod(slots, buf.num_envs)
    parts = {
        "sum-tree search": timed(lambda: buf.tree.find(targets), args.iters),
        "n-step gather": timed(lambda: buf.gather(rows, envs, n_step=n, gamma=gamma), args.iters),
        "priority update": timed(lambda: buf.update(slots, new_priorities[0]), args.iters),
    }
    median, cpu_us = statistics.median(total) * 1e6, cpu * 1e6
    print(
        f"\nPER sample + update, capacity {args.capacity:,}, batch {b}, n_step {n}, "
        f"{args.iters} iterations"
    )
    print(
        f"  per batch: wall median {median:7.1f} us, wall mean "
        f"{statistics.mean(total) * 1e6:7.1f} us, CPU mean {cpu_us:7.1f} us"
        f"   (target < 500 us: {'met' if max(median, cpu_us) < 500 else 'MISSED'})"
    )
    for name, (values, part_cpu) in parts.items():
        print(
            f"    {name:16s} wall median {statistics.median(values) * 1e6:7.1f} us, "
            f"CPU mean {part_cpu * 1e6:7.1f} us"
        )


if __name__ == "__main__":
    main()
