"""``trainer.keep_best``: ``checkpoints/best.ckpt`` holds the weights of the best evaluation so
far, ``results.json`` says which step they are from, and a resumed run continues the
tracking exactly as an uninterrupted one (the best state is part of ``last.ckpt``).

The evaluations are scripted to go up and then down (``SCRIPT``, by env step): the real
evaluation still runs on the real weights (its returns are kept, as are the weights it
saw), only the mean the callback sees is replaced. A ``best.ckpt`` that followed the last
evaluation, or a resumed run that forgot the best before the interruption, fails here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pytest
import torch

import rlbench.callbacks.evaluation
import rlbench.cli
from rlbench.evaluate import evaluate_run
from tests.conftest import DEBUG, resume_in_process, train_in_process

#: env step -> the mean return the evaluation callback is told: up, then down
SCRIPT = {250: 10.0, 500: 30.0, 750: 20.0, 1000: 5.0}
ARGS = [
    *DEBUG,
    "total_env_steps=1000",
    "trainer.eval_every=250",
    "trainer.checkpoint_every=200",
    "network.hidden=[16,16]",
    "algo.train_every=10",  # phases end on env steps 210, 220, ...: evaluations at 250, 500, ...
]
real_evaluate = rlbench.callbacks.evaluation.evaluate


class ScriptedEvaluations:
    """Stands in for ``callbacks.evaluation.evaluate``: runs the real one (returns in
    ``real``), keeps the weights it evaluated (``weights``), both by env step, and returns
    ``SCRIPT[env step]`` for every episode."""

    def __init__(self) -> None:
        self.real: dict[int, np.ndarray] = {}
        self.weights: dict[int, dict[str, torch.Tensor]] = {}

    def __call__(self, module: Any, env_factory: Any, **kwargs: Any) -> np.ndarray:
        step = int(module.trainer.datamodule.env_steps)
        self.real[step] = real_evaluate(module, env_factory, **kwargs)
        self.weights[step] = {
            k: v.detach().clone()
            for k, v in module.state_dict().items()
            if isinstance(v, torch.Tensor)
        }
        return np.full(kwargs["episodes"], SCRIPT[step])


class InterruptAtEnvStep(L.Callback):
    """Acts like a Ctrl-C once the DataModule has collected ``env_step`` env steps."""

    def __init__(self, env_step: int) -> None:
        self.env_step = env_step

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.datamodule.env_steps >= self.env_step:  # type: ignore[attr-defined]
            callbacks = trainer.callbacks  # type: ignore[attr-defined]
            next(
                cb for cb in callbacks if type(cb).__name__ == "CheckpointCallback"
            ).interrupted = True


def scripted_run(
    run_dir: Path, monkeypatch: pytest.MonkeyPatch, *extra: str, interrupt_at: int | None = None
) -> tuple[dict[str, object], ScriptedEvaluations]:
    scripted = ScriptedEvaluations()
    build = rlbench.cli.build

    def build_with_interrupt(*a: Any, **kw: Any) -> tuple[Any, Any, Any]:
        module, datamodule, trainer = build(*a, **kw)
        if interrupt_at is not None:
            trainer.callbacks.append(InterruptAtEnvStep(interrupt_at))
        return module, datamodule, trainer

    run_dir.mkdir(parents=True, exist_ok=True)
    with monkeypatch.context() as m:
        m.setattr(rlbench.callbacks.evaluation, "evaluate", scripted)
        m.setattr(rlbench.cli, "build", build_with_interrupt)
        results = train_in_process(run_dir, [*ARGS, *extra])
    return results, scripted


def scripted_resume(
    run_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[dict[str, object], ScriptedEvaluations]:
    scripted = ScriptedEvaluations()
    with monkeypatch.context() as m:
        m.setattr(rlbench.callbacks.evaluation, "evaluate", scripted)
        results = resume_in_process(run_dir, [])
    return results, scripted


Straight = tuple[Path, ScriptedEvaluations, dict[str, object]]


def load(path: Path) -> dict[str, Any]:
    return torch.load(path, weights_only=True)


def same_weights(a: dict[str, Any], b: dict[str, Any]) -> bool:
    tensors = [k for k, v in a.items() if isinstance(v, torch.Tensor)]
    return set(tensors) == {k for k, v in b.items() if isinstance(v, torch.Tensor)} and all(
        torch.equal(a[k], b[k]) for k in tensors
    )


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory) -> Straight:
    """One uninterrupted scripted run, shared: its dir, evaluations and results."""
    with pytest.MonkeyPatch.context() as mp:
        run_dir = tmp_path_factory.mktemp("straight")
        results, scripted = scripted_run(run_dir, mp)
    assert results["status"] == "completed", results
    assert sorted(scripted.weights) == sorted(SCRIPT)
    return run_dir, scripted, results


def test_best_checkpoint_holds_the_weights_of_the_best_evaluation(straight: Straight) -> None:
    run_dir, scripted, results = straight
    assert results["eval_return_mean"] == SCRIPT[1000]  # the last evaluation is the result
    assert results["best_eval_step"] == 500
    assert results["best_eval_return_mean"] == SCRIPT[500]
    assert results["best_checkpoint"] == "checkpoints/best.ckpt"

    best = load(run_dir / "checkpoints" / "best.ckpt")
    assert best["rlbench_best"]["env_step"] == 500
    assert best["rlbench_best"]["eval_return_mean"] == SCRIPT[500]
    assert same_weights(best["state_dict"], scripted.weights[500])
    # the weights did change after the best evaluation: a best.ckpt that followed later
    # evaluations (or the last one) would hold these
    for later in (750, 1000):
        assert not same_weights(best["state_dict"], scripted.weights[later]), later
    assert same_weights(
        load(run_dir / "checkpoints" / "last.ckpt")["state_dict"], scripted.weights[1000]
    )
    # no optimizer, replay or DataModule state in it: the weights and their evaluation
    assert set(best) == {"state_dict", "rlbench_best", "eval_envs"}


def test_evaluating_the_best_checkpoint_replays_that_evaluation(straight: Straight) -> None:
    run_dir, scripted, _ = straight
    out, path = evaluate_run(run_dir, checkpoint="best")
    assert out["checkpoint_env_step"] == 500
    assert out["returns"] == [float(r) for r in scripted.real[500]]
    assert path.parent == run_dir / "eval"


def test_a_resumed_run_continues_best_tracking_identically(
    straight: Straight, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cut after the best (500) and before the next evaluation (750, lower than the best
    but the first one the resumed process sees): the resumed run must still call 500 the
    best, and put back the best.ckpt that a crash after the checkpoint could have left
    from a timeline that never happened."""
    reference, _, straight_results = straight
    cut = tmp_path / "cut"
    first, _ = scripted_run(cut, monkeypatch, interrupt_at=600)
    assert first["status"] == "interrupted" and 600 <= int(str(first["env_steps"])) < 750
    assert first["best_eval_step"] == 500

    saved = load(cut / "checkpoints" / "last.ckpt")["callbacks"]["EvalCallback"]
    assert saved["best"]["env_step"] == 500
    assert same_weights(
        saved["best_weights"], load(cut / "checkpoints" / "best.ckpt")["state_dict"]
    )

    # a best.ckpt from "after" the checkpoint (as if the run crashed after a new best)
    stale = load(reference / "checkpoints" / "last.ckpt")
    torch.save(
        {
            "state_dict": stale["state_dict"],
            "rlbench_best": {"env_step": 750, "eval_return_mean": 99.0},
            "eval_envs": None,
        },
        cut / "checkpoints" / "best.ckpt",
    )
    resumed, scripted = scripted_resume(cut, monkeypatch)
    assert sorted(scripted.weights) == [750, 1000]
    assert resumed["status"] == "completed"
    for key in ("best_eval_step", "best_eval_return_mean", "best_checkpoint", "eval_return_mean"):
        assert resumed[key] == straight_results[key], key
    a, b = load(cut / "checkpoints" / "best.ckpt"), load(reference / "checkpoints" / "best.ckpt")
    assert a["rlbench_best"] == b["rlbench_best"]
    assert same_weights(a["state_dict"], b["state_dict"])


def test_keep_best_false_writes_no_best_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    results, _ = scripted_run(tmp_path, monkeypatch, "trainer.keep_best=false")
    assert not (tmp_path / "checkpoints" / "best.ckpt").exists()
    assert results["best_eval_step"] == 500  # still reported
    assert results["best_checkpoint"] is None
    saved = load(tmp_path / "checkpoints" / "last.ckpt")["callbacks"]["EvalCallback"]
    assert saved["best_weights"] is None  # nothing kept for a file that is not written
