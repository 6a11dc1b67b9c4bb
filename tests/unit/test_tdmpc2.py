"""TD-MPC2's maths and parts: symlog/symexp and two-hot regression by hand, SimNorm, the
discount rule, the rho-weighted horizon losses against a loop in the authors' style on a
tiny model, the MPPI planner on quadratic toys (as a pure function of callables), the
planner's warm start, and the actor's state (resume, evaluation apart from training)."""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rlbench.algos.tdmpc2 import TDMPC2, MPPIConfig, plan_mppi, warm_start
from rlbench.errors import ConfigError
from rlbench.losses import (
    episode_discount,
    percentile_range,
    rho_weighted_mean,
    soft_cross_entropy,
    symexp,
    symlog,
    two_hot,
    two_hot_inv,
)
from rlbench.networks.world_model import QEnsemble, SimNorm, WorldModel, mish, size_of

BINS = {"num_bins": 101, "vmin": -10.0, "vmax": 10.0}
OBS = gym.spaces.Box(-np.inf, np.inf, (5,), np.float64)
ACT = gym.spaces.Box(np.array([-2.0, 0.0], np.float32), np.array([2.0, 1.0], np.float32))
TINY = {
    "enc_dim": 16,
    "mlp_dim": 16,
    "latent_dim": 16,
    "iterations": 2,
    "num_samples": 32,
    "num_elites": 4,
    "num_pi_trajs": 4,
}


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """One torch thread, as runs use (``trainer.torch_threads``): on a busy two-core
    machine OpenMP's second thread made a tiny plan take seconds instead of milliseconds."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_module(**kwargs: Any) -> TDMPC2:
    opt = functools.partial(torch.optim.Adam, lr=3e-4, fused=True, max_grad_norm=20.0)
    pi_opt = functools.partial(torch.optim.Adam, lr=3e-4, eps=1e-5, fused=True, max_grad_norm=20.0)
    module = TDMPC2(optimizer=opt, pi_optimizer=pi_opt, **{**TINY, **kwargs})
    module.build_for(OBS, ACT)
    return module


# ---------------------------------------------------------------- symlog, two-hot
def test_symlog_and_symexp_are_inverses_and_symlog_by_hand() -> None:
    x = torch.tensor([-1e4, -20.0, -1.0, -1e-3, 0.0, 1e-3, 0.5, 1.0, 7.0, 1e4], dtype=torch.float64)
    torch.testing.assert_close(symexp(symlog(x)), x, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(symlog(symexp(x / 1e3)), x / 1e3, rtol=1e-12, atol=1e-12)
    assert symlog(torch.tensor(math.e - 1.0)).item() == pytest.approx(1.0)
    assert symlog(torch.tensor(-(math.e - 1.0))).item() == pytest.approx(-1.0)


def test_two_hot_splits_the_mass_between_the_two_nearest_bins_by_hand() -> None:
    # 5 bins at -2, -1, 0, 1, 2 (symlog space): symlog(x) = 0.25 -> 0.75 on 0, 0.25 on 1
    x = torch.tensor([math.exp(0.25) - 1.0, -(math.exp(1.5) - 1.0), 1e6, -1e6, math.exp(2) - 1])
    enc = two_hot(x, num_bins=5, vmin=-2.0, vmax=2.0)
    expected = torch.tensor(
        [
            [0.0, 0.0, 0.75, 0.25, 0.0],
            [0.5, 0.5, 0.0, 0.0, 0.0],  # symlog = -1.5
            [0.0, 0.0, 0.0, 0.0, 1.0],  # clamped to vmax
            [1.0, 0.0, 0.0, 0.0, 0.0],  # clamped to vmin
            [0.0, 0.0, 0.0, 0.0, 1.0],  # exactly vmax: no bin past the last
        ]
    )
    torch.testing.assert_close(enc, expected, atol=1e-6, rtol=0)


def test_two_hot_round_trips_through_its_decoder_for_any_shape() -> None:
    g = torch.Generator().manual_seed(0)
    x = symexp(torch.rand(4, 3, 7, generator=g, dtype=torch.float64) * 19.0 - 9.5)
    enc = two_hot(x, **BINS)
    assert enc.shape == (4, 3, 7, 101)
    torch.testing.assert_close(enc.sum(-1), torch.ones_like(x))
    assert int((enc > 0).sum(-1).max()) <= 2
    decoded = two_hot_inv(torch.log(enc), **BINS)  # logits whose softmax is the encoding
    torch.testing.assert_close(decoded, x, rtol=1e-9, atol=1e-9)


def test_two_hot_inv_of_zero_logits_is_zero_and_soft_ce_by_hand() -> None:
    assert two_hot_inv(torch.zeros(3, 101), **BINS).abs().max() < 1e-5  # symmetric bins
    # uniform logits: log(num_bins) whatever the target
    ce = soft_cross_entropy(torch.zeros(2, 101), torch.tensor([0.0, 123.0]), **BINS)
    torch.testing.assert_close(ce, torch.full((2,), math.log(101)))
    # 3 bins at -1, 0, 1; target symlog 0.5 -> (0, 0.5, 0.5); logits (0, ln 2, 0)
    logits = torch.tensor([0.0, math.log(2.0), 0.0])
    log_p = torch.log(torch.tensor([0.25, 0.5, 0.25]))
    target = torch.tensor(math.exp(0.5) - 1.0)
    expected = -(0.5 * log_p[1] + 0.5 * log_p[2])
    got = soft_cross_entropy(logits, target, num_bins=3, vmin=-1.0, vmax=1.0)
    torch.testing.assert_close(got, expected)


def test_soft_ce_broadcasts_one_target_over_the_q_heads() -> None:
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(5, 3, 4, 101, generator=g)  # (K, H, B, bins)
    target = torch.randn(3, 4, generator=g) * 5
    ce = soft_cross_entropy(logits, target, **BINS)
    assert ce.shape == (5, 3, 4)
    for k in range(5):
        torch.testing.assert_close(ce[k], soft_cross_entropy(logits[k], target, **BINS))


# ---------------------------------------------------------------- rho, discount, scale
def test_rho_weighted_mean_by_hand() -> None:
    per_step = torch.tensor([[1.0, 3.0], [2.0, 2.0], [4.0, 0.0]])  # step means 2, 2, 2
    assert rho_weighted_mean(per_step, rho=0.5).item() == pytest.approx((2 + 1 + 0.5) / 3)
    values = torch.tensor([[[3.0]], [[5.0]]])  # (T=2, 1, 1)
    assert rho_weighted_mean(values, rho=0.1).item() == pytest.approx((3 + 0.5) / 2)


@pytest.mark.parametrize(
    ("length", "discount"),
    [(1000, 0.995), (500, 0.99), (200, 0.975), (100, 0.95), (50, 0.95), (10_000, 0.995)],
)
def test_discount_rule(length: int, discount: float) -> None:
    assert episode_discount(length) == pytest.approx(discount)


def test_percentile_range_is_the_5_to_95_spread_at_least_one() -> None:
    x = torch.arange(101, dtype=torch.float32)  # quantiles 5 and 95
    assert percentile_range(x).item() == pytest.approx(90.0)
    assert percentile_range(torch.full((10,), 3.0)).item() == 1.0


# ---------------------------------------------------------------- networks
def test_simnorm_sums_to_one_per_group_of_8() -> None:
    x = torch.randn(4, 3, 32) * 10
    y = SimNorm(8)(x)
    assert y.shape == x.shape
    groups = y.reshape(4, 3, 4, 8)
    torch.testing.assert_close(groups.sum(-1), torch.ones(4, 3, 4))
    assert bool((y > 0).all())
    torch.testing.assert_close(groups[0, 0, 1], torch.softmax(x[0, 0, 8:16], dim=0))


def test_fast_mish_matches_torch_without_autograd() -> None:
    x = torch.linspace(-30.0, 60.0, 10_001)
    with torch.no_grad():
        torch.testing.assert_close(mish(x.clone()), F.mish(x), rtol=1e-5, atol=1e-6)
    x.requires_grad_(True)
    assert mish(x).grad_fn is not None


def test_world_model_shapes_simnorm_latents_and_zero_heads() -> None:
    model = WorldModel(
        obs_dim=5,
        action_dim=2,
        size=size_of("1M", enc_dim=16, mlp_dim=16, latent_dim=16, num_q=5),
        num_bins=101,
        dropout=0.01,
        log_std_min=-10.0,
        log_std_max=2.0,
    )
    z = model.encode(torch.randn(7, 5))
    assert z.shape == (7, 16)
    torch.testing.assert_close(z.reshape(7, 2, 8).sum(-1), torch.ones(7, 2))
    a = torch.rand(7, 2) * 2 - 1
    assert model.next(z, a).shape == (7, 16)
    # zero-initialised last layers: every reward and Q starts at the middle bin, 0
    assert torch.equal(model.reward_logits(z, a), torch.zeros(7, 101))
    assert torch.equal(model.q_logits(z, a), torch.zeros(5, 7, 101))
    action, log_prob, gauss = model.pi(z)
    assert action.shape == (7, 2) and log_prob.shape == gauss.shape == (7,)
    assert float(action.detach().abs().max()) <= 1.0
    # the target heads start as a copy and take no gradients
    for p, t in zip(model.qs.parameters(), model.target_qs.parameters(), strict=True):
        assert torch.equal(p, t) and not t.requires_grad


def test_q_ensemble_subsets_and_dropout_only_when_asked() -> None:
    torch.manual_seed(0)
    qs = QEnsemble(6, [8, 8], 3, num_q=5, dropout=0.5)
    for w in qs.weights:
        torch.nn.init.normal_(w)  # non-zero last layer
    x = torch.randn(4, 2, 6)
    every = qs(x)
    assert every.shape == (5, 4, 2, 3)
    heads = torch.tensor([3, 1])
    torch.testing.assert_close(qs(x, heads=heads), every[heads])
    assert torch.equal(qs(x), every)  # no dropout by default
    assert not torch.equal(qs(x, dropout=True), every)
    # each head is an independent MLP: head 2 by hand
    h = x @ qs.weights[0][2] + qs.biases[0][2]
    for i in (1, 2):
        h = F.mish(F.layer_norm(h, (8,)) * qs.ln_weights[i - 1][2] + qs.ln_biases[i - 1][2])
        h = h @ qs.weights[i][2] + qs.biases[i][2]
    torch.testing.assert_close(every[2], h)


@pytest.mark.parametrize(("size", "low", "high"), [("1M", 0.9e6, 1.5e6), ("5M", 4e6, 6e6)])
def test_size_presets_have_about_their_parameter_count(size: str, low: float, high: float) -> None:
    model = WorldModel(
        obs_dim=17,
        action_dim=6,
        size=size_of(size),
        num_bins=101,
        dropout=0.01,
        log_std_min=-10.0,
        log_std_max=2.0,
    )
    assert low <= model.num_params() <= high


# ---------------------------------------------------------------- the planner
def quadratic_toy(target: float) -> dict[str, Any]:
    """A one-dimensional state moved by the action, ``z' = z + a``, rewarded
    ``-(z' - target)^2``, no terminal value: the first action takes z to ``target``."""

    def dynamics(z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return z + a

    def reward(z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return -((z + a - target) ** 2).squeeze(-1)

    def value(z: torch.Tensor) -> torch.Tensor:
        return torch.zeros(z.shape[:-1])

    return {"dynamics": dynamics, "reward": reward, "value": value}


def plan(z: torch.Tensor, toy: dict[str, Any], **kwargs: Any) -> Any:
    cfg = kwargs.pop("cfg", MPPIConfig(num_pi_trajs=0))
    options = {"explore": False, "sample_elite": False, "policy": None, **kwargs}
    return plan_mppi(
        z,
        init_mean=torch.zeros(z.shape[0], cfg.horizon, 1),
        discount=0.99,
        cfg=cfg,
        generator=torch.Generator().manual_seed(0),
        **toy,
        **options,
    )


def test_mppi_finds_the_optimum_of_a_one_dimensional_quadratic() -> None:
    # the state does not move (reward -(a - 0.3)^2 at every step): every step's optimum is 0.3
    toy = quadratic_toy(0.3)
    toy["dynamics"] = lambda z, a: z
    result = plan(torch.zeros(1, 1), toy)
    torch.testing.assert_close(result.mean, torch.full((1, 3, 1), 0.3), atol=0.03, rtol=0)
    assert abs(float(result.action) - 0.3) < 0.05
    assert bool((result.std >= 0.05).all()) and bool((result.std <= 2.0).all())


def test_mppi_plans_every_env_at_once_through_the_dynamics() -> None:
    # z' = z + a, reward -(z')^2: the first action brings each env's state to 0
    z0 = torch.tensor([[0.5], [-0.3], [0.0]])
    result = plan(z0, quadratic_toy(0.0))
    torch.testing.assert_close(result.action, -z0, atol=0.06, rtol=0)
    torch.testing.assert_close(result.mean[:, 1:], torch.zeros(3, 2, 1), atol=0.06, rtol=0)


def test_mppi_policy_samples_count_and_exploration_noise() -> None:
    calls: list[tuple[int, ...]] = []

    def policy(z: torch.Tensor) -> torch.Tensor:
        calls.append(tuple(z.shape))
        return torch.full((*z.shape[:-1], 1), 0.3)

    toy = quadratic_toy(0.3)
    toy["dynamics"] = lambda z, a: z
    cfg = MPPIConfig(iterations=1, num_samples=64, num_elites=1, num_pi_trajs=8)
    # one iteration, the single elite is a policy trajectory (exactly the optimum)
    result = plan(torch.zeros(2, 1), toy, cfg=cfg, policy=policy)
    assert calls == [(2, 8, 1)] * 3  # one rollout of 8 per env, H steps
    torch.testing.assert_close(result.action, torch.full((2, 1), 0.3))
    noisy = plan(torch.zeros(2, 1), toy, cfg=cfg, policy=policy, explore=True)
    assert not torch.equal(noisy.action, result.action)  # std_0 is min_std: small noise
    assert float((noisy.action - 0.3).abs().max()) < 0.05 * 5


@pytest.mark.parametrize("terminal_value", [0.0, 5.0])
def test_mppi_counts_rewards_and_value_only_until_a_predicted_termination(
    terminal_value: float,
) -> None:
    """``z' = z + a``, reward ``a``, termination once ``z' > 1.5``: without the head the
    plan is ``(1, 1, 1)``. With it, the reward of step t counts only while ``z_1..z_t``
    are alive, so (value 0) the best plans keep ``a_0 + a_1 <= 1.5`` and end on ``a_2 =
    1`` (return 2.5, where ``(1, 1, 1)`` earns 2); a terminal value of 5, lost at a
    termination, makes them keep ``a_0 + a_1 + a_2 <= 1.5`` too (return 6.5)."""
    toy = {
        "dynamics": lambda z, a: z + a,
        "reward": lambda z, a: a.squeeze(-1),
        "value": lambda z: torch.full(z.shape[:-1], terminal_value),
    }
    cfg = MPPIConfig(num_pi_trajs=0)
    free = plan(torch.zeros(2, 1), toy, cfg=cfg).mean.squeeze(-1)  # (N, H)
    torch.testing.assert_close(free, torch.ones(2, 3), atol=0.02, rtol=0)
    toy["termination"] = lambda z: (z.squeeze(-1) > 1.5).float()
    stopped = plan(torch.zeros(2, 1), toy, cfg=cfg).mean.squeeze(-1)
    kept = stopped[:, :2].sum(-1) if terminal_value == 0.0 else stopped.sum(-1)
    assert bool(((kept > 1.2) & (kept <= 1.5 + 0.01)).all()), stopped
    if terminal_value == 0.0:
        assert bool((stopped[:, 2] > 0.9).all()), stopped


def test_warm_start_shifts_the_previous_plan_and_resets_at_first() -> None:
    prev = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]).unsqueeze(-1)
    first = torch.tensor([False, True, False])
    mean = warm_start(prev, first)
    expected = torch.tensor([[2.0, 3.0, 0.0], [0.0, 0.0, 0.0], [8.0, 9.0, 0.0]]).unsqueeze(-1)
    assert torch.equal(mean, expected)


# ---------------------------------------------------------------- the module and its actor
def test_defaults_derive_discount_and_schedule_from_the_episode_length() -> None:
    module = make_module()
    assert module.discount == pytest.approx(0.995)
    spec = module.data_spec
    assert (spec.learning_starts, spec.initial_updates) == (5000, 5000)
    assert (spec.length, spec.within_episode, spec.batch_size) == (3, True, 256)
    short = make_module(episode_length=100, learning_starts=None, initial_updates=7)
    assert short.discount == pytest.approx(0.95)
    assert (short.data_spec.learning_starts, short.data_spec.initial_updates) == (1000, 7)
    assert make_module(discount=0.9).discount == 0.9


def test_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"algo\.size"):
        make_module(size="2M")
    with pytest.raises(ConfigError, match="num_elites"):
        make_module(num_samples=8, num_elites=16)
    with pytest.raises(ConfigError, match="latent_dim"):
        make_module(latent_dim=12)
    module = make_module()
    with pytest.raises(ConfigError, match="flat observations"):
        TDMPC2(
            optimizer=functools.partial(torch.optim.Adam),
            pi_optimizer=functools.partial(torch.optim.Adam),
        ).build_for(gym.spaces.Box(0, 255, (3, 8, 8), np.uint8), ACT)
    assert module.built


