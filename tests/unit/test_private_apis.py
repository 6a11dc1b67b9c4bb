"""Guards for the private torch / Lightning / TensorBoard internals rlbench relies on.

rlbench keeps a private-API speed shortcut only where it buys at least 3% of a benchmark's
training loop (``scripts/bench_shortcuts.py``), and a private call elsewhere only where no
public path exists (TensorBoard's raw summary writer); the README's performance notes list
them. Each test here
pins what one of them relies on -- that the private thing exists, takes the arguments rlbench
passes, and behaves like the public path it replaces -- and fails with a message naming the
shortcut, so that a torch or Lightning upgrade that changes it breaks the build instead of
silently changing results or skipping hooks. When one fails: adapt the shortcut to the new
version, or remove it and go back to the public path.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

UPGRADE = "(torch {torch}, lightning {lightning}): adapt {what} to it, or remove that shortcut"


def _broken(what: str) -> str:
    import lightning

    return "a pinned dependency changed " + UPGRADE.format(
        torch=torch.__version__, lightning=lightning.__version__, what=what
    )


# ---------------------------------------------------------------- torch._foreach_* ops
def test_foreach_clip_matches_torchs_clip_grad_norm() -> None:
    """``algos.base.clip_grad_norm_`` (``torch._foreach_norm`` / ``_foreach_mul_``) against
    ``torch.nn.utils.clip_grad_norm_``, above and below the bound."""
    from rlbench.algos.base import clip_grad_norm_

    what = "rlbench.algos.base.clip_grad_norm_ (torch._foreach_norm / _foreach_mul_)"
    for scale, max_norm in ((10.0, 1.0), (0.01, 10.0)):
        torch.manual_seed(0)
        a = [torch.randn(3, 4, requires_grad=True), torch.randn(5, requires_grad=True)]
        b = [t.detach().clone().requires_grad_(True) for t in a]
        for params in (a, b):
            (sum((p**2).sum() for p in params) * scale).backward()  # type: ignore[union-attr]
        try:
            norm_a = clip_grad_norm_(a, max_norm)
        except (AttributeError, TypeError, RuntimeError) as e:
            pytest.fail(f"{what} no longer runs: {e}: {_broken(what)}")
        norm_b = torch.nn.utils.clip_grad_norm_(b, max_norm)
        torch.testing.assert_close(norm_a, norm_b, msg=lambda m: f"{m}\n{_broken(what)}")
        for x, y in zip(a, b, strict=True):
            torch.testing.assert_close(x.grad, y.grad, msg=lambda m: f"{m}\n{_broken(what)}")


# ---------------------------------------------------------------- TensorBoard
def test_tensorboard_writer_takes_a_raw_summary(tmp_path: Path) -> None:
    """``callbacks/video.py`` writes its GIF summary through ``SummaryWriter._get_file_writer()
    .add_summary`` (``add_video`` needs ``moviepy.editor``, which moviepy 2 removed)."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from torch.utils.tensorboard import SummaryWriter
    from torch.utils.tensorboard.summary import Summary

    what = "callbacks/video.py's log_tensorboard_clip (SummaryWriter._get_file_writer)"
    writer = SummaryWriter(str(tmp_path))
    get = getattr(writer, "_get_file_writer", None)
    assert callable(get), f"SummaryWriter has no _get_file_writer: {_broken(what)}"
    file_writer = get()
    assert callable(getattr(file_writer, "add_summary", None)), _broken(what)
    image = Summary.Image(height=1, width=1, colorspace=3, encoded_image_string=b"GIF89a")
    file_writer.add_summary(Summary(value=[Summary.Value(tag="clip", image=image)]), 7)
    writer.close()
    acc = EventAccumulator(str(tmp_path))
    acc.Reload()
    assert "clip" in acc.Tags()["images"], f"the raw summary was not written: {_broken(what)}"
    assert [e.step for e in acc.Images("clip")] == [7]
