"""Atari through ale-py's native vector env: seeding, NEXT_STEP, episodic life, resume."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from rlbench.envs.atari import (
    AtariFactory,
    AtariRenderEnv,
    NativeAtariVectorEnv,
    check_game,
    native_threads,
)
from rlbench.errors import ConfigError


def rollout(
    envs: NativeAtariVectorEnv, steps: int, *, seed: int | None = 7, action_seed: int = 0
) -> list[tuple[np.ndarray, ...]]:
    out: list[tuple[np.ndarray, ...]] = []
    if seed is not None:
        obs, _ = envs.reset(seed=seed)
        out.append((obs,))
    rng = np.random.default_rng(action_seed)
    for _ in range(steps):
        obs, reward, term, trunc, info = envs.step(rng.integers(4, size=envs.num_envs))
        out.append((obs, reward, term, trunc, info["lives"]))
    return out


def assert_same(a: list[tuple[np.ndarray, ...]], b: list[tuple[np.ndarray, ...]]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        for u, v in zip(x, y, strict=True):
            np.testing.assert_array_equal(u, v)


@pytest.fixture(scope="module")
def factory() -> AtariFactory:
    return AtariFactory(game="breakout", num_envs=2, max_episode_frames=2000)


def test_same_seed_same_observations_and_rewards(factory: AtariFactory) -> None:
    a = rollout(factory.make(), 300)
    b = rollout(factory.make(), 300)
    assert_same(a, b)
    assert any(step[1].any() for step in a[1:])  # some reward was scored
    c = rollout(factory.make(), 300, seed=8)
    assert not np.array_equal(a[-1][0], c[-1][0])


def test_env_i_is_seeded_with_seed_plus_i(factory: AtariFactory) -> None:
    pair = rollout(factory.make(), 40, action_seed=1)
    single = rollout(factory.make(num_envs=1), 0, seed=8)
    np.testing.assert_array_equal(pair[0][0][1], single[0][0][0])


def test_next_step_autoreset_and_unclipped_rewards() -> None:
    envs = AtariFactory(game="breakout", num_envs=1, max_episode_frames=400).make()
    envs.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(200):
        obs, reward, term, trunc, _ = envs.step(rng.integers(4, size=1))
        if term[0] or trunc[0]:
            break
    assert trunc[0]  # 400 frames = 100 agent steps
    final = obs
    obs, reward, term, trunc, _ = envs.step(np.array([1]))  # ignored: the reset step
    assert reward[0] == 0.0 and not term[0] and not trunc[0]
    assert not obs[0, :3].any() and obs[0, 3].any()  # fresh zero-padded stack
    assert not np.array_equal(obs, final)


def test_rewards_are_raw_game_points() -> None:
    envs = AtariFactory(game="space_invaders", num_envs=2).make()
    steps = rollout(envs, 300)
    assert max(float(step[1].max()) for step in steps[1:]) > 1.0  # aliens score 5 to 30


def test_episodic_life_ends_learning_episodes_but_not_the_game() -> None:
    envs = AtariFactory(game="breakout", num_envs=1, episodic_life=True).make()
    obs, info = envs.reset(seed=1)
    lives = int(info["lives"][0])
    for _ in range(2000):
        obs, reward, term, trunc, info = envs.step(np.array([1]))  # FIRE, then nothing useful
        if term[0]:
            break
    assert term[0] and int(info["lives"][0]) == lives - 1
    last = obs
    obs, reward, term, trunc, info = envs.step(np.array([3]))  # NOOP restart, game goes on
    assert reward[0] == 0.0 and not term[0] and not trunc[0]
    assert int(info["lives"][0]) == lives - 1
    np.testing.assert_array_equal(obs[0, :3], last[0, 1:])  # the stack continues


def test_without_episodic_life_a_lost_life_is_no_episode_end() -> None:
    envs = AtariFactory(game="breakout", num_envs=1).make()
    _, info = envs.reset(seed=1)
    lives = int(info["lives"][0])
    for _ in range(500):
        _, _, term, _, info = envs.step(np.array([1]))
        assert not term[0]
        if int(info["lives"][0]) < lives:
            return
    pytest.fail("no life was lost")


@pytest.mark.parametrize("fire", [True, False])
def test_fire_on_life_loss_serves_the_next_ball(fire: bool) -> None:
    """A policy that never presses FIRE ends a Breakout game (5 lives, about 120 steps)
    when the env presses FIRE after each lost life; without it the game stalls to the cap."""
    factory = AtariFactory(
        game="breakout", num_envs=1, fire_on_life_loss=fire, max_episode_frames=4000
    )
    envs = factory.for_evaluation().make()
    envs.reset(seed=0)
    noop = np.zeros(1, dtype=np.int64)
    steps = 0
    while steps < 1000:
        _, _, term, trunc, info = envs.step(noop)
        steps += 1
        if term[0] or trunc[0]:
            break
    if fire:
        assert term[0] and int(info["lives"][0]) == 0 and steps < 400
    else:
        assert trunc[0] and int(info["lives"][0]) == 4 and steps == 1000  # 4000 frames


def test_evaluation_envs_serve_at_the_start_of_every_game() -> None:
    """ale-py presses FIRE for one frame on reset and sticky actions (p=0.25) drop it about a
    quarter of the time, so a policy that never presses FIRE waits for the frame cap (with the
    default 108k frames, 27k CNN forwards per evaluation episode). Evaluation envs press FIRE
    on the first step of every game."""
    factory = AtariFactory(game="breakout", num_envs=8, max_episode_frames=2000)
    assert not factory.fire_on_start and factory.for_evaluation().fire_on_start
    noop = np.zeros(8, dtype=np.int64)
    ends = {}
    for name, f in (("train", factory), ("eval", factory.for_evaluation())):
        envs = f.make()
        envs.reset(seed=1_000_000)
        term = trunc = 0
        for _ in range(1000):
            _, _, te, tr, _ = envs.step(noop)
            term, trunc = term + int(te.sum()), trunc + int(tr.sum())
        ends[name] = (term, trunc)
    assert ends["train"][1] > 0  # some games were never served and ran to 2000 frames
    eval_term, eval_trunc = ends["eval"]
    assert eval_trunc == 0 and eval_term >= 8 * 6  # about 120 steps a game


@pytest.mark.parametrize("when", ["reset", "game_over"])
def test_pickle_keeps_the_pending_fire_of_a_new_game(when: str) -> None:
    envs = AtariFactory(game="breakout", num_envs=2).for_evaluation().make()
    envs.reset(seed=1_000_001)  # env 0's reset FIRE is dropped by a sticky action
    noop = np.zeros(2, dtype=np.int64)
    if when == "game_over":  # pickled on the step that ends a game: the next one resets it
        for _ in range(400):
            _, _, term, _, _ = envs.step(noop)
            if term.any():
                break
        assert term.any()
        ended = term
    restored = pickle.loads(pickle.dumps(envs))
    a, b = [], []
    for _ in range(150):
        a.append((*envs.step(noop), envs.last_sent.copy()))
        b.append((*restored.step(noop), restored.last_sent.copy()))
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x[0], y[0])
        np.testing.assert_array_equal(x[4]["lives"], y[4]["lives"])
        np.testing.assert_array_equal(x[5], y[5])  # the actions the emulators got
    if when == "reset":
        assert (a[0][5] == 1).all()  # FIRE on the first step of both games
        assert any(int(x[4]["lives"][0]) < 5 for x in a)  # env 0's ball was served
    else:  # the step after the end resets (action ignored); the one after serves
        np.testing.assert_array_equal(a[1][5], np.where(ended, 1, 0))


def test_pickle_right_after_a_lost_life_keeps_the_pending_fire() -> None:
    envs = AtariFactory(game="breakout", num_envs=1).for_evaluation().make()
    envs.reset(seed=3)
    noop = np.zeros(1, dtype=np.int64)
    for _ in range(400):
        envs.step(noop)
        if envs._lost_life.any():
            break
    assert envs._lost_life.all()
    restored = pickle.loads(pickle.dumps(envs))
    a = [envs.step(noop) for _ in range(60)]
    b = [restored.step(noop) for _ in range(60)]
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x[0], y[0])
        np.testing.assert_array_equal(x[4]["lives"], y[4]["lives"])


@pytest.mark.parametrize("episodic_life", [False, True])
def test_pickle_restores_the_exact_state_by_replay(episodic_life: bool) -> None:
    factory = AtariFactory(game="breakout", num_envs=2, episodic_life=episodic_life)
    envs = factory.make()
    rollout(envs, 150)
    restored = pickle.loads(pickle.dumps(envs))
    assert_same(
        rollout(envs, 150, seed=None, action_seed=5),
        rollout(restored, 150, seed=None, action_seed=5),
    )


def test_pickle_without_replay_truncates_every_episode() -> None:
    factory = AtariFactory(game="breakout", num_envs=2, resume_replay=False)
    envs = factory.make()
    steps = rollout(envs, 30)
    restored = pickle.loads(pickle.dumps(envs))
    obs, reward, term, trunc, _ = restored.step(np.array([1, 1]))
    np.testing.assert_array_equal(obs, steps[-1][0])  # the last observation again
    assert trunc.all() and not term.any() and not reward.any()
    obs, reward, term, trunc, _ = restored.step(np.array([1, 1]))  # the new games
    assert not obs[:, :3].any() and not (term | trunc).any()
    again = pickle.loads(pickle.dumps(envs))  # the same checkpoint starts the same games
    again.step(np.array([0, 0]))
    np.testing.assert_array_equal(again.step(np.array([0, 0]))[0], obs)


def test_native_threads_default_to_one_per_core_capped_by_envs() -> None:
    cores = len(os.sched_getaffinity(0))
    assert native_threads(0, 64) == min(64, cores)
    assert native_threads(0, 1) == 1
    assert native_threads(3, 8) == 3  # an explicit count is kept
    envs = AtariFactory(game="pong", num_envs=1).make()  # builds with the resolved count
    assert envs.reset(seed=0)[0].shape == (1, 4, 84, 84)


def test_unknown_game_lists_close_matches() -> None:
    with pytest.raises(ConfigError, match="closest: breakout") as e:
        AtariFactory(game="brekout")
    assert "\n" not in str(e.value)
    assert check_game("MsPacman") == "ms_pacman" and check_game("space-invaders")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"vectorization": "serial"}, "allowed auto, native"),
        ({"max_episode_steps": 100}, "max_episode_frames"),
        ({"repeat_action_probability": 1.5}, "must be in"),
        ({"frame_skip": 0}, "frame_skip=0"),
    ],
)
def test_bad_options_are_one_line_errors(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        AtariFactory(game="pong", **kwargs)  # type: ignore[arg-type]


def test_spaces_and_evaluation_factory() -> None:
    factory = AtariFactory(game="pong", episodic_life=True, full_action_space=True)
    obs_space, act_space = factory.spaces()
    assert obs_space.shape == (4, 84, 84) and obs_space.dtype == np.uint8
    assert act_space.n == 18
    assert factory.id == "ALE/pong"
    assert not factory.for_evaluation().episodic_life and factory.episodic_life


def test_render_env_plays_the_training_observations_in_lockstep() -> None:
    factory = AtariFactory(game="breakout", num_envs=1)
    env = factory.render_env()
    assert isinstance(env, AtariRenderEnv)
    obs, _ = env.reset(seed=11)
    ref = factory.make()
    ref_obs, _ = ref.reset(seed=11)
    np.testing.assert_array_equal(obs, ref_obs[0])
    for a in [1, 2, 3, 0, 1, 2, 2, 3]:
        obs, reward, *_ = env.step(a)
        ref_obs, ref_reward, *_ = ref.step(np.array([a]))
        np.testing.assert_array_equal(obs, ref_obs[0])
        assert reward == ref_reward[0]
    for _ in range(150):  # NOOPs past lost lives: the FIRE the env presses reaches both
        obs, *_ = env.step(0)
        ref_obs, *_ = ref.step(np.array([0]))
        np.testing.assert_array_equal(obs, ref_obs[0])
    frame = env.render()
    assert frame.shape == (210, 160, 3) and frame.dtype == np.uint8 and frame.any()
    env.close()
