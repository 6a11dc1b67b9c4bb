"""The learning checks' judge (``tests/conftest.py``) on fabricated metrics: it must look at
the policy at the end (the last two evaluations), not at the best evaluation on the way."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.conftest import StopWhenLearned, judge_learning, read_evals

DONE: dict[str, object] = {"status": "completed", "eval_return_mean": 500.0}


def write_metrics(run_dir: Path, evals: list[tuple[int, float]]) -> None:
    """A metrics.csv as the CSV logger writes it: eval rows between training rows."""
    lines = ["env_step,train/loss,eval/return_mean,eval/return_std"]
    for step, ret in evals:
        lines.append(f"{step - 500},0.5,,")
        lines.append(f"{step},,{ret},1.0")
    (run_dir / "metrics.csv").write_text("\n".join(lines) + "\n")


def test_read_evals_takes_the_eval_rows_only(tmp_path: Path) -> None:
    write_metrics(tmp_path, [(5000, 20.0), (10000, 480.5)])
    assert read_evals(tmp_path) == [(5000, 20.0), (10000, 480.5)]


@pytest.mark.parametrize(
    "evals",
    [
        [(5000, 30.0), (10000, 475.0), (15000, 500.0)],
        [(5000, 500.0), (10000, 100.0), (15000, 480.0), (20000, 500.0)],  # a dip on the way
    ],
)
def test_ends_with_two_good_evaluations_passes(evals: list[tuple[int, float]]) -> None:
    judge_learning(evals, DONE, threshold=475)


@pytest.mark.parametrize(
    ("evals", "results", "message"),
    [
        # the best evaluation reached the threshold, the policy at the end did not
        (
            [(5000, 500.0), (10000, 500.0), (15000, 120.0)],
            {**DONE, "eval_return_mean": 120.0},
            "last 2",
        ),
        # the final one alone is not enough
        ([(5000, 100.0), (10000, 300.0), (15000, 500.0)], DONE, "last 2"),
        ([(15000, 500.0)], DONE, "1 evaluations, need at least 2"),
        ([], DONE, "0 evaluations"),
        ([(5000, 500.0), (10000, 500.0)], {**DONE, "status": "failed"}, "failed"),
        # the result must be the final evaluation, not the best one
        (
            [(5000, 480.0), (10000, 476.0)],
            {**DONE, "eval_return_mean": 480.0},
            "'eval_return_mean': 480.0",
        ),
        ([(10000, 500.0), (5000, 500.0)], DONE, "not increasing"),
    ],
)
def test_a_policy_that_does_not_end_learned_fails(
    evals: list[tuple[int, float]], results: dict[str, object], message: str
) -> None:
    with pytest.raises(AssertionError, match=message):
        judge_learning(evals, results, threshold=475)


class EvalCallback:  # found by its class name, as rlbench's own
    def __init__(self) -> None:
        self.last: dict[str, float] | None = None
        self.last_eval_step = -1


def test_training_stops_after_two_good_evaluations_in_a_row() -> None:
    evaluator = EvalCallback()
    trainer: Any = SimpleNamespace(callbacks=[evaluator], should_stop=False)
    stopper = StopWhenLearned(475)
    stops = []
    # batch ends: no eval yet, eval 500, (no new eval), eval 100, eval 480, eval 490
    for step, ret in [(None, None), (1000, 500.0), (1000, 500.0), (2000, 100.0), (3000, 480.0)]:
        if step is not None:
            evaluator.last_eval_step, evaluator.last = step, {"eval/return_mean": ret}
        stopper.on_train_batch_end(trainer)
        stops.append(trainer.should_stop)
    assert stops == [False] * 5  # 500 once (seen twice: one evaluation), then 100, then 480
    evaluator.last_eval_step, evaluator.last = 4000, {"eval/return_mean": 490.0}
    stopper.on_train_batch_end(trainer)
    assert trainer.should_stop
    assert stopper.seen == [(1000, 500.0), (2000, 100.0), (3000, 480.0), (4000, 490.0)]