def test_optimizers_encoder_at_a_fraction_of_the_lr_and_pi_apart() -> None:
    module = make_module()
    opts = module.make_optimizers()
    assert set(opts) == {"main", "pi"}
    enc, rest = opts["main"].param_groups
    assert enc["lr"] == pytest.approx(0.3 * 3e-4) and rest["lr"] == pytest.approx(3e-4)
    assert {id(p) for p in enc["params"]} == {id(p) for p in module.model.encoder.parameters()}
    assert opts["pi"].param_groups[0]["eps"] == 1e-5
    pi = {id(p) for p in module.model.pi.parameters()}
    assert pi == {id(p) for p in opts["pi"].param_groups[0]["params"]}
    assert not pi & {id(p) for g in opts["main"].param_groups for p in g["params"]}
    assert (module.main_clip, module.pi_clip) == (20.0, 20.0)


def reference_model_losses(module: TDMPC2, batch: dict[str, torch.Tensor]) -> dict[str, float]:
    """The world-model losses as the authors' ``_update`` loops compute them (time-major,
    one step and one Q head at a time, ``F.mse_loss``, the authors' two-hot)."""
    model, rho, horizon = module.model, module.rho, module.mppi.horizon
    num_bins, vmin, vmax = module.num_bins, module.vmin, module.vmax
    bin_size = (vmax - vmin) / (num_bins - 1)

    def authors_two_hot(x: torch.Tensor) -> torch.Tensor:  # tdmpc2/common/math.py, (B,) in
        x = torch.clamp(symlog(x), vmin, vmax)
        idx = torch.floor((x - vmin) / bin_size)
        offset = ((x - vmin) / bin_size - idx).unsqueeze(-1)
        out = torch.zeros(x.shape[0], num_bins)
        out = out.scatter(1, idx.long().unsqueeze(1), 1 - offset)
        return out.scatter(1, (idx.long().unsqueeze(1) + 1) % num_bins, offset)

    def ce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return -(authors_two_hot(target) * F.log_softmax(logits, dim=-1)).sum(-1).mean()

    obs = batch["obs"].float().transpose(0, 1)
    action = ((batch["action"] - module.action_bias) / module.action_scale).transpose(0, 1)
    reward = batch["reward"].transpose(0, 1)
    terminated = batch["terminated"].float().transpose(0, 1)
    with torch.no_grad():
        next_z = model.encode(obs[1:])
        pi_action = model.pi(next_z)[0]
        q = module.decode(model.q_logits(next_z, pi_action, target=True))  # num_q = 2: both
        td = reward + module.discount * (1 - terminated) * q.min(0).values
        z = model.encode(obs[0])
        consistency, zs = 0.0, [z]
        for t in range(horizon):
            z = model.next(z, action[t])
            consistency += F.mse_loss(z, next_z[t]).item() * rho**t
            zs.append(z)
        reward_loss, value_loss = 0.0, 0.0
        for t in range(horizon):
            reward_loss += ce(model.reward_logits(zs[t], action[t]), reward[t]).item() * rho**t
            for k in range(module.size.num_q):
                head = torch.tensor([k])
                logits = model.q_logits(zs[t], action[t], heads=head)[0]
                value_loss += ce(logits, td[t]).item() * rho**t
    return {
        "train/consistency_loss": consistency / horizon,
        "train/reward_loss": reward_loss / horizon,
        "train/value_loss": value_loss / (horizon * module.size.num_q),
    }


