"""Videos of evaluation episodes: ``video.enabled=true`` -> ``<run dir>/videos/*.mp4``.

Every ``video.every`` env steps (and at the end of training) the deterministic policy plays
``video.episodes`` episodes in a separate single env made by the evaluation factory's
``render_env()`` -- for Atari a twin of the native env that also emits RGB frames -- wrapped
in Gymnasium's ``RecordVideo`` (moviepy writes the mp4). Episode ``j`` is seeded like
evaluation episode ``j`` (``seed + EVAL_SEED_OFFSET + j``), so the video shows an episode the
evaluation also played. With ``video.tensorboard=true`` the first episode is also logged to
TensorBoard as an animated image (``eval/video``).

Classic-control envs (CartPole & co.) draw their frames with pygame (a dependency); MuJoCo
envs render offscreen with the fast settings of ``envs.mujoco.RenderSettings``.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import gymnasium as gym
import lightning as L
import numpy as np

from rlbench.data.protocol import datamodule_of
from rlbench.envs import EVAL_SEED_OFFSET, EnvFactory
from rlbench.errors import ConfigError

# pygame draws classic-control frames offscreen: no window, no sound. Without these SDL
# probes the display and audio servers, and prints "error: XDG_RUNTIME_DIR is invalid or not
# set in the environment" on machines without a desktop session
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")


class _FrameTap(gym.Wrapper[Any, Any, Any, Any]):
    """Keeps a copy of every frame ``render()`` returns (for the TensorBoard clip)."""

    def __init__(self, env: gym.Env[Any, Any], *, keep: bool) -> None:
        super().__init__(env)
        self.keep = keep
        self.frames: list[np.ndarray] = []

    def render(self) -> Any:
        frame = self.env.render()
        if self.keep and isinstance(frame, np.ndarray):
            self.frames.append(frame)
        return frame


def record_episodes(
    module: Any,
    env_factory: EnvFactory,
    *,
    folder: Path,
    name_prefix: str,
    episodes: int,
    seed: int,
    env_step: int,
    max_steps: int,
    keep_frames: bool = False,
    deterministic: bool = True,
) -> tuple[list[float], list[np.ndarray], int]:
    """Play ``episodes`` evaluation episodes (the deterministic policy, or a sampled one
    seeded like evaluation episode ``j``) and write one mp4 each to ``folder``
    (``<name_prefix>-episode-<j>.mp4``). Returns the episode returns, with ``keep_frames``
    the first episode's RGB frames ``(H, W, 3)`` uint8 (else ``[]``), and the video fps."""
    tap = _FrameTap(env_factory.render_env(), keep=keep_frames)
    with warnings.catch_warnings():  # "overwriting existing videos": the folder is shared
        warnings.simplefilter("ignore")
        env = gym.wrappers.RecordVideo(
            tap,
            video_folder=str(folder),
            episode_trigger=lambda _: True,
            name_prefix=name_prefix,
            disable_logger=True,
        )
    returns: list[float] = []
    first_frames: list[np.ndarray] = []
    fps = int(env.frames_per_sec)
    try:
        for j in range(episodes):
            obs, _ = env.reset(seed=seed + EVAL_SEED_OFFSET + j)
            actor = module.make_actor(
                num_envs=1,
                mode="eval",
                deterministic=deterministic,
                seed=seed + EVAL_SEED_OFFSET + j,
            )
            total, done, steps = 0.0, False, 0
            first = np.ones(1, dtype=np.bool_)
            while not done and steps < max_steps:
                action = actor.act(np.asarray(obs)[None], first=first)[0]
                first = np.zeros(1, dtype=np.bool_)
                obs, reward, terminated, truncated, _ = env.step(action)
                total += float(reward)
                done = bool(terminated or truncated)
                steps += 1
            returns.append(total)
            if j == 0 and keep_frames:
                first_frames = list(tap.frames)
            tap.keep = False
    finally:
        env.close()
    return returns, first_frames, fps


def gif_bytes(frames: list[np.ndarray], *, fps: int) -> bytes:
    """Frames ``(H, W, 3)`` uint8 as an animated GIF (what TensorBoard shows as video)."""
    from moviepy import ImageSequenceClip

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "clip.gif"
        ImageSequenceClip(list(frames), fps=fps).write_gif(str(path), logger=None)
        return path.read_bytes()


