"""What each of rlbench's private-API speed shortcuts is worth, on the DQN and PPO loops.

rlbench keeps a private torch / Lightning internal only where it buys at least 3% of a
benchmark's loop (``KEEP_ABOVE``); the ones left are listed in ``SHORTCUTS``, each pinned by
``tests/unit/test_private_apis.py``. Each one is turned off by a monkeypatch applied in a
fresh child process before training -- the public path it replaced put back -- and the child
runs one rlbench training of ``bench_dqn.py`` (DQN CartPole-v1) or ``bench_ppo.py`` (PPO
CartPole-v1) in-process through ``benchlib.train_instrumented``, which returns the steady env
steps/s the run logged itself -- by default per CPU second of the child (``--clock cpu``: on
a shared machine wall time mostly measures the scheduler), or per wall second
(``--clock wall``).

Per benchmark the children are interleaved -- all shortcuts on, then each shortcut off in
turn -- and that round is repeated ``--repeats`` times (seed = round; each round runs its
variants in the reverse order of the one before, so slow drift of the machine's load hits
every variant alike). The figure printed per shortcut is the PAIRED ratio: steady env
steps/s with everything on over the same round's run with that shortcut off (> 1: the
shortcut helps), min and median over rounds, and the verdict against ``KEEP_ABOVE``.

    python scripts/bench_shortcuts.py [--bench dqn ppo] [--repeats 5] [--steps N]
    python scripts/bench_shortcuts.py --quick   # smoke test: tiny runs, 1 round

Shortcuts measured with this script and then removed for buying under 3% on every loop
(DQN, PPO and SAC on HalfCheetah-v5; their figures are in the README's performance notes):
``rlbench.optim.Adam``'s lean fused step (torch's ``_fused_adam_`` with cached arguments),
the optimizer step past Lightning's closure (``LightningOptimizer._on_before_step``), and
``torch._foreach_lerp_`` Polyak updates.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchlib import ROOT, run_child

KEEP_ABOVE = 1.03  # on/off ratio: a shortcut must buy >= 3% of the loop to stay


# ---------------------------------------------------------------- the shortcuts, switched off
def _clip_off() -> None:
    """Gradient clipping by ``torch.nn.utils.clip_grad_norm_``."""
    import torch

    import rlbench.algos.base

    def clip(params: list[torch.Tensor], max_norm: float) -> torch.Tensor:
        return torch.nn.utils.clip_grad_norm_(params, max_norm)

    rlbench.algos.base.clip_grad_norm_ = clip


@dataclass(frozen=True)
class Shortcut:
    """One private-API shortcut: where it lives and how a child switches it off."""

    where: str
    what: str
    off: Callable[[], None]


SHORTCUTS: dict[str, Shortcut] = {
    "clip": Shortcut(
        "algos/base.py", "clip_grad_norm_ by torch._foreach_norm / _foreach_mul_", _clip_off
    ),
}


# ---------------------------------------------------------------- the benchmarks
def _scripts() -> None:
    """Make the sibling bench scripts importable (the child runs them in-process)."""
    here = str(Path(__file__).resolve().parent)
    if here not in sys.path:
        sys.path.insert(0, here)


def _dqn(steps: int, seed: int, out: str) -> dict[str, Any]:
    _scripts()
    import bench_dqn

    del seed  # bench_dqn trains seed 1 and learns from env step 10k, its own settings
    return bench_dqn.child_rlbench(steps, out)


def _ppo(steps: int, seed: int, out: str) -> dict[str, Any]:
    _scripts()
    import bench_ppo

    return bench_ppo.child_rlbench(steps, seed, out)


@dataclass(frozen=True)
class Bench:
    """One benchmark loop: its rlbench child, default size and the shortcuts it exercises."""

    run: Callable[[int, int, str], dict[str, Any]]  # (steps, seed, out dir)
    steps: int
    quick_steps: int
    shortcuts: tuple[str, ...]


BENCHES: dict[str, Bench] = {
    "dqn": Bench(_dqn, 20_000, 12_000, ("clip",)),
    "ppo": Bench(_ppo, 25_000, 12_288, ("clip",)),
}


def cpu_clock() -> None:
    """Make the throughput rlbench logs (``perf/env_steps_per_s``) per CPU second of this
    process rather than per wall second: on a machine shared with other work, wall time
    mostly measures how the scheduler shared the cores out."""
    import time
    import types

    import rlbench.callbacks.logging

    clock = types.SimpleNamespace(perf_counter=time.process_time)  # the only time it reads
    setattr(rlbench.callbacks.logging, "time", clock)  # noqa: B010 (a module: mypy)


def child(bench: str, off: str, steps: int, seed: int, out: str, *, clock: str) -> dict[str, Any]:
    """One training of ``bench`` with shortcut ``off`` switched off (``"none"``: all on)."""
    if clock == "cpu":
        cpu_clock()
    if off != "none":
        SHORTCUTS[off].off()
    return BENCHES[bench].run(steps, seed, out)


# ---------------------------------------------------------------- the parent
def paired_ratios(runs: dict[str, list[dict[str, Any]]], off: str) -> list[float]:
    """Per round: steady env steps/s with all shortcuts on over the run with ``off`` off."""
    pairs = zip(runs["none"], runs[off], strict=True)
    return [a["steady_sps"] / b["steady_sps"] for a, b in pairs]


def verdict(ratios: list[float]) -> str:
    return "keep" if statistics.median(ratios) >= KEEP_ABOVE else "remove"


def summarize(
    bench: str, runs: dict[str, list[dict[str, Any]]], *, steps: int, clock: str = "cpu"
) -> list[str]:
    """The summary lines of one benchmark (also printed)."""
    on = [r["steady_sps"] for r in runs["none"]]
    lines = [
        f"{bench.upper()}, {steps} env steps, {len(on)} interleaved rounds; all on: steady "
        f"{min(on):.0f} / {statistics.median(on):.0f} env steps/{clock} s (min / median)"
    ]
    for off in runs:
        if off == "none":
            continue
        r = paired_ratios(runs, off)
        lines.append(
            f"  {off:12s} on/off min {min(r):.3f}  median {statistics.median(r):.3f}   "
            f"(keep if median >= {KEEP_ABOVE}: {verdict(r)})"
        )
    print("\n" + "\n".join(lines), flush=True)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bench", nargs="+", choices=list(BENCHES), default=list(BENCHES))
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--only", nargs="+", choices=list(SHORTCUTS), help="these shortcuts")
    parser.add_argument("--quick", action="store_true", help="smoke test: tiny runs, 1 round")
    parser.add_argument(
        "--clock",
        choices=["cpu", "wall"],
        default="cpu",
        help="steady env steps per CPU second of the child (default) or per wall second",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", choices=list(BENCHES))
    parser.add_argument("--off", default="none", choices=["none", *SHORTCUTS])
    parser.add_argument("--steps", type=int, help="env steps per run (default: per benchmark)")
    parser.add_argument("--out", default=str(ROOT / "outputs" / "bench_shortcuts"))
    args = parser.parse_args()
    if args.child:
        steps = args.steps or BENCHES[args.child].steps
        result = child(args.child, args.off, steps, args.seed, args.out, clock=args.clock)
        print(json.dumps(result))
        return

    summary: list[str] = []
    for bench in args.bench:
        spec = BENCHES[bench]
        offs = [s for s in spec.shortcuts if not args.only or s in args.only]
        if args.quick:
            offs, rounds, steps = offs[:1], 1, spec.quick_steps
        else:
            rounds = args.repeats
            steps = args.steps or spec.steps
        variants = ["none", *offs]
        runs: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
        for i in range(rounds):
            seed = args.seed + i
            for off in variants if i % 2 == 0 else variants[::-1]:
                out = str(Path(args.out) / bench / f"{off}_{i}")
                child_args = ["--child", bench, "--off", off, "--steps", str(steps)]
                child_args += ["--seed", str(seed), "--out", out, "--clock", args.clock]
                r = run_child(__file__, child_args)
                runs[off].append(r)
                print(
                    f"[{bench} round {i}] off={off:12s} wall {r['wall_s']:6.1f} s  "
                    f"steady {r['steady_sps']:8.1f} env steps/{args.clock} s",
                    flush=True,
                )
        summary += summarize(bench, runs, steps=steps, clock=args.clock)
    print(
        f"\nSUMMARY (ratio = steady env steps per {args.clock} second, shortcut on / off, "
        "paired per round)"
    )
    print("\n".join(summary))


if __name__ == "__main__":
    main()
