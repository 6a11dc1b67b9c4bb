"""Env stepping throughput: rlbench's env factory against the plain alternatives.

Random policy, actions drawn in advance (so only env stepping is timed); all contenders of
a comparison live at once and take turns in chunks of 50 vector steps (see ``compare``).

- Atari Breakout x8 (``--atari-envs``): (a) ``AtariFactory.make()`` (rlbench) with the
  preprocessing of the two peers, (b) ale-py's raw ``AtariVectorEnv`` with that preprocessing
  and its default thread count, (c) Gymnasium ``SyncVectorEnv`` of ``ALE/Breakout-v5`` +
  ``AtariPreprocessing`` + ``FrameStackObservation`` (needs opencv). Targets: (a) >= 0.9x (b)
  and >= 2x (c). Neither peer presses FIRE after a lost life, so (a) runs with
  ``fire_on_life_loss=False``: rlbench's default (a') serves Breakout's ball at once, so a
  random policy loses lives sooner and resets about 10% more often, and a reset emulates
  about 80 frames (ALE's 60 start-up no-ops, the reset presses, up to 30 no-ops) against 4 for a
  step; (a') is timed too, to show what that option costs. (b') appears where rlbench picks
  another thread count than ale-py (a process limited to fewer cores than the machine has).
- CartPole-v1 per env count: rlbench's serial/sync/native backends and its ``auto`` choice
  against ``gym.make_vec(..., "sync")``; then serial against native with a torch policy
  acting between steps, which sets ``factory.NATIVE_MIN_ENVS``.
- HalfCheetah-v5 (needs mujoco) and MinAtar Breakout (needs minatar): the factory against
  ``gym.make_vec(..., "sync")``.

    python scripts/bench_envs.py [--repeats 3] [--atari-steps 1000] [--quick]
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

from rlbench.envs import EnvFactory
from rlbench.envs.factory import NATIVE_MIN_ENVS

Maker = Callable[[], Any]


def compare(
    makers: dict[str, Maker],
    *,
    steps: int,
    actions: np.ndarray,
    repeats: int,
    chunk: int = 50,
    between: Callable[[int], object] | None = None,
) -> dict[str, list[float]]:
    """Env steps per second of each contender in each of ``repeats`` blocks of ``steps``
    vector steps; with ``between``, ``between(num_envs)`` runs untimed before every step (as
    acting runs between the steps of training) and only the steps are timed.

    All contenders live at once and take turns in chunks of ``chunk`` vector steps, so load
    changes on a shared machine hit them alike; block ``k`` of every contender covers the
    same stretch of time, so per-block ratios pair up. The order is shuffled every round
    (seeded): a contender runs slower right after some others (on Atari x8 the native env
    timed after the Gymnasium one stepped 10-14% slower than an identical one timed after
    rlbench's), and a fixed cyclic rotation keeps the same neighbours, so it biased ratios.
    """
    envs = {name: make() for name, make in makers.items()}
    names = list(envs)
    rounds = max(steps // chunk, 1)  # rounds per block
    rates: dict[str, list[float]] = {name: [] for name in names}
    try:
        for e in envs.values():
            e.reset(seed=0)
            for t in range(20):  # warm-up
                e.step(actions[t % len(actions)])
        order = np.random.default_rng(0)
        r = 0
        for _ in range(max(repeats, 1)):
            spent = dict.fromkeys(names, 0.0)
            for _ in range(rounds):
                for k in order.permutation(len(names)):
                    name = names[k]
                    e = envs[name]
                    if between is None:
                        t0 = time.perf_counter()
                        for j in range(chunk):
                            e.step(actions[(r * chunk + j) % len(actions)])
                        spent[name] += time.perf_counter() - t0
                        continue
                    for j in range(chunk):
                        between(e.num_envs)
                        t0 = time.perf_counter()
                        e.step(actions[(r * chunk + j) % len(actions)])
                        spent[name] += time.perf_counter() - t0
                r += 1
            for name in names:
                rates[name].append(rounds * chunk * envs[name].num_envs / spent[name])
        return rates
    finally:
        for e in envs.values():
            e.close()


def ratio_stats(num: list[float], den: list[float]) -> str:
    """``min / median`` of the per-block ratios ``num[k] / den[k]``."""
    ratios = [a / b for a, b in zip(num, den, strict=True)]
    return f"min {min(ratios):.2f}  median {statistics.median(ratios):.2f}"


def discrete_actions(n_actions: int, num_envs: int, length: int = 4096) -> np.ndarray:
    return np.random.default_rng(0).integers(n_actions, size=(length, num_envs))


def box_actions(space: gym.spaces.Box, num_envs: int, length: int = 4096) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.uniform(space.low, space.high, size=(length, num_envs, *space.shape)).astype(
        space.dtype
    )


# ---------------------------------------------------------------------- Atari
def bench_atari(num_envs: int, steps: int, repeats: int) -> None:
    from ale_py.vector_env import AtariVectorEnv

    from rlbench.envs.atari import AtariFactory, _native_options, native_threads

    # the peers' workload: no FIRE after a lost life (see the module docstring)
    factory = AtariFactory(game="breakout", num_envs=num_envs, fire_on_life_loss=False)
    default = AtariFactory(game="breakout", num_envs=num_envs)
    native_kwargs = _native_options(factory._options())  # num_threads 0: ale-py's default
    threads = native_threads(0, num_envs)
    ale_default_threads = min(num_envs, os.cpu_count() or 1)  # what ale-py's 0 picks

    def gym_sync() -> Any:
        import ale_py

        gym.register_envs(ale_py)

        def one() -> gym.Env:
            env = gym.make("ALE/Breakout-v5", frameskip=1, repeat_action_probability=0.25)
            env = gym.wrappers.AtariPreprocessing(env, noop_max=30, frame_skip=4)
            return gym.wrappers.FrameStackObservation(env, 4, padding_type="zero")

        return gym.vector.SyncVectorEnv([one] * num_envs)

    b2 = f"(b') raw, num_threads={threads}"
    makers: dict[str, Maker] = {
        "(a) rlbench AtariFactory": factory.make,
        "(a') rlbench, FIRE after lost life": default.make,
        "(b) raw AtariVectorEnv": lambda: AtariVectorEnv("breakout", num_envs, **native_kwargs),
    }
    if threads != ale_default_threads:
        makers[b2] = lambda: AtariVectorEnv(
            "breakout", num_envs, **{**native_kwargs, "num_threads": threads}
        )
    try:
        import cv2  # noqa: F401

        makers["(c) gym Sync+AtariPreprocessing"] = gym_sync
    except ImportError:
        print("(c) skipped: AtariPreprocessing needs opencv (pip install opencv-python-headless)")
    actions = discrete_actions(4, num_envs)
    rates = compare(makers, steps=steps, actions=actions, repeats=repeats)
    print(f"\nAtari Breakout x{num_envs}, random policy, env steps/s over {repeats} blocks")
    print(f"  {'':34s} {'min':>8s} {'median':>8s}")
    for name, rate in rates.items():
        print(f"  {name:34s} {min(rate):8.0f} {statistics.median(rate):8.0f}")
    a, b = rates["(a) rlbench AtariFactory"], rates["(b) raw AtariVectorEnv"]
    print(f"  (a)/(b)   {ratio_stats(a, b)}  (target >= 0.9)")
    fire = rates["(a') rlbench, FIRE after lost life"]
    print(f"  (a')/(a)  {ratio_stats(fire, a)}  (rlbench's default fire_on_life_loss)")
    if b2 in rates:
        print(f"  (a)/(b')  {ratio_stats(a, rates[b2])}  (equal thread counts)")
    c = rates.get("(c) gym Sync+AtariPreprocessing")
    if c:
        print(f"  (a)/(c)   {ratio_stats(a, c)}  (target >= 2)")
        print(f"  (b)/(c)   {ratio_stats(b, c)}  (the raw native env's own margin)")


# ---------------------------------------------------------------------- CartPole
def bench_cartpole(counts: list[int], steps: int, repeats: int) -> None:
    print("\nCartPole-v1, us per vector step; auto = the factory's default backend")
    print(f"  {'N':>3s} {'serial':>8s} {'sync':>8s} {'native':>8s} {'gym sync':>9s}  auto")
    best_native: int | None = None
    for n in counts:
        actions = discrete_actions(2, n)
        makers: dict[str, Maker] = {
            b: EnvFactory(id="CartPole-v1", num_envs=n, vectorization=b).make
            for b in ("serial", "sync", "native")
        }
        makers["gym"] = functools.partial(
            gym.make_vec, "CartPole-v1", num_envs=n, vectorization_mode="sync"
        )
        rates = compare(makers, steps=steps, actions=actions, repeats=repeats)
        us = {k: n / statistics.median(r) * 1e6 for k, r in rates.items()}
        auto = EnvFactory(id="CartPole-v1", num_envs=n).backend(n)
        print(
            f"  {n:3d} {us['serial']:8.1f} {us['sync']:8.1f} {us['native']:8.1f} "
            f"{us['gym']:9.1f}  {auto} ({us['gym'] / us[auto]:.2f}x gym sync)"
        )
        if best_native is None and us["native"] < us["serial"]:
            best_native = n
    print(
        f"  native first beats serial at N={best_native}; factory.NATIVE_MIN_ENVS={NATIVE_MIN_ENVS}"
    )


def bench_cartpole_acting(counts: list[int], steps: int, repeats: int) -> None:
    """Serial against native stepping when a torch policy acts before every step, as in
    training: torch evicts the caches the Python env loop needs, and it costs the two backends
    differently: on the 2-core dev machine native stepping alone is ahead from N=10, with a
    policy acting from N=12, which is what ``factory.NATIVE_MIN_ENVS`` follows."""
    import torch

    torch.set_num_threads(1)
    policy = torch.nn.Sequential(
        torch.nn.Linear(4, 64), torch.nn.Tanh(), torch.nn.Linear(64, 64), torch.nn.Tanh()
    )
    head = torch.nn.Linear(64, 2)

    @torch.no_grad()
    def act(n: int) -> object:
        logits = head(policy(torch.randn(n, 4)))
        return torch.distributions.Categorical(logits=logits).sample().numpy()

    print("\nCartPole-v1 with a torch policy acting between steps, us per vector step")
    print(f"  {'N':>3s} {'serial':>8s} {'native':>8s}  auto")
    best_native: int | None = None
    for n in counts:
        makers: dict[str, Maker] = {
            b: EnvFactory(id="CartPole-v1", num_envs=n, vectorization=b).make
            for b in ("serial", "native")
        }
        rates = compare(
            makers, steps=steps, actions=discrete_actions(2, n), repeats=repeats, between=act
        )
        us = {k: n / statistics.median(r) * 1e6 for k, r in rates.items()}
        auto = EnvFactory(id="CartPole-v1", num_envs=n).backend(n)
        print(f"  {n:3d} {us['serial']:8.1f} {us['native']:8.1f}  {auto}")
        if best_native is None and us["native"] < us["serial"]:
            best_native = n
    print(
        f"  native first beats serial at N={best_native}; factory.NATIVE_MIN_ENVS={NATIVE_MIN_ENVS}"
    )


# ---------------------------------------------------------------------- others
def bench_factory_vs_gym(
    label: str, factory: EnvFactory, gym_id: str, num_envs: int, steps: int, repeats: int
) -> None:
    space = factory.spaces()[1]
    if isinstance(space, gym.spaces.Discrete):
        actions = discrete_actions(int(space.n), num_envs)
    else:
        assert isinstance(space, gym.spaces.Box)
        actions = box_actions(space, num_envs)
    makers: dict[str, Maker] = {
        "rlbench factory": lambda: factory.make(num_envs=num_envs),
        "gym make_vec sync": lambda: gym.make_vec(
            gym_id, num_envs=num_envs, vectorization_mode="sync"
        ),
    }
    rates = compare(makers, steps=steps, actions=actions, repeats=repeats)
    ours, theirs = rates["rlbench factory"], rates["gym make_vec sync"]
    print(
        f"\n{label} x{num_envs}: factory {statistics.median(ours):.0f} vs gym sync "
        f"{statistics.median(theirs):.0f} env steps/s (median), ratio {ratio_stats(ours, theirs)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--atari-envs", type=int, default=8)
    parser.add_argument("--atari-steps", type=int, default=1000, help="vector steps per run")
    parser.add_argument("--steps", type=int, default=3000, help="vector steps, other envs")
    parser.add_argument("--quick", action="store_true", help="tiny settings (smoke check)")
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.atari_steps, args.steps = 1, 50, 200
    print("machine: shared 2-core dev box unless stated otherwise; numbers are indicative")
    bench_atari(args.atari_envs, args.atari_steps, args.repeats)
    bench_cartpole([1, 2, 4, 8, 16, 32], args.steps, args.repeats)
    bench_cartpole_acting([8, 12, 16], args.steps // 3, args.repeats)
    try:
        from rlbench.envs.mujoco import MuJoCoFactory

        for n in (1, 4):
            cheetah = MuJoCoFactory(id="HalfCheetah-v5", num_envs=n)
            bench_factory_vs_gym(
                "HalfCheetah-v5", cheetah, "HalfCheetah-v5", n, args.steps // 3, args.repeats
            )
    except Exception as e:  # mujoco extra missing
        print(f"\nHalfCheetah skipped: {e}")
    try:
        from rlbench.envs.minatar import MinAtarFactory

        minatar = MinAtarFactory(id="MinAtar/Breakout-v1", num_envs=8)
        bench_factory_vs_gym(
            "MinAtar Breakout", minatar, "MinAtar/Breakout-v1", 8, args.steps, args.repeats
        )
    except Exception as e:  # minatar extra missing
        print(f"\nMinAtar skipped: {e}")


if __name__ == "__main__":
    main()
