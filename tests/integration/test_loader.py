"""``rlbench.load``: a trained agent as a ``Policy`` for plain Gymnasium envs, outside the
CLI. It plays the same episodes the run's evaluation plays (the README example included),
applies the run's MuJoCo observation normalization itself, marks first observations for
stateful actors, and fails in one line on what is not a run or a policy file."""

from __future__ import annotations

import pickle
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

import rlbench
from rlbench.callbacks.evaluation import evaluate
from rlbench.data.protocol import Actor
from rlbench.envs import EVAL_SEED_OFFSET
from rlbench.errors import CheckpointError, ConfigError
from rlbench.evaluate import Policy, SavedTrainingEnvs, export_policy, make_env_factory
from tests.conftest import DEBUG, ROOT, train_in_process

SMALL = [*DEBUG, "network.hidden=[16,16]", "trainer.eval_episodes=3"]


def train(run_dir: Path, *args: str) -> tuple[Path, dict[str, Any]]:
    run_dir.mkdir(parents=True, exist_ok=True)
    results = train_in_process(run_dir, list(args))
    assert results["status"] == "completed", results
    return run_dir, results


@pytest.fixture(scope="module")
def dqn_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    return train(tmp_path_factory.mktemp("dqn"), *SMALL, "total_env_steps=1500")


@pytest.fixture(scope="module")
def mujoco_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """PPO on InvertedPendulum with observation normalization (moments far from 0 and 1)."""
    return train(
        tmp_path_factory.mktemp("mujoco"),
        *[a for a in SMALL if not a.startswith("algo.")],
        "algo=ppo",
        "algo.num_steps=64",
        "env=inverted_pendulum",
        "env.normalize_obs=true",
        "total_env_steps=1000",
    )


def play(policy: Policy, env: gym.Env[Any, Any], *, seed: int) -> float:
    """One episode of ``env`` (reset with ``seed``), as a user of ``rlbench.load`` plays it."""
    obs, _ = env.reset(seed=seed)
    policy.reset()
    total, done = 0.0, False
    while not done:
        obs, reward, terminated, truncated, _ = env.step(policy.act(obs))
        total += float(reward)
        done = bool(terminated or truncated)
    return total


def test_loader_plays_the_runs_evaluation_episodes_in_a_plain_env(
    dqn_run: tuple[Path, dict[str, Any]],
) -> None:
    run_dir, results = dqn_run
    policy = rlbench.load(run_dir)  # best.ckpt by default
    assert policy.source.endswith("best.ckpt")
    assert policy.trained_env_steps == results["best_eval_step"]
    last = rlbench.load(run_dir, "last")
    assert last.trained_env_steps == 1500 and last.deterministic is True
    env = gym.make("CartPole-v1")
    factory = make_env_factory(last.config).for_evaluation()
    for seed in (0, 1, 2):
        # evaluation episode 0 of seed s is an env reset with s + EVAL_SEED_OFFSET
        expected = evaluate(last.module, factory, episodes=1, seed=seed)
        assert play(last, env, seed=seed + EVAL_SEED_OFFSET) == float(expected[0])
    # best.ckpt's weights evaluated with the run's seed are its best evaluation
    best_returns = [play(policy, env, seed=EVAL_SEED_OFFSET + j) for j in range(3)]
    assert np.mean(best_returns) == pytest.approx(results["best_eval_return_mean"])


