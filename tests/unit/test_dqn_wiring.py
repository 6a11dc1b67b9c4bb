"""``DQN.training_step`` wiring, driven by a tiny Lightning Trainer on stubbed replay batches.

Every expectation is recomputed here from copies of the networks taken before each step,
with hand-written maths (elementwise Huber, ``r + discount * max_a Q_target``, a loop-based
C51 projection, the factorized noisy layer written out): importance weights in the loss,
the priorities handed back to the buffer, when and how the target net moves, double Q,
and when noisy nets redraw their noise (per exploring act, per gradient step; evaluation on
the mean weights).
"""

from __future__ import annotations

import copy
import functools
import itertools
from collections.abc import Iterator
from typing import Any

import gymnasium as gym
import lightning as L
import numpy as np
import pytest
import torch
from torch import nn

from rlbench.algos.dqn import DQN
from rlbench.networks.heads import NoisyLinear
from rlbench.networks.mlp import MLP
from rlbench.samplers import Greedy, Scores, _values

OBS = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
NUM_ACTIONS = 3
ACT = gym.spaces.Discrete(NUM_ACTIONS)
B = 6
V_MIN, V_MAX, ATOMS = -2.0, 3.0, 6


# ---------------------------------------------------------------- helpers
class RecordingGreedy(Greedy):
    """Greedy that keeps the Q-values of every call (exploring or not)."""

    def __init__(self) -> None:
        self.seen: list[np.ndarray] = []

    def __call__(
        self, scores: Scores, *, step: int, rng: np.random.Generator, explore: bool = True
    ) -> np.ndarray:
        self.seen.append(np.array(_values(scores), dtype=np.float64))
        return super().__call__(scores, step=step, rng=rng, explore=explore)


def make_dqn(*, noisy: bool = False, **kwargs: Any) -> DQN:
    torch.manual_seed(0)
    options: dict[str, Any] = {
        "lr": 1e-2,
        "batch_size": B,
        "learning_starts": 0,
        "max_grad_norm": 0.0,  # no clipping: gradients compare with the raw loss's
        "target_update_every": 10**9,
        "num_atoms": ATOMS,
        "v_min": V_MIN,
        "v_max": V_MAX,
        **kwargs,
    }
    network = (
        functools.partial(MLP, hidden=[8], noisy=True)
        if noisy
        else functools.partial(MLP, hidden=[8])
    )
    dqn = DQN(
        network=network,
        optimizer=functools.partial(torch.optim.Adam),
        sampler=RecordingGreedy(),
        **options,
    )
    dqn.build_for(OBS, ACT)
    return dqn