def log_tensorboard_clip(
    trainer: L.Trainer, frames: list[np.ndarray], *, fps: int, step: int, tag: str
) -> bool:
    """Log ``frames`` to the trainer's TensorBoard logger (if any) as an animated image.

    Written as TensorBoard's own video summary (an encoded GIF); ``SummaryWriter.add_video``
    cannot be used because it imports ``moviepy.editor``, which moviepy 2 removed.
    """
    from lightning.pytorch.loggers import TensorBoardLogger
    from torch.utils.tensorboard.summary import Summary

    if not frames:
        return False
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            h, w, c = frames[0].shape
            image = Summary.Image(
                height=h, width=w, colorspace=c, encoded_image_string=gif_bytes(frames, fps=fps)
            )
            summary = Summary(value=[Summary.Value(tag=tag, image=image)])
            logger.experiment._get_file_writer().add_summary(summary, step)
            return True
    return False


class VideoCallback(L.Callback):
    """Records evaluation episodes to ``dirpath`` every ``every`` env steps and at the end.

    Args:
        env: the evaluation env factory (``EnvFactory.for_evaluation()``).
        dirpath: folder of the mp4 files (``<run dir>/videos``).
        every: env steps between recordings (0: only at the end).
        episodes: episodes per recording.
        seed: the run's seed (episode ``j`` is seeded as evaluation episode ``j``).
        max_steps: env steps per episode at most.
        tensorboard: also log the first episode to TensorBoard.
        deterministic: record the deterministic policy (``trainer.eval_deterministic``).
    """

    def __init__(
        self,
        *,
        env: EnvFactory,
        dirpath: str | Path,
        every: int,
        episodes: int = 1,
        seed: int = 0,
        max_steps: int = 10_000,
        tensorboard: bool = False,
        deterministic: bool = True,
    ) -> None:
        self.env_factory = env
        self.deterministic = deterministic
        self.dirpath = Path(dirpath)
        self.every = every
        self.episodes = episodes
        self.seed = seed
        self.max_steps = max_steps
        self.tensorboard = tensorboard
        self.last_record_step = -1
        self.files: list[Path] = []

    @property
    def state_key(self) -> str:
        return "VideoCallback"

    def setup(self, trainer: L.Trainer, module: Any, stage: str) -> None:
        """Fail fast, before training, if this env cannot render or moviepy is missing."""
        try:
            import moviepy  # noqa: F401
        except ImportError:
            raise ConfigError("video.enabled=true needs the package moviepy") from None
        env = self.env_factory.render_env()
        try:
            env.reset(seed=self.seed + EVAL_SEED_OFFSET)
            frame = env.render()
        except ConfigError:
            raise
        except Exception as e:  # a missing renderer (pygame, OpenGL) fails here, not later
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise ConfigError(f"video: {self.env_factory.id} cannot render: {msg}") from None
        finally:
            env.close()
        if not (isinstance(frame, np.ndarray) and frame.ndim == 3 and frame.dtype == np.uint8):
            raise ConfigError(f"video: {self.env_factory.id} renders no RGB uint8 frames")

    def record(self, trainer: L.Trainer, module: Any) -> None:
        env_step = datamodule_of(trainer).env_steps
        self.dirpath.mkdir(parents=True, exist_ok=True)
        prefix = f"step{env_step:09d}"
        _, frames, fps = record_episodes(
            module,
            self.env_factory,
            folder=self.dirpath,
            name_prefix=prefix,
            episodes=self.episodes,
            seed=self.seed,
            env_step=env_step,
            max_steps=self.max_steps,
            keep_frames=self.tensorboard,
            deterministic=self.deterministic,
        )
        self.files += sorted(self.dirpath.glob(f"{prefix}-episode-*.mp4"))
        if self.tensorboard:
            log_tensorboard_clip(trainer, frames, fps=fps, step=env_step, tag="eval/video")
        self.last_record_step = env_step

    def on_train_batch_end(self, trainer: L.Trainer, module: Any, *args: Any) -> None:
        env_step = datamodule_of(trainer).env_steps
        if self.every > 0 and env_step // self.every > max(self.last_record_step, 0) // self.every:
            self.record(trainer, module)

    def on_train_end(self, trainer: L.Trainer, module: Any) -> None:
        if self.last_record_step != datamodule_of(trainer).env_steps:
            self.record(trainer, module)

    def state_dict(self) -> dict[str, Any]:
        return {"last_record_step": self.last_record_step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.last_record_step = state["last_record_step"]


def read_video(path: Path) -> np.ndarray:
    """Frames ``(T, H, W, 3)`` uint8 of an mp4 (tests and inspection), via moviepy."""
    from moviepy import VideoFileClip

    clip = VideoFileClip(str(path))
    try:
        return np.stack(list(clip.iter_frames()))
    finally:
        clip.close()