def sequence_batch(module: TDMPC2) -> dict[str, torch.Tensor]:
    """6 sequences of 3 steps in the module's spaces, the first ending in a termination."""
    g = torch.Generator().manual_seed(1)
    return {
        "obs": torch.randn(6, 4, 5, generator=g, dtype=torch.float64),
        "action": torch.rand(6, 3, 2, generator=g) * module.action_scale * 2
        - module.action_scale
        + module.action_bias,
        "reward": torch.randn(6, 3, generator=g) * 3,
        "terminated": torch.tensor([[False, False, True]] + [[False] * 3] * 5),
        "truncated": torch.zeros(6, 3, dtype=torch.bool),
    }


def dense_module(**kwargs: Any) -> TDMPC2:
    """A tiny module whose heads are not zero, so every loss depends on every weight."""
    torch.manual_seed(0)
    module = make_module(dropout=0.0, num_q=2, **kwargs)
    for p in module.model.parameters():
        if p.requires_grad:
            torch.nn.init.normal_(p, std=0.3)
    module.model.target_qs.load_state_dict(module.model.qs.state_dict())
    return module


def recorded_steps(module: TDMPC2, batch: dict[str, torch.Tensor]) -> list[tuple[str, float]]:
    """``(optimizer, loss)`` of each gradient step of one ``training_step`` (none taken)."""
    steps: list[tuple[str, float]] = []
    module.make_optimizers()
    module.gradient_step = lambda loss, params, *, max_grad_norm, optimizer="main": steps.append(  # type: ignore[method-assign]
        (optimizer, float(loss.detach()))
    )
    torch.manual_seed(5)  # the same draws for the TD target's policy sample
    module.training_step(iter([(batch, 0, 0)]))
    return steps