def perturb_target(dqn: DQN, *, scale: float = 0.5, seed: int = 1) -> None:
    """Make the target net differ from the online net (they start as copies)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in dqn.target_net.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))


class Handle:
    """A stand-in for ``PriorityHandle``: records what the module hands back."""

    def __init__(self) -> None:
        self.updates: list[torch.Tensor] = []

    def update(self, priorities: Any) -> None:
        self.updates.append(torch.as_tensor(priorities).detach().clone())


def stub_batches(
    env_steps: list[int], *, prioritized: bool = True, seed: int = 0
) -> list[dict[str, Any]]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for env_step in env_steps:
        batch: dict[str, Any] = {
            "obs": torch.randn(B, 3, generator=g),
            "action": torch.randint(NUM_ACTIONS, (B,), generator=g),
            "reward": torch.randn(B, generator=g),
            "next_obs": torch.randn(B, 3, generator=g),
            "discount": torch.where(torch.rand(B, generator=g) < 0.3, 0.0, 0.99),
            "steps": torch.ones(B, dtype=torch.long),
            "env_step": env_step,
        }
        if prioritized:
            batch["weights"] = 0.1 + 2.0 * torch.rand(B, generator=g)
            batch["indices"] = torch.arange(B)
            batch["priorities"] = Handle()
        out.append(batch)
    return out


class Batches(torch.utils.data.IterableDataset):  # type: ignore[type-arg]
    def __init__(self, batches: list[dict[str, Any]]) -> None:
        self.batches = batches

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.batches)


class BatchData(L.LightningDataModule):
    def __init__(self, batches: list[dict[str, Any]]) -> None:
        super().__init__()
        self.batches = batches
        self.observation_space, self.action_space = OBS, ACT
        self.env_steps = 0

    def train_dataloader(self) -> torch.utils.data.DataLoader:  # type: ignore[type-arg]
        return torch.utils.data.DataLoader(Batches(self.batches), batch_size=None)


def noise_of(net: nn.Module) -> list[torch.Tensor]:
    return [m.noise.clone() for m in net.modules() if isinstance(m, NoisyLinear)]


class Step:
    """One gradient step: the nets before the training step, the gradients and the noise
    it used (read when the optimizer steps), and the nets after it."""

    before_online: nn.Module
    before_target: nn.Module
    grads: list[torch.Tensor]
    noise_online: list[torch.Tensor]
    noise_target: list[torch.Tensor]
    noise_enabled: list[bool]
    after_online: nn.Module
    after_target: nn.Module


class Recorder(L.Callback):
    def __init__(self) -> None:
        self.steps: list[Step] = []
        self._current: Step | None = None
        self._stepped = False

    def on_train_start(self, trainer: L.Trainer, dqn: L.LightningModule) -> None:
        assert isinstance(dqn, DQN)
        (opt,) = trainer.optimizers
        opt.register_step_pre_hook(functools.partial(self._pre, dqn))

    def on_train_batch_start(self, trainer: L.Trainer, dqn: L.LightningModule, *_: Any) -> None:
        assert isinstance(dqn, DQN)
        self._current = Step()
        self._current.before_online = copy.deepcopy(dqn.q_net)
        self._current.before_target = copy.deepcopy(dqn.target_net)
        self._stepped = False

    def _pre(self, dqn: DQN, *_: Any) -> None:
        assert self._current is not None and not self._stepped
        self._current.grads = [
            p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in dqn._params
        ]
        self._current.noise_online = noise_of(dqn.q_net)
        self._current.noise_target = noise_of(dqn.target_net)
        self._current.noise_enabled = [
            m.noise_enabled
            for net in (dqn.q_net, dqn.target_net)
            for m in net.modules()
            if isinstance(m, NoisyLinear)
        ]
        self._stepped = True

    def on_train_batch_end(self, trainer: L.Trainer, dqn: L.LightningModule, *_: Any) -> None:
        assert isinstance(dqn, DQN) and self._current is not None
        if not self._stepped:  # the iterator's end: Lightning's last call
            return
        self._current.after_online = copy.deepcopy(dqn.q_net)
        self._current.after_target = copy.deepcopy(dqn.target_net)
        self.steps.append(self._current)


def fit(dqn: DQN, batches: list[dict[str, Any]]) -> Recorder:
    recorder = Recorder()
    trainer = L.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[recorder],
    )
    trainer.fit(dqn, datamodule=BatchData(batches))
    assert len(recorder.steps) == len(batches)
    return recorder


def huber(x: torch.Tensor) -> torch.Tensor:
    """Elementwise Huber with delta 1, written out."""
    return torch.where(x.abs() < 1.0, 0.5 * x * x, x.abs() - 0.5)


def params_equal(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def scalar_td(
    online: nn.Module, target: nn.Module, batch: dict[str, Any], *, double: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(Q(s, a) (B,) with grad, target (B,))`` from the given nets, by hand."""
    q = online(batch["obs"])
    q_taken = torch.stack([q[i, int(batch["action"][i])] for i in range(B)])
    with torch.no_grad():
        next_t = target(batch["next_obs"])
        best = (online(batch["next_obs"]) if double else next_t).argmax(dim=1)
        next_v = torch.stack([next_t[i, int(best[i])] for i in range(B)])
        y = batch["reward"] + batch["discount"] * next_v
    return q_taken, y


def grads_of(loss: torch.Tensor, net: nn.Module) -> list[torch.Tensor]:
    params = list(net.parameters())
    grads = torch.autograd.grad(loss, params, allow_unused=True, retain_graph=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads, strict=True)]


