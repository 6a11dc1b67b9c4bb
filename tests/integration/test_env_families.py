"""DQN on Atari (native vector env) and MinAtar through Hydra with ``trainer=debug``; videos;
exact resume on Atari; one-line errors for unknown games and missing packages."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import gymnasium as gym
import pytest
import torch

from rlbench.errors import ConfigError
from tests.conftest import DEBUG, resume_in_process, train_in_process

# 2 envs, short episodes (a greedy untrained agent may never FIRE after losing a life),
# a buffer of 1,000 frame-stacked transitions (7 MB), the DQN-paper reward clipping.
ATARI = [
    "env=breakout",
    "env.num_envs=2",
    "env.max_episode_frames=1000",
    "buffer.capacity=1000",
    "algo.clip_rewards=true",
    "algo.target_update_every=200",
    "trainer.eval_every=300",  # the resume test stops at 300: an evaluation step
]


def read_metrics(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "metrics.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    return [{k: v for k, v in r.items() if not k.startswith("perf/")} for r in rows]


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]


def assert_same_run(resumed: Path, straight: Path) -> None:
    """The resumed run logged the same metrics and ended with the same weights."""
    assert read_metrics(resumed) == read_metrics(straight)
    a, b = weights(resumed), weights(straight)
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.fixture(scope="module")
def breakout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One 600-step DQN run on Breakout with a video and a TensorBoard clip at the end."""
    d = tmp_path_factory.mktemp("breakout")
    train_in_process(
        d,
        [
            *DEBUG,
            *ATARI,
            "total_env_steps=600",
            "logger=tensorboard",
            "video.enabled=true",
            "video.tensorboard=true",
            "video.max_steps=100",
        ],
    )
    return d


def test_dqn_runs_on_breakout_with_a_nature_cnn(breakout: Path) -> None:
    rows = read_metrics(breakout)
    assert int(rows[-1]["env_step"]) == 600
    assert any(r.get("train/loss") for r in rows)
    assert any(r.get("eval/return_mean") for r in rows)
    state = weights(breakout)
    assert state["q_net.0.convs.0.weight"].shape == (32, 4, 8, 8)  # network=auto -> Nature CNN
    ckpt = torch.load(breakout / "checkpoints" / "last.ckpt", weights_only=True)
    buffer = ckpt["ReplayDataModule"]["buffer"]
    assert buffer["obs"].shape[2:] == (84, 84)  # single frames, not stacks


def test_video_mp4_is_written_and_has_frames(breakout: Path) -> None:
    from rlbench.callbacks.video import read_video

    videos = sorted((breakout / "videos").glob("*.mp4"))
    assert [v.name for v in videos] == ["step000000600-episode-0.mp4"]
    frames = read_video(videos[0])
    assert frames.shape[0] > 10 and frames.shape[1:] == (210, 160, 3)
    assert frames.std() > 0  # not a blank clip


def test_video_clip_is_logged_to_tensorboard(breakout: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(breakout / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    assert "eval/video" in events.Tags()["images"]
    (clip,) = events.Images("eval/video")
    assert clip.step == 600 and clip.encoded_image_string[:6] == b"GIF89a"


def test_atari_resume_is_exact(breakout: Path, tmp_path: Path) -> None:
    """Native envs are restored by replaying their actions, so a resumed run matches an
    uninterrupted one exactly (metrics, weights, video)."""
    half = tmp_path / "half"
    half.mkdir()
    overrides = [
        *DEBUG,
        *ATARI,
        "logger=tensorboard",
        "video.enabled=true",
        "video.tensorboard=true",
        "video.max_steps=100",
    ]
    train_in_process(half, [*overrides, "total_env_steps=300"])
    resume_in_process(half, ["total_env_steps=600"])
    assert_same_run(half, breakout)


def test_dqn_runs_on_minatar_breakout(tmp_path: Path) -> None:
    train_in_process(
        tmp_path, [*DEBUG, "env=minatar_breakout", "total_env_steps=600", "video.enabled=true"]
    )
    rows = read_metrics(tmp_path)
    assert int(rows[-1]["env_step"]) == 600 and any(r.get("train/loss") for r in rows)
    state = weights(tmp_path)
    assert state["q_net.0.convs.0.weight"].shape == (16, 4, 3, 3)  # the MinAtar CNN
    assert len(list((tmp_path / "videos").glob("*.mp4"))) == 1


def test_unknown_atari_game_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="closest: space_invaders") as e:
        train_in_process(tmp_path, [*DEBUG, "env=atari", "env.game=space_invader"])
    assert "\n" not in str(e.value)


def test_missing_minatar_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for module in [m for m in sys.modules if m.startswith("minatar")]:
        monkeypatch.delitem(sys.modules, module)
    monkeypatch.setitem(sys.modules, "minatar", None)
    # registered only if an earlier test in this worker imported minatar
    monkeypatch.delitem(gym.registry, "MinAtar/Seaquest-v1", raising=False)
    with pytest.raises(ConfigError, match=r"pip install 'rlbench\[minatar\]'"):
        train_in_process(tmp_path, [*DEBUG, "env=minatar_seaquest"])


def test_video_of_an_env_that_cannot_render_fails_before_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pygame", None)  # CartPole renders through pygame
    with pytest.raises(ConfigError, match="video: CartPole-v1 cannot render") as e:
        train_in_process(tmp_path, [*DEBUG, "video.enabled=true"])
    assert "\n" not in str(e.value)
    assert not (tmp_path / "metrics.csv").exists() or len(read_metrics(tmp_path)) == 0


def test_mujoco_episode_video_headless(tmp_path: Path) -> None:
    """MuJoCo renders offscreen (EGL) with normalized observations, as evaluation sees them."""
    import numpy as np

    from rlbench.callbacks.video import read_video, record_episodes
    from rlbench.envs.mujoco import MuJoCoFactory

    class Still:
        env_step = 0

        def make_actor(self, *, num_envs: int, mode: str, **_: object) -> Still:
            assert num_envs == 1 and mode == "eval"
            return self

        def act(self, obs: np.ndarray, *, first: np.ndarray) -> np.ndarray:
            assert obs.shape == (1, 11) and first.shape == (1,)
            return np.zeros((len(obs), 3), dtype=np.float32)

    factory = MuJoCoFactory(id="Hopper-v5", normalize_obs=True)
    returns, _, fps = record_episodes(
        Still(),
        factory,
        folder=tmp_path,
        name_prefix="hop",
        episodes=1,
        seed=0,
        env_step=0,
        max_steps=20,
    )
    frames = read_video(tmp_path / "hop-episode-0.mp4")
    assert len(returns) == 1 and fps > 0
    assert frames.shape[0] >= 20 and frames.shape[-1] == 3 and frames.std() > 0


def test_lunar_lander_resume_is_exact(tmp_path: Path) -> None:
    """Box2D envs pickle as their constructor arguments; their checkpoints replay the
    current episode (``ReplayOnUnpickle``), so a resumed run matches an uninterrupted one.
    Without it the resumed run failed at its first step (no lander in a fresh env)."""
    overrides = [*DEBUG, "env=lunar_lander", "env.num_envs=2", "trainer.eval_every=300"]
    whole, half = tmp_path / "whole", tmp_path / "half"
    whole.mkdir()
    half.mkdir()
    train_in_process(whole, [*overrides, "total_env_steps=600"])
    train_in_process(half, [*overrides, "total_env_steps=300"])
    resume_in_process(half, ["total_env_steps=600"])
    assert_same_run(half, whole)