def test_horizon_losses_match_the_authors_loops_on_a_tiny_model() -> None:
    module = dense_module()
    batch = sequence_batch(module)
    torch.manual_seed(5)
    expected = reference_model_losses(module, batch)
    steps = recorded_steps(module, batch)
    got = {name: float(module.metrics.pending(name)[0]) for name in expected}
    assert got == pytest.approx(expected, rel=1e-5)
    assert not module.metrics.pending("train/termination_loss")  # not episodic: no head
    assert module.model.termination is None
    c, r, v = module.coefs
    model_loss = c * got["train/consistency_loss"] + r * got["train/reward_loss"]
    model_loss += v * got["train/value_loss"]
    assert [name for name, _ in steps] == ["main", "pi"]
    assert steps[0][1] == pytest.approx(model_loss, rel=1e-5)


def test_episodic_termination_loss_is_the_heads_bce_on_the_rollout() -> None:
    """The authors' ``termination_loss``: BCE with logits of the head on ``z_1..z_H`` of
    the latent rollout against ``terminated``, added at ``termination_coef`` to the model
    loss; the head's weights are in the ``main`` optimizer."""
    module = dense_module(episodic=True, termination_coef=2.0)
    model = module.model
    assert model.termination is not None
    batch = sequence_batch(module)
    with torch.no_grad():
        obs = batch["obs"].float().transpose(0, 1)
        action = ((batch["action"] - module.action_bias) / module.action_scale).transpose(0, 1)
        z, logits = model.encode(obs[0]), []
        for t in range(3):
            z = model.next(z, action[t])
            logits.append(model.termination(z).squeeze(-1))  # (B,)
        target = batch["terminated"].float().transpose(0, 1)
        expected = F.binary_cross_entropy_with_logits(torch.stack(logits), target).item()
    torch.manual_seed(5)
    others = reference_model_losses(module, batch)
    steps = recorded_steps(module, batch)
    got = float(module.metrics.pending("train/termination_loss")[0])
    assert got == pytest.approx(expected, rel=1e-5)
    c, r, v = module.coefs
    model_loss = c * others["train/consistency_loss"] + r * others["train/reward_loss"]
    model_loss += v * others["train/value_loss"] + 2.0 * expected
    assert steps[0] == ("main", pytest.approx(model_loss, rel=1e-5))
    head = {id(p) for p in model.termination.parameters()}
    assert head <= {id(p) for p in module._main_params}
    assert not head & {id(p) for p in module._pi_params}