def assert_grads_close(got: list[torch.Tensor], expected: list[torch.Tensor]) -> None:
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------- scalar heads
@pytest.mark.parametrize("double", [False, True], ids=["dqn", "double"])
def test_importance_weights_scale_the_huber_loss_and_priorities_are_abs_td(double: bool) -> None:
    dqn = make_dqn(double=double)
    perturb_target(dqn)
    batches = stub_batches([1, 2, 3])
    rec = fit(dqn, batches)
    losses = dqn.metrics.pending("train/loss")
    assert len(losses) == 3
    for step, batch, logged in zip(rec.steps, batches, losses, strict=True):
        online = step.before_online
        q_taken, y = scalar_td(online, step.before_target, batch, double=double)
        loss = (batch["weights"] * huber(q_taken - y)).mean()
        torch.testing.assert_close(torch.as_tensor(logged), loss.detach(), rtol=1e-6, atol=1e-7)
        assert_grads_close(step.grads, grads_of(loss, online))
        # the unweighted loss has another gradient: the weights matter
        unweighted = grads_of(huber(q_taken - y).mean(), online)
        assert any(not torch.allclose(g, u) for g, u in zip(step.grads, unweighted, strict=True))
        (priorities,) = batch["priorities"].updates
        torch.testing.assert_close(priorities, (q_taken - y).abs().detach(), rtol=1e-6, atol=1e-7)


def test_uniform_batch_loss_is_the_plain_mean_huber_and_hands_back_no_priorities() -> None:
    dqn = make_dqn()
    perturb_target(dqn)
    batches = stub_batches([1, 2], prioritized=False)
    rec = fit(dqn, batches)
    for step, batch in zip(rec.steps, batches, strict=True):
        q_taken, y = scalar_td(step.before_online, step.before_target, batch)
        assert_grads_close(step.grads, grads_of(huber(q_taken - y).mean(), step.before_online))


def test_double_q_evaluates_the_online_argmax_with_the_target_net() -> None:
    """Online and target nets are made to disagree on the best next action everywhere:
    the online net prefers action 0, the target net action 1 (by a wide margin)."""
    dqn = make_dqn(double=True)
    with torch.no_grad():
        dqn.head.out.bias.copy_(torch.tensor([20.0, 0.0, -5.0]))
        dqn.target_head.out.bias.copy_(torch.tensor([-3.0, 20.0, 1.0]))
    batches = stub_batches([1])
    rec = fit(dqn, batches)
    (step,), (batch,) = rec.steps, batches
    with torch.no_grad():
        next_online = step.before_online(batch["next_obs"])
        next_target = step.before_target(batch["next_obs"])
    assert (next_online.argmax(1) == 0).all() and (next_target.argmax(1) == 1).all()
    q = step.before_online(batch["obs"])
    q_taken = q[torch.arange(B), batch["action"]]
    y_double = batch["reward"] + batch["discount"] * next_target[:, 0]
    y_vanilla = batch["reward"] + batch["discount"] * next_target[:, 1]
    (priorities,) = batch["priorities"].updates
    torch.testing.assert_close(priorities, (q_taken - y_double).abs().detach())
    assert not torch.allclose(priorities, (q_taken - y_vanilla).abs().detach())
    loss = (batch["weights"] * huber(q_taken - y_double)).mean()
    assert_grads_close(step.grads, grads_of(loss, step.before_online))


# ---------------------------------------------------------------- C51
def project(next_probs: torch.Tensor, reward: float, discount: float) -> torch.Tensor:
    """Bellemare et al. 2017, Algorithm 1, one sample at a time in plain python."""
    dz = (V_MAX - V_MIN) / (ATOMS - 1)
    atoms = [V_MIN + j * dz for j in range(ATOMS)]
    out = [0.0] * ATOMS
    for j, z in enumerate(atoms):
        tz = min(max(reward + discount * z, V_MIN), V_MAX)
        b = (tz - V_MIN) / dz
        lo, hi = int(np.floor(b)), int(np.ceil(b))
        p = float(next_probs[j])
        if lo == hi:
            out[lo] += p
        else:
            out[lo] += p * (hi - b)
            out[hi] += p * (b - lo)
    return torch.tensor(out, dtype=torch.float32)


