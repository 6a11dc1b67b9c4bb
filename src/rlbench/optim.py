"""Optimizers: ``torch.optim.Adam`` with a lean fused step for small networks.

A CartPole DQN update costs well under a millisecond, and about a sixth of it went to the
Python around torch's fused Adam kernel: ``Optimizer.step`` re-collects every parameter's
state, re-checks each option and regroups the tensors by device on every call (about 140
us against 40 us for the kernel call alone, measured inside the training loop on the dev
machine). ``Adam`` here is ``torch.optim.Adam`` -- same arguments, same state and
``state_dict``, same kernel -- that caches those lists after the first step and calls the
kernel directly. Anything the cache does not cover takes torch's own ``step``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

__all__ = ["Adam"]

# (params, exp_avgs, exp_avg_sqs, state_steps) of one param group, as the kernel takes them
_GroupLists = tuple[list[Tensor], list[Tensor], list[Tensor], list[Tensor]]


def _torch_step(opt: torch.optim.Adam, closure: Callable[[], float] | None) -> float | None:
    """``torch.optim.Adam.step`` without torch's hook wrapper: ``Adam.step`` below already
    runs inside it, so the step hooks must not run twice. (torch wraps a class's ``step``
    when the first instance of that class is built.)"""
    step = torch.optim.Adam.step
    if getattr(step, "hooked", False):
        step = step.__wrapped__  # type: ignore[attr-defined]
    return step(opt, closure)


class Adam(torch.optim.Adam):
    """``torch.optim.Adam`` whose ``fused=True`` step skips torch's per-step bookkeeping.

    Identical results to ``torch.optim.Adam(..., fused=True)`` (the same ``_fused_adam_``
    / ``_fused_adamw_`` kernel on the same tensors; tested bit for bit), and the same
    ``state_dict``, so checkpoints move freely between the two. Step hooks and the profiler
    range still run (torch wraps ``step`` itself). The lean path covers what rlbench uses --
    fused, float learning rates, no AMSGrad, every parameter of a group with a gradient on
    one device and dtype, no closure and no grad scaler -- and falls back to
    ``torch.optim.Adam.step`` for everything else.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lean: list[tuple[dict[str, Any], list[Tensor], _GroupLists]] | None = None

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self._lean = None  # the state tensors were replaced

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        self._lean = None

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """One Adam step (see the class docstring for when torch's own step runs)."""
        lean = self._lean
        if (
            closure is not None
            or lean is None
            or getattr(self, "grad_scale", None) is not None
            or getattr(self, "found_inf", None) is not None
        ):
            loss = _torch_step(self, closure)
            self._lean = self._build_lean()
            return loss
        grads_per_group = []
        for group, params_list, _ in lean:
            if group["params"] is not params_list:
                break
            grads = [p.grad for p in params_list]
            if any(g is None for g in grads):
                break
            grads_per_group.append(grads)
        else:
            for (group, _, (params, exp_avgs, exp_avg_sqs, steps)), grads in zip(
                lean, grads_per_group, strict=True
            ):
                beta1, beta2 = group["betas"]
                torch._foreach_add_(steps, 1)
                kernel = (
                    torch._fused_adamw_ if group["decoupled_weight_decay"] else torch._fused_adam_
                )
                kernel(
                    params,
                    grads,
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
        loss = _torch_step(self, None)  # a gradient went missing or the groups changed
        self._lean = self._build_lean()
        return loss

    def _build_lean(self) -> list[tuple[dict[str, Any], list[Tensor], _GroupLists]] | None:
        """The cached kernel arguments per group, or ``None`` where the lean path does not
        apply (then every step is torch's own)."""
        lean = []
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
            lists: _GroupLists = (
                list(params),
                [s["exp_avg"] for s in states],
                [s["exp_avg_sq"] for s in states],
                [s["step"] for s in states],
            )
            lean.append((group, params, lists))
        return lean