def test_episodic_planner_gets_the_heads_probability() -> None:
    module = dense_module(episodic=True)
    fns = module.planning_functions(torch.Generator().manual_seed(0))
    z = module.model.encode(torch.randn(4, 5))
    expected = torch.sigmoid(module.model.termination(z).squeeze(-1))
    torch.testing.assert_close(fns["termination"](z), expected)
    plain = dense_module()
    assert "termination" not in plain.planning_functions(torch.Generator())
    with pytest.raises(RuntimeError, match="no termination head"):
        plain.model.termination_logit(z)


def test_policy_loss_scales_q_by_its_running_range_and_freezes_the_q_heads() -> None:
    torch.manual_seed(0)
    module = make_module(dropout=0.0)
    for w in module.model.qs.weights:
        torch.nn.init.normal_(w, std=0.5)
    latents = module.model.encode(torch.randn(4, 8, 5)).detach()  # (H+1, B, Z)
    losses: list[torch.Tensor] = []

    def step(loss: torch.Tensor, params: list[torch.Tensor], **_: Any) -> None:
        for p in params:
            p.grad = None
        loss.backward()
        losses.append(loss.detach())

    module.gradient_step = step  # type: ignore[method-assign]
    module.make_optimizers()
    module._policy_update(latents)
    assert all(p.grad is None for p in module.model.qs.parameters())
    assert all(p.grad is not None for p in module.model.pi.parameters())
    assert float(module.q_scale) >= 1.0 and module.model.qs.weights[0].requires_grad
    # by hand, with the same draws
    torch.manual_seed(3)
    module.q_scale.fill_(2.0)
    module._policy_update(latents)
    torch.manual_seed(3)
    action, _, gauss = module.model.pi(latents)
    heads = module.two_heads()
    q = module.decode(module.model.q_logits(latents, action, heads=heads)).mean(0)
    scale = 2.0 + 0.01 * (percentile_range(q[0]).item() - 2.0)
    entropy = -2 * gauss  # dim(A) = 2
    per_step = (1e-4 * entropy + q / scale).mean(1)
    expected = -sum(0.5**t * per_step[t] for t in range(4)) / 4
    assert float(losses[-1]) == pytest.approx(float(expected.detach()), rel=1e-5)
    assert float(module.q_scale) == pytest.approx(scale)


