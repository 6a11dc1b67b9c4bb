"""TD-MPC's maths against hand computations: the linear std and horizon schedules, the
planner's mean momentum, prioritized replay over sequences (which windows enter, their
sampling probabilities, importance weights and priority updates), TOLD's Q heads against
the authors' ``helper.q`` structure, the clipped policy noise and the per-sample horizon
sums."""

from __future__ import annotations

import functools

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from rlbench.algos.tdmpc import TDMPC, linear_schedule, planning_horizon
from rlbench.algos.tdmpc2 import MPPIConfig, fit_horizon, plan_mppi
from rlbench.buffers.prioritized import PrioritizedReplayBuffer
from rlbench.errors import ConfigError
from rlbench.losses import rho_weighted_mean, rho_weighted_sum
from rlbench.networks.world_model import TOLD, truncated_normal_action


# ---------------------------------------------------------------------- schedules
def test_linear_schedule_by_hand() -> None:
    # the authors' std_schedule linear(0.5, 0.05, 25000)
    assert linear_schedule(0.5, 0.05, 25_000, 0) == 0.5
    assert linear_schedule(0.5, 0.05, 25_000, 10_000) == pytest.approx(0.5 - 0.4 * 0.45)
    assert linear_schedule(0.5, 0.05, 25_000, 25_000) == pytest.approx(0.05)
    assert linear_schedule(0.5, 0.05, 25_000, 90_000) == pytest.approx(0.05)


def test_planning_horizon_grows_from_one_to_h() -> None:
    # int(min(5, 1 + 4 step / 25000)): 1 until 6250, 2 until 12500, ..., 5 from 25000 on
    steps = [0, 6_249, 6_250, 12_500, 18_749, 18_750, 24_999, 25_000, 10**6]
    got = [planning_horizon(s, horizon=5, duration=25_000) for s in steps]
    assert got == [1, 1, 2, 3, 3, 4, 4, 5, 5]


def test_fit_horizon_cuts_or_pads_the_previous_plan() -> None:
    prev = torch.arange(6.0).reshape(1, 3, 2)
    assert torch.equal(fit_horizon(prev, 3), prev)
    assert torch.equal(fit_horizon(prev, 2), prev[:, :2])
    padded = fit_horizon(prev, 4)
    assert torch.equal(padded[:, :3], prev) and torch.equal(padded[:, 3], torch.zeros(1, 2))


def module(**kw: object) -> TDMPC:
    opt = functools.partial(torch.optim.Adam, lr=1e-3)
    m = TDMPC(optimizer=opt, pi_optimizer=opt, enc_dim=8, mlp_dim=8, latent_dim=4, **kw)  # type: ignore[arg-type]
    m.build_for(gym.spaces.Box(-1, 1, (3,)), gym.spaces.Box(-2, 2, (2,)))
    return m


def test_module_schedules_the_planner_and_adds_five_percent_policy_sequences() -> None:
    m = module()
    assert (m.mppi.num_samples, m.mppi.num_pi_trajs, m.mppi.momentum) == (512 + 25, 25, 0.1)
    assert (m.data_spec.learning_starts, m.data_spec.initial_updates) == (5000, 5000)
    assert (m.data_spec.length, m.data_spec.batch_size, m.discount) == (5, 512, 0.99)
    at0, mid, end = m.planner(0), m.planner(12_500), m.planner(30_000)
    assert (at0.horizon, at0.min_std) == (1, 0.5)
    assert (mid.horizon, mid.min_std) == (3, pytest.approx(0.275))
    assert (end.horizon, end.min_std) == (5, pytest.approx(0.05))
    m.clock.fill_(12_500)  # actors that do not train read the module's clock
    assert m.planner(None) == mid
    with pytest.raises(ConfigError, match=r"algo\.mixture_coef=1\.5: must be in \[0, 1\)"):
        module(mixture_coef=1.5)


# ---------------------------------------------------------------------- planner momentum
def test_momentum_keeps_a_share_of_the_previous_mean() -> None:
    """One iteration from ``init``: the mean is ``m * init + (1 - m) * refit`` where
    ``refit`` is the plain MPPI refit (same draws), and the std is the refit's."""
    torch.manual_seed(0)
    w = torch.randn(3, 2)
    fns = {
        "dynamics": lambda z, a: z + a @ w.T,
        "reward": lambda z, a: -(z - 1.0).pow(2).sum(-1) - a.pow(2).sum(-1),
        "value": lambda z: -z.pow(2).sum(-1),
        "policy": None,
    }
    init = torch.full((2, 4, 2), 0.3)
    z = torch.randn(2, 3)

    def plan(momentum: float):  # type: ignore[no-untyped-def]
        cfg = MPPIConfig(
            horizon=4, iterations=1, num_samples=64, num_elites=8, num_pi_trajs=0, momentum=momentum
        )
        gen = torch.Generator().manual_seed(3)
        return plan_mppi(
            z, init_mean=init, discount=0.9, cfg=cfg, generator=gen, explore=False,
            sample_elite=False, **fns,
        )  # fmt: skip

    plain, mixed = plan(0.0), plan(0.1)
    torch.testing.assert_close(mixed.mean, 0.1 * init + 0.9 * plain.mean)
    torch.testing.assert_close(mixed.std, plain.std)
    torch.testing.assert_close(mixed.action, plain.action)  # the elites are the same


