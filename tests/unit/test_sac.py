"""SAC's maths and wiring: the squashed-Gaussian density against a numerical change of
variables and a histogram, the soft Bellman target and the temperature loss by hand, the
actor's numpy acting against its torch forward, and ``SAC.training_step`` driven by a tiny
Lightning Trainer on stubbed batches (which optimizer steps when, and what each step may
change)."""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Iterator
from typing import Any

import gymnasium as gym
import lightning as L
import numpy as np
import pytest
import torch

from rlbench.algos.sac import SAC
from rlbench.losses import (
    sac_critic_target,
    sac_temperature_loss,
    squashed_gaussian_log_prob,
    tanh_log_det_jacobian,
)
from rlbench.networks.continuous import SquashedGaussianActor
from rlbench.networks.mlp import MLP

OBS = gym.spaces.Box(-np.inf, np.inf, (5,), np.float32)
# non-trivial bounds: scale (2, 0.5, 2), bias (0, 0.5, 1)
ACT = gym.spaces.Box(np.array([-2, 0, -1], np.float32), np.array([2, 1, 3], np.float32))
SCALE, BIAS = np.array([2.0, 0.5, 2.0]), np.array([0.0, 0.5, 1.0])


def squash(u: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    return scale * torch.tanh(u) + bias


def normal_log_prob(u: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    return torch.distributions.Normal(mean, log_std.exp()).log_prob(u).sum(-1)


# ---------------------------------------------------------------- squashed Gaussian density
@pytest.mark.parametrize(
    ("scale", "bias"),
    [([2.0], [1.0]), ([2.0, 0.5, 3.0], [0.0, 0.5, -1.5])],
    ids=["1d", "3d"],
)
def test_log_prob_is_the_change_of_variables_with_an_autograd_jacobian(
    scale: list[float], bias: list[float]
) -> None:
    g = torch.Generator().manual_seed(0)
    dim = len(scale)
    s = torch.tensor(scale, dtype=torch.float64)
    b = torch.tensor(bias, dtype=torch.float64)
    mean = torch.randn(4, dim, generator=g, dtype=torch.float64)
    log_std = torch.rand(4, dim, generator=g, dtype=torch.float64) - 1.0
    u = mean + log_std.exp() * torch.randn(4, dim, generator=g, dtype=torch.float64) * 2
    got = squashed_gaussian_log_prob(u, mean, log_std, log_scale=s.log())
    for i in range(4):
        jac = torch.autograd.functional.jacobian(lambda x: squash(x, s, b), u[i])
        assert jac.shape == (dim, dim)
        _, log_abs_det = torch.linalg.slogdet(jac)
        expected = normal_log_prob(u[i], mean[i], log_std[i]) - log_abs_det
        torch.testing.assert_close(got[i], expected, rtol=1e-10, atol=1e-10)


def test_log_prob_is_a_density_over_the_action_bounds_1d() -> None:
    """exp(log p(a)) integrates to 1 over [low, high] and matches a histogram of samples."""
    scale, bias = 2.0, 1.0  # actions in [-1, 3]
    mean = torch.tensor([[0.3]], dtype=torch.float64)
    log_std = torch.tensor([[-0.4]], dtype=torch.float64)
    log_scale = torch.tensor([math.log(scale)], dtype=torch.float64)

    def density(a: torch.Tensor) -> torch.Tensor:
        u = torch.atanh((a - bias) / scale)[:, None]
        return squashed_gaussian_log_prob(u, mean, log_std, log_scale=log_scale).exp()

    grid = torch.linspace(-1.0, 3.0, 400_001, dtype=torch.float64)[1:-1]
    assert float(torch.trapezoid(density(grid), grid)) == pytest.approx(1.0, abs=1e-4)

    g = torch.Generator().manual_seed(1)
    u = mean + log_std.exp() * torch.randn(1_000_000, 1, generator=g, dtype=torch.float64)
    actions = (scale * torch.tanh(u) + bias).squeeze(1)
    counts, edges = np.histogram(actions.numpy(), bins=40, range=(-1.0, 3.0))
    width = edges[1] - edges[0]
    empirical = counts / (len(actions) * width)
    # the bin average of the density, from the fine grid (the density curves inside a bin)
    fine = density(grid).numpy()
    bin_of = np.clip(((grid.numpy() + 1.0) / width).astype(int), 0, 39)
    bin_mean = np.bincount(bin_of, weights=fine) / np.bincount(bin_of)
    busy = empirical > 0.05  # bins with enough samples for a few-percent comparison
    assert busy.sum() >= 10
    np.testing.assert_allclose(empirical[busy], bin_mean[busy], rtol=0.03)


def test_tanh_log_det_jacobian_is_stable_for_large_u() -> None:
    u64 = torch.tensor([-20.0, -12.0, -5.0, -0.7, 0.0, 0.3, 5.0, 12.0, 20.0], dtype=torch.float64)
    u32 = u64.float().requires_grad_(True)
    got = tanh_log_det_jacobian(u32[:, None])
    assert got.dtype == torch.float32 and torch.isfinite(got).all()
    got.sum().backward()
    assert u32.grad is not None and torch.isfinite(u32.grad).all()
    naive = torch.log(1 - torch.tanh(u64) ** 2)  # -inf at |u| = 20 even in float64
    assert not torch.isfinite(naive[[0, -1]]).any()
    finite = torch.isfinite(naive)
    assert finite.sum() == 7
    torch.testing.assert_close(got.detach().double()[finite], naive[finite], rtol=1e-5, atol=1e-5)
    exact = -2 * torch.log(torch.cosh(u64))  # log sech^2 u, finite in float64 at |u| = 20
    torch.testing.assert_close(got.detach().double(), exact, rtol=1e-6, atol=1e-5)
    # sums over the last axis
    pair = tanh_log_det_jacobian(u64[None, [1, 2]])
    torch.testing.assert_close(pair, (exact[1] + exact[2])[None])


# ---------------------------------------------------------------- critic target, temperature
def test_critic_target_by_hand() -> None:
    gamma = 0.99
    # sample 0: mid-episode, 1: terminated (no bootstrap), 2: truncated (bootstraps), 3: 3-step
    reward = torch.tensor([1.0, 2.0, -0.5, 0.25])
    discount = torch.tensor([gamma, 0.0, gamma, gamma**3])
    next_q = torch.tensor([[3.0, 10.0, -1.0, 4.0], [2.0, 20.0, 1.0, 5.0]])  # (2 critics, B)
    next_log_prob = torch.tensor([-1.5, 0.5, 2.0, 0.0])
    alpha = 0.2
    target = sac_critic_target(
        reward=reward,
        discount=discount,
        next_q=next_q,
        next_log_prob=next_log_prob,
        alpha=torch.tensor(alpha),
    )
    expected = [
        1.0 + 0.99 * (2.0 - 0.2 * -1.5),  # min(3, 2) = 2; 2 + 0.3 = 2.3 -> 3.277
        2.0,  # terminated: the reward alone
        -0.5 + 0.99 * (-1.0 - 0.2 * 2.0),  # min(-1, 1) = -1; -1.4 -> -1.886
        0.25 + 0.970299 * (4.0 - 0.0),  # min(4, 5) = 4
    ]
    torch.testing.assert_close(target, torch.tensor(expected))
    torch.testing.assert_close(target, torch.tensor([3.277, 2.0, -1.886, 4.131196]))
    as_float = sac_critic_target(
        reward=reward, discount=discount, next_q=next_q, next_log_prob=next_log_prob, alpha=alpha
    )
    torch.testing.assert_close(as_float, target)


def test_temperature_loss_by_hand_and_its_gradient_sign() -> None:
    # entropy estimate -mean(log_prob) = -1 above the target -2: alpha must fall
    log_alpha = torch.tensor(math.log(0.5), requires_grad=True)
    log_prob = torch.tensor([-1.0, 3.0], requires_grad=True)
    loss = sac_temperature_loss(log_alpha, log_prob, target_entropy=-2.0)
    # -(0.5 * mean([-1 - 2, 3 - 2])) = -(0.5 * -1) = 0.5
    assert float(loss.detach()) == pytest.approx(0.5)
    loss.backward()
    assert log_alpha.grad is not None and float(log_alpha.grad) == pytest.approx(0.5)
    assert log_prob.grad is None  # the policy gets no gradient from the temperature loss

    # entropy -mean([2, 4]) = -3 below the target -2: alpha must rise
    log_alpha = torch.tensor(math.log(0.5), requires_grad=True)
    loss = sac_temperature_loss(log_alpha, torch.tensor([2.0, 4.0]), target_entropy=-2.0)
    assert float(loss.detach()) == pytest.approx(-0.5)  # -(0.5 * mean([0, 2]))
    loss.backward()
    assert log_alpha.grad is not None and float(log_alpha.grad) == pytest.approx(-0.5)
    opt = torch.optim.SGD([log_alpha], lr=0.1)
    opt.step()
    assert float(log_alpha.exp()) > 0.5


# ---------------------------------------------------------------- the actor
def make_actor(*, seed: int = 0) -> SquashedGaussianActor:
    torch.manual_seed(seed)
    return SquashedGaussianActor(
        functools.partial(MLP, hidden=[16, 16]),
        obs_shape=(5,),
        action_space=ACT,
        log_std_min=-4.0,  # not the defaults: the bounds come from the arguments
        log_std_max=1.0,
    )


def head(actor: SquashedGaussianActor) -> torch.nn.Linear:
    last = actor.net[-1]
    assert isinstance(last, torch.nn.Linear)
    return last


def test_actions_stay_within_the_bounds_even_saturated() -> None:
    actor = make_actor()
    with torch.no_grad():
        head(actor).weight.mul_(50.0)  # means and raw log-stds far out: tanh saturates
    obs = np.random.default_rng(0).normal(size=(2000, 5)).astype(np.float32) * 3
    rng = np.random.default_rng(1)
    for a in (actor.act(obs, rng), actor.act(obs, None), actor.sample(torch.from_numpy(obs))[0]):
        a = np.asarray(a.detach() if isinstance(a, torch.Tensor) else a)
        assert a.shape == (2000, 3) and a.dtype == np.float32
        assert (a >= ACT.low).all() and (a <= ACT.high).all()
        # both ends are reached: the bounds really are scale * [-1, 1] + bias
        assert np.allclose(a.min(0), ACT.low, atol=1e-3)
        assert np.allclose(a.max(0), ACT.high, atol=1e-3)


def test_log_std_is_bounded() -> None:
    actor = make_actor()
    obs = torch.randn(500, 5) * 3
    _, log_std = actor(obs)
    assert ((log_std > -4.0) & (log_std < 1.0)).all()
    with torch.no_grad():
        head(actor).weight.mul_(1000.0)
    _, log_std = actor(obs)
    assert log_std.min() >= -4.0 and log_std.max() <= 1.0
    assert float(log_std.min()) == pytest.approx(-4.0)
    assert float(log_std.max()) == pytest.approx(1.0)
    with torch.no_grad():
        head(actor).weight.zero_()
        head(actor).bias.zero_()
    _, log_std = actor(obs)  # raw 0 -> the middle of the range
    torch.testing.assert_close(log_std, torch.full_like(log_std, -1.5))


@pytest.mark.parametrize("path", ["numpy", "torch"])
def test_numpy_acting_equals_the_torch_forward(path: str) -> None:
    actor = make_actor()
    if path == "torch":
        actor._np_fn = actor._torch_forward  # the fallback (other devices, unsupported layers)
    obs = np.random.default_rng(2).normal(size=(64, 5)).astype(np.float32)
    scale, bias = torch.from_numpy(SCALE).float(), torch.from_numpy(BIAS).float()
    with torch.no_grad():
        mean, log_std = actor(torch.from_numpy(obs))
    # deterministic: scale * tanh(mean) + bias
    np.testing.assert_allclose(
        actor.act(obs, None), squash(mean, scale, bias).numpy(), rtol=1e-5, atol=1e-6
    )
    if path == "numpy":
        assert actor._np_fn is not None and actor._np_fn != actor._torch_forward
    # sampled: the same standard normals through mean + std * eps
    eps = np.random.default_rng(7).standard_normal((64, 3), dtype=np.float32)
    expected = squash(mean + log_std.exp() * torch.from_numpy(eps), scale, bias).numpy()
    np.testing.assert_allclose(
        actor.act(obs, np.random.default_rng(7)), expected, rtol=1e-5, atol=1e-5
    )
    # the numpy views follow in-place weight updates (optimizer steps, load_state_dict)
    with torch.no_grad():
        for p in actor.parameters():
            p.add_(0.1)
        mean, _ = actor(torch.from_numpy(obs))
    np.testing.assert_allclose(
        actor.act(obs, None), squash(mean, scale, bias).numpy(), rtol=1e-5, atol=1e-6
    )


def test_sample_log_prob_is_the_density_of_the_returned_action() -> None:
    actor = make_actor()
    obs = torch.randn(256, 5)
    torch.manual_seed(3)
    action, log_prob = actor.sample(obs)
    assert action.shape == (256, 3) and log_prob.shape == (256,)
    with torch.no_grad():
        mean, log_std = actor(obs)
    a = action.detach().double()
    scale, bias = torch.from_numpy(SCALE), torch.from_numpy(BIAS)
    z = (a - bias) / scale
    ok = (z.abs() < 0.999).all(dim=1)  # away from saturation atanh is well conditioned
    assert ok.sum() > 200
    u = torch.atanh(z[ok])
    expected = squashed_gaussian_log_prob(
        u, mean.double()[ok], log_std.double()[ok], log_scale=scale.log()
    )
    torch.testing.assert_close(log_prob.detach().double()[ok], expected, rtol=1e-3, atol=1e-3)
    # reparameterized: gradients reach the actor's weights through both outputs
    (action.sum() + log_prob.sum()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in actor.parameters())


# ---------------------------------------------------------------- SAC.training_step wiring
B = 8


def make_sac(**kwargs: Any) -> SAC:
    torch.manual_seed(0)
    options: dict[str, Any] = {"batch_size": B, "learning_starts": 0, **kwargs}
    sac = SAC(
        network=functools.partial(MLP, hidden=[16, 16]),
        actor_optimizer=functools.partial(torch.optim.Adam, lr=1e-2, fused=True),
        critic_optimizer=functools.partial(torch.optim.Adam, lr=2e-2, fused=True),
        alpha_optimizer=functools.partial(torch.optim.Adam, lr=5e-2, fused=True),
        **options,
    )
    sac.build_for(OBS, ACT)
    return sac


def stub_batches(n: int, *, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        out.append(
            {
                "obs": torch.randn(B, 5, generator=g),
                "action": torch.rand(B, 3, generator=g) * torch.tensor([4.0, 1.0, 4.0])
                + torch.tensor([-2.0, 0.0, -1.0]),
                "reward": torch.randn(B, generator=g),
                "discount": torch.where(torch.rand(B, generator=g) < 0.25, 0.0, 0.99),
                "next_obs": torch.randn(B, 5, generator=g),
            }
        )
    return out


class Batches(torch.utils.data.IterableDataset[dict[str, torch.Tensor]]):
    def __init__(self, batches: list[dict[str, torch.Tensor]]) -> None:
        self.batches = batches

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        return iter(self.batches)


Snapshot = dict[str, list[torch.Tensor]]


class Nets:
    """Deep copies of a SAC's networks and temperature at one moment."""

    def __init__(self, sac: SAC) -> None:
        self.actor = copy.deepcopy(sac.actor)
        self.critic = copy.deepcopy(sac.critic)
        self.critic_target = copy.deepcopy(sac.critic_target)
        self.log_alpha = sac.log_alpha.detach().clone()
        self.target_entropy = sac.target_entropy


def snapshot(sac: SAC) -> Snapshot:
    parts = {
        "actor": sac.actor.parameters(),
        "critic": sac.critic.parameters(),
        "target": sac.critic_target.parameters(),
        "alpha": [sac.log_alpha],
    }
    return {k: [p.detach().clone() for p in ps] for k, ps in parts.items()}


def changed(before: Snapshot, after: Snapshot) -> set[str]:
    return {
        k
        for k in before
        if any(not torch.equal(a, b) for a, b in zip(before[k], after[k], strict=True))
    }


class Recorder(L.Callback):
    """Records every optimizer step (name, parts it changed) and every training step's
    snapshots before and after; checks the actor's backward leaves the critics' grads be."""

    def __init__(self) -> None:
        self.steps: list[tuple[int, str, set[str]]] = []  # (update, optimizer, changed parts)
        self.batches: list[tuple[Snapshot, Snapshot]] = []
        self.rng_states: list[torch.Tensor] = []
        self.nets: list[Nets] = []  # the networks before each training step
        self._before: Snapshot = {}
        self._step_before: Snapshot = {}
        self._critic_grads: list[torch.Tensor] = []

    def on_train_start(self, trainer: L.Trainer, sac: L.LightningModule) -> None:
        assert isinstance(sac, SAC)
        for name, opt in zip(sac.optimizer_names, trainer.optimizers, strict=True):
            opt.register_step_pre_hook(functools.partial(self._pre, sac, name))
            opt.register_step_post_hook(functools.partial(self._post, sac, name))

    def _pre(self, sac: SAC, name: str, *_: Any) -> None:
        self._step_before = snapshot(sac)
        if name == "actor":  # the actor's backward computed no critic weight gradients
            grads = [p.grad for p in sac.critic.parameters()]
            assert all(g is not None for g in grads)
            for g, kept in zip(grads, self._critic_grads, strict=True):
                assert g is not None and torch.equal(g, kept)

    def _post(self, sac: SAC, name: str, *_: Any) -> None:
        self.steps.append((sac.updates, name, changed(self._step_before, snapshot(sac))))
        if name == "critic":
            self._critic_grads = [
                p.grad.clone() for p in sac.critic.parameters() if p.grad is not None
            ]

    def on_train_batch_start(self, trainer: L.Trainer, sac: L.LightningModule, *_: Any) -> None:
        assert isinstance(sac, SAC)
        self._before = snapshot(sac)
        self.rng_states.append(torch.random.get_rng_state())
        self.nets.append(Nets(sac))

    def on_train_batch_end(self, trainer: L.Trainer, sac: L.LightningModule, *_: Any) -> None:
        assert isinstance(sac, SAC)
        if sac.updates == len(self.batches):  # the iterator's end: Lightning's last call
            self.rng_states.pop()
            self.nets.pop()
            return
        self.batches.append((self._before, snapshot(sac)))


def fit(sac: SAC, batches: list[dict[str, torch.Tensor]]) -> Recorder:
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
    loader = torch.utils.data.DataLoader(Batches(batches), batch_size=None)
    trainer.fit(sac, train_dataloaders=loader)
    assert sac.updates == len(batches) == len(recorder.batches)
    return recorder


@pytest.mark.parametrize("policy_frequency", [1, 3])
def test_policy_delay_and_what_each_optimizer_step_changes(policy_frequency: int) -> None:
    sac = make_sac(policy_frequency=policy_frequency)
    rec = fit(sac, stub_batches(7))
    expected: list[tuple[int, str]] = []
    for update in range(1, 8):
        expected.append((update - 1, "critic"))  # the counter moves after the critic step
        if update % policy_frequency == 0:
            expected += [(update, "actor"), (update, "alpha")] * policy_frequency
    assert [(u, n) for u, n, _ in rec.steps] == expected
    owns = {"critic": {"critic"}, "actor": {"actor"}, "alpha": {"alpha"}}
    for update, name, parts in rec.steps:
        assert parts == owns[name], (update, name, parts)  # the target moves in neither
    n_policy = 7 // policy_frequency * policy_frequency
    assert sac.metrics.totals["train/critic_loss"] == 7
    assert sac.metrics.totals["train/actor_loss"] == n_policy
    assert sac.metrics.totals["train/alpha_loss"] == n_policy


@pytest.mark.parametrize("target_update_every", [1, 2])
def test_target_critics_move_by_polyak_tau(target_update_every: int) -> None:
    tau = 0.05
    sac = make_sac(tau=tau, target_update_every=target_update_every)
    assert all(
        torch.equal(p, q)
        for p, q in zip(sac.critic.parameters(), sac.critic_target.parameters(), strict=True)
    )
    assert not any(p.requires_grad for p in sac.critic_target.parameters())
    rec = fit(sac, stub_batches(6))
    for update, (before, after) in enumerate(rec.batches, start=1):
        if update % target_update_every:
            assert "target" not in changed(before, after)
            continue
        for old, new, online in zip(
            before["target"], after["target"], after["critic"], strict=True
        ):
            torch.testing.assert_close(new, old + tau * (online - old), rtol=1e-6, atol=1e-7)
            assert not torch.equal(new, old)


def expected_losses(
    before: Nets, after: Nets, batch: dict[str, torch.Tensor], rng_state: torch.Tensor
) -> dict[str, float]:
    """The three losses of one training step (policy_frequency=1), recomputed from copies of
    the module before and after it, replaying the torch RNG: critic target (sample on
    next_obs), actor loss (sample on obs), temperature loss (fresh sample, updated actor)."""
    torch.random.set_rng_state(rng_state)
    with torch.no_grad():
        alpha = before.log_alpha.exp()
        next_action, next_log_prob = before.actor.sample(batch["next_obs"])
        next_q = before.critic_target(batch["next_obs"], next_action).amin(0)
        target = batch["reward"] + batch["discount"] * (next_q - alpha * next_log_prob)
        q = before.critic(batch["obs"], batch["action"])
        critic_loss = ((q[0] - target) ** 2).mean() + ((q[1] - target) ** 2).mean()
        action, log_prob = before.actor.sample(batch["obs"])  # same draws as the step's
        # the critics the actor step saw: the ones after the critic step (``after``)
        actor_loss = (alpha * log_prob - after.critic(batch["obs"], action).amin(0)).mean()
        _, fresh_log_prob = after.actor.sample(batch["obs"])
        alpha_loss = -(alpha * (fresh_log_prob + before.target_entropy)).mean()
    return {
        "train/critic_loss": float(critic_loss),
        "train/actor_loss": float(actor_loss),
        "train/alpha_loss": float(alpha_loss),
    }


def test_losses_are_the_hand_formulas_on_the_right_networks() -> None:
    sac = make_sac(policy_frequency=1)
    assert sac.target_entropy == -3.0  # -dim(A)
    batches = stub_batches(3)
    rec = fit(sac, batches)
    after = [*rec.nets[1:], Nets(sac)]
    for i, batch in enumerate(batches):
        expected = expected_losses(rec.nets[i], after[i], batch, rec.rng_states[i])
        for name, value in expected.items():
            got = float(sac.metrics.pending(name)[i])
            assert got == pytest.approx(value, rel=1e-5, abs=1e-6), (i, name)


def test_fixed_temperature_without_autotune() -> None:
    sac = make_sac(policy_frequency=1, autotune=False, alpha=0.3)
    rec = fit(sac, stub_batches(4))
    assert sac.optimizer_names == ("actor", "critic")
    assert {n for _, n, _ in rec.steps} == {"actor", "critic"}
    assert float(sac.log_alpha.exp()) == pytest.approx(0.3)
    assert all("alpha" not in changed(b, a) for b, a in rec.batches)
    assert "train/alpha_loss" not in sac.metrics.totals
    assert sac.train_stats(env_step=0) == {"train/alpha": pytest.approx(0.3)}
    # the fixed alpha is the one in the critic target and the actor loss
    after = [*rec.nets[1:], Nets(sac)]
    batches = stub_batches(4)
    for i in range(4):
        exp = expected_losses(rec.nets[i], after[i], batches[i], rec.rng_states[i])
        for name in ("train/critic_loss", "train/actor_loss"):
            got = float(sac.metrics.pending(name)[i])
            assert got == pytest.approx(exp[name], rel=1e-5, abs=1e-6), (i, name)


def test_autotune_moves_alpha_towards_the_target_entropy() -> None:
    # a target entropy far above anything reachable (entropy < target): alpha must rise
    sac = make_sac(policy_frequency=1, target_entropy=50.0)
    start = float(sac.log_alpha.exp())
    assert start == pytest.approx(1.0)  # alpha_init: CleanRL's and SB3's log alpha = 0
    fit(sac, stub_batches(5))
    assert float(sac.log_alpha.exp()) > start
    sac = make_sac(policy_frequency=1, target_entropy=-50.0)  # far below: alpha must fall
    fit(sac, stub_batches(5))
    assert float(sac.log_alpha.exp()) < start


def test_training_and_evaluation_actors() -> None:
    sac = make_sac(seed=3)
    obs = np.random.default_rng(4).normal(size=(6, 5)).astype(np.float32)
    first = np.ones(6, dtype=bool)
    train_a, train_b = sac.make_actor(num_envs=6), sac.make_actor(num_envs=6)
    a = train_a.act(obs, first=first)
    np.testing.assert_array_equal(a, train_b.act(obs, first=first))  # seeded by the module
    state = train_a.state_dict()
    again = train_a.act(obs, first=first)
    assert not np.array_equal(a, again)  # sampling: the RNG moves on
    restored = sac.make_actor(num_envs=6)  # fresh: would repeat ``a`` without the state
    restored.load_state_dict(state)
    np.testing.assert_array_equal(restored.act(obs, first=first), again)  # checkpointed RNG
    with torch.no_grad():
        mean, _ = sac.actor(torch.from_numpy(obs))
    greedy = squash(mean, sac.actor.scale, sac.actor.bias).numpy()
    evaluation = sac.make_actor(num_envs=6, mode="eval")
    np.testing.assert_allclose(evaluation.act(obs, first=first), greedy, rtol=1e-5, atol=1e-6)
    assert evaluation.state_dict() == {}
    sampled = sac.make_actor(num_envs=6, mode="eval", deterministic=False, seed=9)
    sampled_again = sac.make_actor(num_envs=6, mode="eval", deterministic=False, seed=9)
    s1, s2 = sampled.act(obs, first=first), sampled_again.act(obs, first=first)
    np.testing.assert_array_equal(s1, s2)
    assert not np.allclose(s1, greedy)
