"""rlbench.optim.Adam: bit-identical to torch's fused Adam, same state, safe fallbacks."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from rlbench.optim import Adam


def _net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))


def _train(opt_cls: Any, steps: int, *, seed: int = 0, **kwargs: Any) -> nn.Module:
    net = _net(seed)
    opt = opt_cls(net.parameters(), **kwargs)
    gen = torch.Generator().manual_seed(1)
    for i in range(steps):
        x = torch.randn(8, 4, generator=gen)
        for p in net.parameters():
            p.grad = None
        net(x).pow(2).mean().backward()
        if i == steps // 2:
            for group in opt.param_groups:  # learning-rate schedules write the group
                group["lr"] *= 0.5
        opt.step()
    return net


@pytest.mark.parametrize(
    "kwargs",
    [
        {"lr": 1e-2},
        {"lr": 1e-2, "weight_decay": 0.1},
        {"lr": 1e-2, "weight_decay": 0.1, "decoupled_weight_decay": True},
        {"lr": 3e-3, "betas": (0.8, 0.99), "eps": 1e-5, "maximize": True},
        {"lr": 1e-2, "amsgrad": True},  # not covered by the lean path: torch's own step
    ],
)
def test_matches_torch_fused_adam_bit_for_bit(kwargs: dict[str, Any]) -> None:
    ours = _train(Adam, 12, fused=True, **kwargs)
    ref = _train(torch.optim.Adam, 12, fused=True, **kwargs)
    for a, b in zip(ours.parameters(), ref.parameters(), strict=True):
        assert torch.equal(a, b)


def test_unfused_adam_is_torchs_own() -> None:
    ours = _train(Adam, 6, lr=1e-2)
    ref = _train(torch.optim.Adam, 6, lr=1e-2)
    for a, b in zip(ours.parameters(), ref.parameters(), strict=True):
        assert torch.equal(a, b)


def test_lean_path_is_taken_after_the_first_step() -> None:
    net = _net(0)
    opt = Adam(net.parameters(), lr=1e-2, fused=True)
    assert opt._lean is None
    net(torch.ones(2, 4)).sum().backward()
    opt.step()
    assert opt._lean is not None
    assert not Adam([torch.zeros(2, requires_grad=True)], lr=1.0)._build_lean()  # unfused


def _grads(net: nn.Module, seed: int) -> None:
    for p in net.parameters():
        p.grad = None
    net(torch.randn(8, 4, generator=torch.Generator().manual_seed(seed))).pow(2).sum().backward()


def test_state_dict_round_trips_with_torch_adam() -> None:
    a, b = _net(0), _net(0)
    opt_a = Adam(a.parameters(), lr=1e-2, fused=True)
    opt_b = torch.optim.Adam(b.parameters(), lr=1e-2, fused=True)
    for seed in range(3):
        for net, opt in ((a, opt_a), (b, opt_b)):
            _grads(net, seed)
            opt.step()
    # swap optimizer states: each continues from the other's state dict
    state_a, state_b = opt_a.state_dict(), opt_b.state_dict()
    opt_a.load_state_dict(state_b)
    opt_b.load_state_dict(state_a)
    assert opt_a._lean is None  # the cached state tensors were replaced
    for seed in range(3, 6):
        for net, opt in ((a, opt_a), (b, opt_b)):
            _grads(net, seed)
            opt.step()
    for x, y in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(x, y)
    for key in ("exp_avg", "exp_avg_sq", "step"):
        for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
            assert torch.equal(opt_a.state[pa][key], opt_b.state[pb][key])


def test_missing_gradient_falls_back_like_torch() -> None:
    """A parameter without a gradient is skipped (no state update), as torch does."""
    results = []
    for cls in (Adam, torch.optim.Adam):
        net = _net(0)
        opt = cls(net.parameters(), lr=1e-2, fused=True)
        for seed in range(4):
            _grads(net, seed)
            if seed == 2:
                net[2].bias.grad = None
            opt.step()
        results.append((net, opt))
    (a, opt_a), (b, opt_b) = results
    assert int(opt_b.state[b[2].bias]["step"]) == 3  # torch skips it too
    for x, y in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(x, y)
    assert int(opt_a.state[a[2].bias]["step"]) == 3
    assert int(opt_a.state[a[0].weight]["step"]) == 4


def test_step_hooks_still_run() -> None:
    net = _net(0)
    opt = Adam(net.parameters(), lr=1e-2, fused=True)
    calls: list[str] = []
    opt.register_step_pre_hook(lambda *_: calls.append("pre"))
    opt.register_step_post_hook(lambda *_: calls.append("post"))
    for seed in range(2):  # the first step is torch's, the second the lean one
        _grads(net, seed)
        opt.step()
    assert calls == ["pre", "post", "pre", "post"]


def test_step_hooks_run_once_when_torch_adam_was_never_built() -> None:
    """torch wraps ``Adam.step`` only once a plain torch Adam exists: check the other case
    in a fresh interpreter."""
    import subprocess
    import sys

    code = """
import torch
from rlbench.optim import Adam
p = torch.zeros(3, requires_grad=True)
opt = Adam([p], lr=0.1, fused=True)
calls = []
opt.register_step_pre_hook(lambda *_: calls.append("pre"))
for _ in range(2):
    p.grad = torch.ones(3)
    opt.step()
assert not getattr(torch.optim.Adam.step, "hooked", False)
assert calls == ["pre", "pre"], calls
"""
    subprocess.run([sys.executable, "-c", code], check=True)


def test_profiler_still_sees_the_step() -> None:
    """Without hooks the step skips torch's wrapper, except while a profiler runs."""
    net = _net(0)
    opt = Adam(net.parameters(), lr=1e-2, fused=True)
    for seed in range(2):
        _grads(net, seed)
        opt.step()
    _grads(net, 2)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        opt.step()
    names = {e.key for e in prof.key_averages()}
    assert "Optimizer.step#Adam.step" in names