def test_readme_example_runs(
    dqn_run: tuple[Path, dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    (code,) = [b for b in blocks if "rlbench.load(" in b and "gym.make(" in b]
    assert len([ln for ln in code.splitlines() if ln.strip()]) <= 11
    path = re.search(r'rlbench\.load\("([^"]+)"\)', code)
    assert path is not None
    exec(code.replace(path.group(1), str(dqn_run[0])), {})
    assert float(capsys.readouterr().out.strip().splitlines()[-1]) >= 8.0


def test_loader_normalizes_observations_with_the_saved_statistics(
    mujoco_run: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    run_dir, _ = mujoco_run
    policy = rlbench.load(run_dir, "last")
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    state = next(v for k, v in ckpt.items() if k.endswith("DataModule"))
    moments = pickle.loads(state["envs"]).obs_moments
    norm = policy.obs_normalization
    assert norm is not None
    np.testing.assert_array_equal(norm["mean"].numpy(), moments.mean)
    np.testing.assert_array_equal(norm["var"].numpy(), moments.var)
    assert np.abs(moments.mean).max() > 1e-3  # not the identity: the test means something

    # plain InvertedPendulum-v5: raw observations in, the run's evaluation episode out
    env = gym.make("InvertedPendulum-v5")
    factory = make_env_factory(policy.config).for_evaluation(
        training_envs=SavedTrainingEnvs.of(ckpt, where="last.ckpt")
    )
    path = tmp_path / "policy.pt"
    export_policy(run_dir, path)
    exported = rlbench.load(path)
    for seed in (0, 1):
        expected = float(evaluate(policy.module, factory, episodes=1, seed=seed)[0])
        assert play(policy, env, seed=seed + EVAL_SEED_OFFSET) == expected
        assert play(exported, env, seed=seed + EVAL_SEED_OFFSET) == expected

    # best.ckpt carries the statistics of its own evaluation
    best = rlbench.load(run_dir)
    saved = torch.load(run_dir / "checkpoints" / "best.ckpt", weights_only=True)
    assert best.obs_normalization is not None and saved["eval_envs"] is not None
    best_moments = pickle.loads(saved["eval_envs"]).obs_moments
    np.testing.assert_array_equal(best.obs_normalization["mean"].numpy(), best_moments.mean)
    assert policy.make_env().observation_space.shape == policy.observation_space.shape


class RecordingActor:
    """An evaluation actor that records what it is given (a stateful actor's view)."""

    def __init__(self, num_envs: int) -> None:
        self.num_envs = num_envs
        self.env_step = 0
        self.firsts: list[list[bool]] = []

    def act(self, obs: np.ndarray, *, first: np.ndarray) -> np.ndarray:
        assert obs.shape == (self.num_envs, 2) and first.shape == (self.num_envs,)
        self.firsts.append(first.tolist())
        return np.arange(self.num_envs)

    def state_dict(self) -> dict[str, Any]:
        return {"firsts": list(self.firsts)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.firsts = list(state["firsts"])


class StubModule:
    observation_space = gym.spaces.Box(-1.0, 1.0, shape=(2,))
    action_space = gym.spaces.Discrete(4)

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def make_actor(self, **kwargs: Any) -> RecordingActor:
        self.calls.append(kwargs)
        return RecordingActor(kwargs["num_envs"])


def test_policy_marks_first_observations_and_is_an_actor() -> None:
    module = StubModule()
    policy = Policy(module, config=OmegaConf.create({}), deterministic=False, seed=3)
    assert module.calls == [
        {"num_envs": 1, "mode": "eval", "deterministic": False, "seed": 3 + EVAL_SEED_OFFSET}
    ]
    assert isinstance(policy, Actor)
    obs = np.zeros(2, dtype=np.float32)
    assert policy.act(obs) == 0
    policy.act(obs)
    policy.reset()
    policy.act(obs)
    policy.act(obs)
    actor = policy.actor
    assert isinstance(actor, RecordingActor)
    assert actor.firsts == [[True], [False], [True], [False]]
    saved = policy.state_dict()
    policy.reset()
    policy.load_state_dict(saved)
    policy.act(obs)
    assert actor.firsts[-1] == [False]

    batched = Policy(StubModule(), config=OmegaConf.create({}), num_envs=3)
    first = np.array([True, False, True])
    np.testing.assert_array_equal(batched.act(np.zeros((3, 2)), first=first), [0, 1, 2])
    with pytest.raises(ValueError, match="takes one observation"):
        batched.act(np.zeros(2))


def test_load_errors(dqn_run: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    run_dir, _ = dqn_run
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a policy")
    with pytest.raises(CheckpointError, match="corrupt policy file"):
        rlbench.load(garbage)
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, other)
    with pytest.raises(CheckpointError, match="not an exported rlbench policy"):
        rlbench.load(other)
    with pytest.raises(CheckpointError, match="not a run dir"):
        rlbench.load(tmp_path)
    with pytest.raises(ConfigError, match="allowed last, best"):
        rlbench.load(run_dir, "worst")
    with pytest.raises(CheckpointError, match="does not fit"):
        rlbench.load(run_dir, env_overrides=["id=Acrobot-v1"])


def test_import_rlbench_stays_light() -> None:
    code = "import sys, rlbench; print('torch' in sys.modules, callable(rlbench.load))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.stdout.split() == ["False", "True"], proc.stderr