@pytest.mark.parametrize("double", [False, True], ids=["c51", "double"])
def test_c51_priorities_are_the_per_sample_kl_and_weights_scale_it(double: bool) -> None:
    dqn = make_dqn(distributional=True, double=double)
    perturb_target(dqn)
    batches = stub_batches([1, 2])
    rec = fit(dqn, batches)
    support = torch.linspace(V_MIN, V_MAX, ATOMS)
    for step, batch in zip(rec.steps, batches, strict=True):
        online, target = step.before_online, step.before_target
        log_p = torch.log_softmax(online[1].logits(online[0](batch["obs"])), dim=-1)  # (B, A, K)
        with torch.no_grad():
            next_p = torch.softmax(target[1].logits(target[0](batch["next_obs"])), dim=-1)
            chooser = online if double else target
            next_q = torch.softmax(chooser[1].logits(chooser[0](batch["next_obs"])), dim=-1)
            best = (next_q * support).sum(-1).argmax(dim=1)
            target_p = torch.stack(
                [
                    project(
                        next_p[i, int(best[i])],
                        float(batch["reward"][i]),
                        float(batch["discount"][i]),
                    )
                    for i in range(B)
                ]
            )
        kl = torch.stack(
            [
                sum(
                    (
                        target_p[i, k]
                        * (torch.log(target_p[i, k]) - log_p[i, batch["action"][i], k])
                        if target_p[i, k] > 0
                        else torch.zeros(())
                    )
                    for k in range(ATOMS)
                )
                for i in range(B)
            ]
        )
        (priorities,) = batch["priorities"].updates
        torch.testing.assert_close(priorities, kl.detach(), rtol=1e-5, atol=1e-6)
        assert_grads_close(step.grads, grads_of((batch["weights"] * kl).mean(), online))


# ---------------------------------------------------------------- target network
ENV_STEPS = [1, 3, 4, 5, 7, 9, 10, 16, 17, 19, 20]


def crossings(env_steps: list[int], every: int) -> list[bool]:
    """Whether each step's env_step passes a multiple of ``every`` since the previous one."""
    out, prev = [], 0
    for s in env_steps:
        out.append(any(prev < m <= s for m in range(every, s + 1, every)))
        prev = s
    return out


def test_crossings_by_hand() -> None:
    # multiples of 4: 4 (at 4), 8 (at 9), 12 and 16 (both at 16, once), 20 (at 20)
    expected = [False, False, True, False, False, True, False, True, False, False, True]
    assert crossings(ENV_STEPS, 4) == expected


@pytest.mark.parametrize("tau", [1.0, 0.3], ids=["hard", "polyak"])
def test_target_syncs_exactly_when_env_step_crosses_a_multiple(tau: float) -> None:
    dqn = make_dqn(target_update_every=4, tau=tau)
    perturb_target(dqn)
    rec = fit(dqn, stub_batches(ENV_STEPS, prioritized=False))
    synced = crossings(ENV_STEPS, 4)
    for i, (step, sync) in enumerate(zip(rec.steps, synced, strict=True)):
        assert not params_equal(step.before_online, step.after_online), i  # it learns
        pairs = zip(
            step.before_online.parameters(),
            step.before_target.parameters(),
            step.after_target.parameters(),
            strict=True,
        )
        if not sync:
            assert params_equal(step.before_target, step.after_target), i
            continue
        for online, old, new in pairs:
            # from the online weights before this step's gradient step
            expected = tau * online + (1.0 - tau) * old
            torch.testing.assert_close(new, expected, rtol=1e-6, atol=1e-7)
            assert not torch.equal(new, old)
    assert dqn.last_target_update == 20


# ---------------------------------------------------------------- noisy nets
def noisy_forward(net: nn.Module, obs: torch.Tensor, *, noise: bool) -> torch.Tensor:
    """Q-values with the factorized noisy weights ``W_mu + W_sigma * outer(eps_out, eps_in)``
    formed explicitly (or the mean weights)."""
    encoder, head = net[0], net[1]
    layer = head.out
    assert isinstance(layer, NoisyLinear)
    x = encoder(torch.as_tensor(obs))
    w, b = layer.weight_mu, layer.bias_mu
    if noise:
        eps_in, eps_out = layer.noise[: layer.in_features], layer.noise[layer.in_features :]
        w = w + layer.weight_sigma * torch.outer(eps_out, eps_in)
        b = b + layer.bias_sigma * eps_out
    return x @ w.T + b


