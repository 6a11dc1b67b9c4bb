"""Videos where users first try them: the default env (CartPole, drawn by pygame) and MuJoCo
(offscreen, with the fast render settings)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import DEBUG, run_cli


def test_cartpole_debug_run_with_video_writes_an_mp4(tmp_path: Path) -> None:
    from rlbench.callbacks.video import read_video

    proc = run_cli([*DEBUG, f"hydra.run.dir={tmp_path}", "video.enabled=true"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    # no noise from pygame's SDL (e.g. "error: XDG_RUNTIME_DIR is invalid or not set")
    assert not [ln for ln in proc.stderr.splitlines() if ln.startswith("error")], proc.stderr
    videos = sorted((tmp_path / "videos").glob("*.mp4"))
    assert [v.name for v in videos] == ["step000001000-episode-0.mp4"]
    frames = read_video(videos[0])
    assert frames.shape[0] >= 5 and frames.shape[1:] == (400, 600, 3)
    assert frames.std() > 0


def test_mujoco_render_env_uses_the_fast_settings() -> None:
    pytest.importorskip("mujoco")
    from rlbench.envs.mujoco import MuJoCoFactory, RenderSettings

    default = RenderSettings()
    assert (default.width, default.height) == (320, 320)
    assert not default.shadows and default.multisamples == 0 and not default.reflections

    env = MuJoCoFactory(id="HalfCheetah-v5").render_env()
    try:
        model = env.unwrapped.model  # type: ignore[attr-defined]
        assert model.vis.quality.shadowsize == 0
        assert model.vis.quality.offsamples == 0
        assert np.all(model.mat_reflectance == 0)
        env.reset(seed=0)
        frame = env.render()
        assert isinstance(frame, np.ndarray) and frame.dtype == np.uint8
        assert frame.shape == (320, 320, 3) and frame.std() > 0
    finally:
        env.close()

    # the model's own look, at another size, when asked for (not rendered: slow without GPU)
    settings = RenderSettings(width=160, height=120, shadows=True, multisamples=4, reflections=True)
    env = MuJoCoFactory(id="HalfCheetah-v5", render_settings=settings).render_env()
    try:
        model = env.unwrapped.model  # type: ignore[attr-defined]
        assert model.vis.quality.shadowsize == 4096
        assert model.vis.quality.offsamples == 4
        assert np.any(model.mat_reflectance > 0)
        assert (env.unwrapped.width, env.unwrapped.height) == (160, 120)  # type: ignore[attr-defined]
    finally:
        env.close()

    # training envs are not touched
    train = MuJoCoFactory(id="HalfCheetah-v5").single_env_fn()()
    try:
        assert train.unwrapped.model.vis.quality.shadowsize == 4096  # type: ignore[attr-defined]
    finally:
        train.close()
