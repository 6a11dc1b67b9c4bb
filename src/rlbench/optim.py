"""Optimizers: ``torch.optim.Adam`` with a lean fused step for small networks.

A CartPole DQN update costs well under a millisecond, and about a sixth of it went to the
Python around torch's fused Adam kernel: ``Optimizer.step`` re-collects every parameter's
state, re-checks each option and regroups the tensors by device on every call (about 140
us against 40 us for the kernel call alone, measured inside the training loop on the dev
machine). ``Adam`` here is ``torch.optim.Adam`` -- same arguments, same state and
``state_dict``, same kernel -- that caches those lists after the first step and calls the
kernel directly. Anything the cache does not cover takes torch's own ``step``.

torch also wraps every optimizer's ``step`` in a profiler range and its step-hook loops
(about 40 us a step in that loop, mostly the ``record_function``). ``Adam.step`` goes
through that same wrapper whenever it could matter -- a step hook registered, globally or
on this optimizer, or a profiler running -- and skips it otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.optim import optimizer as _torch_optimizer

__all__ = ["Adam"]

# one param group as the kernel takes it: (group, its params list, exp_avgs, exp_avg_sqs, steps)
_Lean = tuple[dict[str, Any], list[Tensor], list[Tensor], list[Tensor], list[Tensor]]


def _torch_step(opt: torch.optim.Adam, closure: Callable[[], float] | None) -> float | None:
    """``torch.optim.Adam.step`` without torch's hook wrapper: ``Adam.step`` below already
    decided whether to run inside it, so the step hooks must not run twice. (torch wraps a
    class's ``step`` when the first instance of that class is built.)"""
    step = torch.optim.Adam.step
    if getattr(step, "hooked", False):
        step = step.__wrapped__  # type: ignore[attr-defined]
    return step(opt, closure)


def _observed(opt: torch.optim.Optimizer) -> bool:
    """Whether a step hook or a profiler would see this step (then torch's wrapper runs)."""
    return bool(
        opt._optimizer_step_pre_hooks
        or opt._optimizer_step_post_hooks
        or _torch_optimizer._global_optimizer_pre_hooks
        or _torch_optimizer._global_optimizer_post_hooks
        or torch._C._autograd._profiler_enabled()
    )


class Adam(torch.optim.Adam):
    """``torch.optim.Adam`` whose ``fused=True`` step skips torch's per-step bookkeeping.

    Identical results to ``torch.optim.Adam(..., fused=True)`` (the same ``_fused_adam_``
    / ``_fused_adamw_`` kernel on the same tensors; tested bit for bit), and the same
    ``state_dict``, so checkpoints move freely between the two. Step hooks and the profiler
    range run whenever there are any (see the module docstring). The lean path covers what
    rlbench uses -- fused, float learning rates, no AMSGrad, every parameter of a group with
    a gradient on one device and dtype, no closure and no grad scaler -- and falls back to
    ``torch.optim.Adam.step`` for everything else.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lean: list[_Lean] | None = None

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self._lean = None  # the state tensors were replaced

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        self._lean = None

    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """One Adam step (see the class docstring for when torch's own step runs)."""
        if _observed(self):
            return _hooked_step(self, closure)
        return self._step(closure)

    # torch's Optimizer.__init__ wraps a class's ``step`` unless it is marked as hooked:
    # ``step`` above takes torch's wrapper itself, only when something would observe it
    step.hooked = True  # type: ignore[attr-defined]

    @torch.no_grad()
    def _step(self, closure: Callable[[], float] | None) -> float | None:
        grads = self._lean_grads() if closure is None else None
        if grads is None:
            loss = _torch_step(self, closure)
            self._lean = self._build_lean()
            return loss
        assert self._lean is not None
        for (group, params, exp_avgs, exp_avg_sqs, steps), group_grads in zip(
            self._lean, grads, strict=True
        ):
            beta1, beta2 = group["betas"]
            torch._foreach_add_(steps, 1)
            kernel = torch._fused_adamw_ if group["decoupled_weight_decay"] else torch._fused_adam_
            kernel(
                params,
                group_grads,
                exp_avgs,
                exp_avg_sqs,
                [],
                steps,
                amsgrad=False,
                lr=group["lr"],
                beta1=beta1,
                beta2=beta2,
                weight_decay=group["weight_decay"],
                eps=group["eps"],
                maximize=group["maximize"],
            )
        return None

    def _lean_grads(self) -> list[list[Tensor]] | None:
        """Every cached group's gradients, or ``None`` when torch's own step must run: no
        cache, a grad scaler attached, a group's params replaced, or a gradient missing
        (checked for all groups before any is stepped)."""
        if (
            self._lean is None
            or getattr(self, "grad_scale", None) is not None
            or getattr(self, "found_inf", None) is not None
        ):
            return None
        grads = []
        for group, params, *_ in self._lean:
            group_grads = [p.grad for p in params]
            if group["params"] is not params or any(g is None for g in group_grads):
                return None
            grads.append(group_grads)
        return grads  # type: ignore[return-value]

    def _build_lean(self) -> list[_Lean] | None:
        """The cached kernel arguments per group, or ``None`` where the lean path does not
        apply (then every step is torch's own)."""
        lean: list[_Lean] = []
        for group in self.param_groups:
            params: list[Tensor] = group["params"]
            if (
                not group.get("fused")
                or group["amsgrad"]
                or group["capturable"]
                or group["differentiable"]
                or isinstance(group["lr"], Tensor)
                or isinstance(group["betas"][0], Tensor)
                or isinstance(group["betas"][1], Tensor)
                or not params
                or len({(p.device, p.dtype) for p in params}) != 1
                or any(p.is_complex() or p not in self.state for p in params)
            ):
                return None
            states = [self.state[p] for p in params]
            lean.append(
                (
                    group,
                    params,  # the group's own list: replacing it invalidates the cache
                    [s["exp_avg"] for s in states],
                    [s["exp_avg_sq"] for s in states],
                    [s["step"] for s in states],
                )
            )
        return lean


# torch's own hook-and-profiler wrapper, around the step without it
_hooked_step = torch.optim.Optimizer.profile_hook_step(Adam._step)