def test_noisy_train_actor_redraws_noise_per_act_and_eval_actor_uses_mean_weights() -> None:
    dqn = make_dqn(noisy=True)
    sampler = dqn.sampler
    assert isinstance(sampler, RecordingGreedy)
    obs = np.array([[0.3, -1.2, 0.7]], dtype=np.float32)
    first = np.array([True])
    train = dqn.make_actor(num_envs=1, mode="train")
    evaluator = dqn.make_actor(num_envs=1, mode="eval")

    with torch.no_grad():
        mean_q = noisy_forward(dqn.q_net, obs, noise=False).double().numpy()

    train.act(obs, first=first)
    noise1 = noise_of(dqn.q_net)
    q1 = sampler.seen[-1]
    with torch.no_grad():
        np.testing.assert_allclose(q1, noisy_forward(dqn.q_net, obs, noise=True), rtol=1e-5)
    train.act(obs, first=~first)
    noise2 = noise_of(dqn.q_net)
    q2 = sampler.seen[-1]
    with torch.no_grad():
        np.testing.assert_allclose(q2, noisy_forward(dqn.q_net, obs, noise=True), rtol=1e-5)
    assert not torch.equal(noise1[0], noise2[0])
    assert not np.allclose(q1, q2)
    assert not np.allclose(q1, mean_q) and not np.allclose(q2, mean_q)

    # evaluation: the mean weights, whatever noise the layer holds
    evaluator.act(obs, first=first)
    np.testing.assert_allclose(sampler.seen[-1], mean_q, rtol=1e-5)
    with torch.no_grad():
        dqn.head.out.noise.copy_(torch.randn(dqn.head.out.noise.shape) * 3)
    evaluator.act(obs, first=~first)
    np.testing.assert_allclose(sampler.seen[-1], mean_q, rtol=1e-5)

    # ... and the training actor is noisy again afterwards
    train.act(obs, first=~first)
    assert not np.allclose(sampler.seen[-1], mean_q)
    with torch.no_grad():
        np.testing.assert_allclose(
            sampler.seen[-1], noisy_forward(dqn.q_net, obs, noise=True), rtol=1e-5
        )


def test_noisy_nets_redraw_noise_per_gradient_step_in_both_nets() -> None:
    dqn = make_dqn(noisy=True)
    perturb_target(dqn)
    # an evaluation act first leaves the mean weights selected: training must re-enable noise
    dqn.make_actor(num_envs=1, mode="eval").act(
        np.zeros((1, 3), np.float32), first=np.array([True])
    )
    initial_online, initial_target = noise_of(dqn.q_net), noise_of(dqn.target_net)
    batches = stub_batches([1, 2, 3])
    rec = fit(dqn, batches)
    seen_online = [initial_online] + [s.noise_online for s in rec.steps]
    seen_target = [initial_target] + [s.noise_target for s in rec.steps]
    for a, b in itertools.pairwise(seen_online):
        assert not any(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    for a, b in itertools.pairwise(seen_target):
        assert not any(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    for step in rec.steps:  # online and target draw from their own generators
        assert not torch.equal(step.noise_online[0], step.noise_target[0])
        assert all(step.noise_enabled)

    # the step's loss used exactly that noise in both nets
    for step, batch in zip(rec.steps, batches, strict=True):
        online, target = step.before_online, step.before_target
        with torch.no_grad():
            online[1].out.noise.copy_(step.noise_online[0])
            target[1].out.noise.copy_(step.noise_target[0])
        q = noisy_forward(online, batch["obs"], noise=True)
        q_taken = q[torch.arange(B), batch["action"]]
        with torch.no_grad():
            next_v = noisy_forward(target, batch["next_obs"], noise=True).amax(dim=1)
            y = batch["reward"] + batch["discount"] * next_v
        loss = (batch["weights"] * huber(q_taken - y)).mean()
        assert_grads_close(step.grads, grads_of(loss, online))
        (priorities,) = batch["priorities"].updates
        torch.testing.assert_close(priorities, (q_taken - y).abs().detach(), rtol=1e-5, atol=1e-6)
