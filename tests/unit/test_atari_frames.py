"""rlbench's native Atari frames against Gymnasium's reference preprocessing.

``NativeAtariVectorEnv`` (ale-py's C++ vector env: frame skip with max-pooling of the last
two frames, grayscale, ``INTER_AREA`` resize to 84x84, zero-padded stack) must produce
*exactly* the frames of ``AtariPreprocessing`` + ``FrameStackObservation`` on the same ROM
and action sequence. The randomness of the two sides comes from different generators, so
the comparison switches it off: no sticky actions (``repeat_action_probability=0``), no
no-ops on reset (``noop_max=0``); then a seed changes nothing in these games (checked
below), and the frames are a pure function of the actions. The FIRE options are off too:
ale-py's ``use_fire_reset`` presses FIRE on reset and ``fire_on_life_loss`` replaces the
agent's action after a lost life, neither of which Gymnasium does. ``FrameStackObservation``
pads with zeros (``padding_type="zero"``), as ale-py does; its default repeats the first
frame instead.

Needs OpenCV (Gymnasium's wrapper resizes with ``cv2``; ale-py does the same resize in C++).
"""

from __future__ import annotations

from typing import Any

import cv2  # noqa: F401  (Gymnasium's AtariPreprocessing resizes with OpenCV: a dev dependency)
import numpy as np
import pytest

from rlbench.envs.atari import AtariFactory, NativeAtariVectorEnv

GYM_IDS = {
    "breakout": "ALE/Breakout-v5",
    "pong": "ALE/Pong-v5",
    "space_invaders": "ALE/SpaceInvaders-v5",
}
# switches off everything random or FIRE-related (see the module docstring)
COMPARABLE: dict[str, Any] = {
    "noop_max": 0,
    "repeat_action_probability": 0.0,
    "fire_reset": False,
    "fire_on_life_loss": False,
    "num_threads": 1,
}


def native(game: str, **kw: Any) -> NativeAtariVectorEnv:
    env = AtariFactory(game=game, num_envs=1, **{**COMPARABLE, **kw}).make()
    assert isinstance(env, NativeAtariVectorEnv)
    return env


def reference(game: str) -> Any:
    """Gymnasium's own Atari preprocessing over the raw ALE env (one emulator frame a step)."""
    import ale_py
    import gymnasium as gym
    from gymnasium.wrappers import AtariPreprocessing, FrameStackObservation

    gym.register_envs(ale_py)
    raw = gym.make(
        GYM_IDS[game],
        frameskip=1,
        repeat_action_probability=0.0,
        full_action_space=False,
        max_num_frames_per_episode=108_000,
    )
    env = AtariPreprocessing(
        raw, noop_max=0, frame_skip=4, screen_size=84, grayscale_obs=True, scale_obs=False
    )
    return FrameStackObservation(env, 4, padding_type="zero")


def compare(game: str, steps: int, *, seed: int = 3, **kw: Any) -> tuple[list[str], int]:
    """Step both envs with one random action sequence; returns the mismatches (first few)
    and the number of game ends (after which both start a new game)."""
    nat, ref = native(game, **kw), reference(game)
    assert nat.single_action_space.n == ref.action_space.n
    a, _ = nat.reset(seed=seed)
    b, _ = ref.reset(seed=seed)
    assert a.shape == (1, 4, 84, 84) and b.shape == (4, 84, 84)
    bad = [] if np.array_equal(a[0], b) else ["reset"]
    rng = np.random.default_rng(0)
    ends = 0
    for t in range(steps):
        action = int(rng.integers(nat.single_action_space.n))
        a, ra, ta, ua, _ = nat.step(np.array([action]))
        b, rb, tb, ub, _ = ref.step(action)
        if not np.array_equal(a[0], b):
            bad.append(f"step {t}: {(a[0] != b).sum()} pixels differ")
        if (float(ra[0]), bool(ta[0]), bool(ua[0])) != (float(rb), tb, ub):
            bad.append(f"step {t}: reward/terminated/truncated {ra, ta, ua} != {rb, tb, ub}")
        if tb or ub:  # Gymnasium resets now, the native env on its next step (NEXT_STEP)
            ends += 1
            b, _ = ref.reset(seed=seed)
            a, ra, ta, ua, _ = nat.step(np.array([0]))
            if not np.array_equal(a[0], b) or ra[0] != 0.0 or ta[0] or ua[0]:
                bad.append(f"step {t}: the new game's first frame differs")
        if len(bad) >= 5:
            break
    return bad, ends


@pytest.mark.parametrize(
    ("game", "steps"), [("breakout", 500), ("pong", 300), ("space_invaders", 300)]
)
def test_frames_equal_gymnasium_atari_preprocessing_with_frame_stack(game: str, steps: int) -> None:
    bad, ends = compare(game, steps)
    assert bad == []
    if game == "breakout":  # random play loses all 5 lives in about 200 steps
        assert ends >= 2  # terminal frames and the restart compared too


def test_the_comparison_sees_a_fire_on_reset_and_another_frame_skip() -> None:
    """The check is sharp: ale-py's FIRE on reset, or 3 frames a step instead of 4, and the
    frames differ from the first one on."""
    assert compare("breakout", 20, fire_reset=True)[0][0] == "reset"
    assert compare("breakout", 20, frame_skip=3)[0][0].startswith("step 0:")


def trajectory(game: str, seed: int, steps: int = 100, **kw: Any) -> np.ndarray:
    env = native(game, **kw)
    frames = [env.reset(seed=seed)[0]]
    rng = np.random.default_rng(0)  # the same actions for every seed
    for _ in range(steps):
        frames.append(env.step(rng.integers(env.single_action_space.n, size=1))[0])
    return np.stack(frames)


@pytest.mark.parametrize(
    ("game", "kw"),
    [
        ("pong", {"noop_max": 30}),  # the opponent moves during the no-ops
        ("pong", {"repeat_action_probability": 0.25}),
        ("breakout", {"repeat_action_probability": 0.25}),
    ],
)
def test_seeds_change_the_frames_through_noops_and_sticky_actions(
    game: str, kw: dict[str, Any]
) -> None:
    a, again, other = (trajectory(game, s, **kw) for s in (0, 0, 1))
    np.testing.assert_array_equal(a, again)
    assert not np.array_equal(a, other)


@pytest.mark.parametrize("game", ["pong", "breakout"])
def test_without_noops_and_sticky_actions_the_seed_changes_nothing(game: str) -> None:
    """Why the Gymnasium comparison may use any seed: these games are deterministic given
    the actions, so the seeds' only channels are the no-ops and the sticky actions."""
    a, b = trajectory(game, 0), trajectory(game, 12345)
    np.testing.assert_array_equal(a, b)