# ---------------------------------------------------------------------- sequence PER
def seq_buffer(**kw: object) -> PrioritizedReplayBuffer:
    args: dict[str, object] = {
        "capacity": 32,
        "num_envs": 1,
        "obs_shape": (1,),
        "obs_dtype": np.float32,
        "action_shape": (1,),
        "action_dtype": np.float32,
        "alpha": 0.6,
        "beta0": 0.4,
        "beta_end": 0.4,
        "beta_steps": 100,
        "sequence_length": 3,
        "seed": 0,
    }
    args.update(kw)
    return PrioritizedReplayBuffer(**args)  # type: ignore[arg-type]


def fill(buf: PrioritizedReplayBuffer, episodes: list[int]) -> None:
    """Episodes of the given lengths, the last one truncated; observation = global step."""
    step = 0
    buf.start(np.zeros((1, 1), np.float32))
    ignored = np.zeros(1, bool)
    for length in episodes:
        for t in range(length):
            step += 1
            end = np.array([t == length - 1])
            buf.add(
                action=np.zeros((1, 1), np.float32),
                reward=np.zeros(1, np.float32),
                terminated=np.zeros(1, bool),
                truncated=end,
                next_obs=np.full((1, 1), step, np.float32),
                ignored=ignored,
            )
            ignored = np.zeros(1, bool)
        # the autoreset row: ignored, then the reset observation
        buf.add(
            action=np.zeros((1, 1), np.float32),
            reward=np.zeros(1, np.float32),
            terminated=np.zeros(1, bool),
            truncated=np.zeros(1, bool),
            next_obs=np.full((1, 1), -1, np.float32),
            ignored=np.ones(1, bool),
        )
        ignored = np.zeros(1, bool)


def test_sequence_windows_enter_the_tree_keyed_by_their_start() -> None:
    buf = seq_buffer()
    fill(buf, [5, 4])
    # rows 0-4: episode 1 (5 steps), row 5 ignored, rows 6-9: episode 2, row 10 ignored.
    # A window of 3 steps inside one episode starts at rows 0, 1, 2 and 6, 7.
    assert np.flatnonzero(buf.tree.leaves).tolist() == [0, 1, 2, 6, 7]
    assert buf.can_sample_sequences(3, True)
    batch = buf.sample_sequences(64, length=3, within_episode=True)
    assert set(batch["indices"].tolist()) <= {0, 1, 2, 6, 7}
    assert batch["mask"].all() and not batch["truncated"][:, :-1].any()
    obs = batch["obs"][:, :, 0]  # o_1..o_3 are consecutive steps (o_0 may be a reset's -1)
    assert (np.diff(obs[:, 1:], axis=1) == 1).all()
    np.testing.assert_array_equal(batch["weights"], np.ones(64, np.float32))  # all at max


def test_sequence_priorities_sampling_and_weights_by_hand() -> None:
    buf = seq_buffer()
    fill(buf, [5, 4])
    slots = np.array([0, 1, 2, 6, 7])
    losses = np.array([1.0, 3.0, 0.5, 2.0, 7.0])
    buf.update(slots, losses)
    p = (losses + 1e-6) ** 0.6
    np.testing.assert_allclose(buf.tree.get(slots), p)
    batch = buf.sample_sequences(5000, length=3, within_episode=True)
    freq = np.array([(batch["indices"] == s).mean() for s in slots])
    np.testing.assert_allclose(freq, p / p.sum(), atol=0.01)  # stratified: close to exact
    # (N P_i)^-beta / max_j (N P_j)^-beta with beta fixed at 0.4 (beta_end = beta0)
    expected = {int(s): (pi / p.min()) ** -0.4 for s, pi in zip(slots, p, strict=True)}
    got = dict(zip(batch["indices"].tolist(), batch["weights"].tolist(), strict=True))
    for s, w in got.items():
        assert w == pytest.approx(expected[s], rel=1e-5)
    assert buf.beta() == 0.4