def test_actor_plans_within_bounds_keeps_its_plan_and_resumes_identically() -> None:
    torch.manual_seed(0)
    module = make_module()
    actor = module.make_actor(num_envs=3, mode="train")
    obs = np.random.default_rng(0).standard_normal((3, 5))
    first = np.array([True, True, True])
    a0 = actor.act(obs, first=first)
    assert a0.shape == (3, 2)
    assert bool((a0 >= ACT.low).all() and (a0 <= ACT.high).all())
    assert actor.prev_mean.shape == (3, 3, 2) and bool(actor.prev_mean.abs().sum() > 0)
    state = actor.state_dict()
    again = module.make_actor(num_envs=3, mode="train")
    again.load_state_dict(state)
    first = np.array([False, True, False])
    np.testing.assert_array_equal(actor.act(obs, first=first), again.act(obs, first=first))
    torch.testing.assert_close(actor.prev_mean, again.prev_mean, rtol=0, atol=0)


def test_evaluation_actors_are_reproducible_and_leave_training_alone() -> None:
    torch.manual_seed(0)
    module = make_module()
    train = module.make_actor(num_envs=2, mode="train")
    obs = np.random.default_rng(1).standard_normal((2, 5))
    first = np.ones(2, dtype=np.bool_)
    train.act(obs, first=first)
    before = repr(train.state_dict())
    e1 = module.make_actor(num_envs=2, mode="eval", seed=7)
    e2 = module.make_actor(num_envs=2, mode="eval", seed=7)
    for _ in range(3):
        np.testing.assert_array_equal(e1.act(obs, first=first), e2.act(obs, first=first))
        first = np.zeros(2, dtype=np.bool_)
    assert repr(train.state_dict()) == before
    assert (e1.explore, e1.sample_elite) == (False, False)
    stochastic = module.make_actor(num_envs=2, mode="eval", deterministic=False, seed=7)
    assert (stochastic.explore, stochastic.sample_elite) == (True, True)