def test_overwritten_windows_leave_the_tree() -> None:
    buf = seq_buffer(capacity=8)  # 8 rows: the ring wraps inside the first episode
    fill(buf, [12])
    live = np.flatnonzero(buf.tree.leaves)
    # windows whose first row is still stored and whose 3 steps are known
    assert live.size > 0 and buf.head not in live.tolist()
    batch = buf.sample_sequences(32, length=3, within_episode=True)
    obs = batch["obs"][:, :, 0]
    assert (np.diff(obs[:, 1:], axis=1) == 1).all()


def test_sequence_per_rejects_other_lengths_and_transitions() -> None:
    buf = seq_buffer()
    fill(buf, [5])
    with pytest.raises(ValueError, match=r"length=4 .*buffer\.sequence_length=3"):
        buf.sample_sequences(4, length=4, within_episode=True)
    with pytest.raises(ValueError, match="sample them with sample_sequences"):
        buf.sample(4, n_step=1, gamma=0.99)
    with pytest.raises(ConfigError, match=r"buffer\.sequence_length=0: must be >= 1 or null"):
        seq_buffer(sequence_length=0)
    with pytest.raises(ConfigError, match=r"buffer.beta_end=2.0: must be in \[0, 1\]"):
        seq_buffer(beta_end=2.0)


# ---------------------------------------------------------------------- networks
def test_q_heads_follow_the_authors_structure() -> None:
    """Two heads, each Linear -> LayerNorm -> Tanh -> Linear -> ELU -> Linear(1) (the
    authors' ``helper.q``), the last layer zero; equal to that nn.Sequential run with the
    same weights."""
    torch.manual_seed(0)
    told = TOLD(obs_dim=3, action_dim=2, enc_dim=8, mlp_dim=16, latent_dim=5)
    qs = told.qs
    assert qs.num_q == 2 and qs.acts == ("tanh", "elu") and qs.norms == (True, False)
    assert [tuple(w.shape) for w in qs.weights] == [(2, 7, 16), (2, 16, 16), (2, 16, 1)]
    assert len(qs.ln_weights) == 1  # only the first layer is normalized
    assert not qs.weights[2].any() and not qs.biases[2].any()
    w0 = qs.weights[0][1]  # orthogonal columns per head (torch's (out, in) rows)
    torch.testing.assert_close(w0 @ w0.T, torch.eye(7), atol=1e-5, rtol=0)
    with torch.no_grad():
        for p in qs.parameters():
            p.normal_()
    x = torch.randn(4, 7)
    out = qs(x)  # (2, 4, 1)
    for k in range(2):
        ref = nn.Sequential(
            nn.Linear(7, 16), nn.LayerNorm(16), nn.Tanh(),
            nn.Linear(16, 16), nn.ELU(), nn.Linear(16, 1),
        )  # fmt: skip
        with torch.no_grad():
            for layer, i in ((ref[0], 0), (ref[3], 1), (ref[5], 2)):
                layer.weight.copy_(qs.weights[i][k].T)
                layer.bias.copy_(qs.biases[i][k, 0])
            ref[1].weight.copy_(qs.ln_weights[0][k, 0])
            ref[1].bias.copy_(qs.ln_biases[0][k, 0])
        torch.testing.assert_close(out[k], ref(x))
    # no SimNorm: the latent is a plain linear output; target copies carry no grads
    assert not any(p.requires_grad for p in told.target_qs.parameters())
    assert not any(p.requires_grad for p in told.target_encoder.parameters())


def test_policy_noise_is_clipped_with_straight_through_gradient() -> None:
    mean = torch.tensor([[0.0, 0.99, -0.5]], requires_grad=True)
    eps = torch.tensor([[10.0, 1.0, -0.1]])
    a = truncated_normal_action(mean, 0.5, eps, clip=0.3)
    # 0 + 0.3 (clipped), 0.99 + 0.3 -> 1 - 1e-6, -0.5 - 0.05
    torch.testing.assert_close(a.detach(), torch.tensor([[0.3, 1 - 1e-6, -0.55]]))
    a.sum().backward()
    assert mean.grad is not None and torch.equal(mean.grad, torch.ones(1, 3))


def test_rho_weighted_sum_by_hand() -> None:
    x = torch.tensor([[1.0, 2.0], [4.0, 8.0], [16.0, 32.0]])  # (T=3, B=2)
    torch.testing.assert_close(rho_weighted_sum(x, rho=0.5), torch.tensor([7.0, 14.0]))
    torch.testing.assert_close(
        rho_weighted_sum(x, rho=0.5).mean() / 3, rho_weighted_mean(x, rho=0.5)
    )
