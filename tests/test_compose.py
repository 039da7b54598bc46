"""Composition operators and joint Langevin on analytic energies: values, gradients, fixed points, exact moments."""
from __future__ import annotations

import math

import pytest
import torch

from ebm_repro.compose import conjunction, disjunction, joint_langevin, negation


def quad(mu: float, c: float = 1.0):
    """E(x) = c/2 * sum (x - mu)^2 over the non-batch dims: (B, ...) -> (B,)."""
    return lambda x: 0.5 * c * ((x - mu) ** 2).flatten(1).sum(1)


def const(v: torch.Tensor):
    return lambda x: v.expand(len(x))


# ----------------------------------------------------------------------------- operator values
def test_conjunction_is_the_sum_and_negation_scales_by_minus_the_weight():
    x = torch.randn(5, 3)
    e1, e2, e3 = quad(0.0), quad(1.0, 2.0), quad(-1.0, 0.5)
    torch.testing.assert_close(conjunction(e1, e2, e3)(x), e1(x) + e2(x) + e3(x))
    torch.testing.assert_close(negation(e2)(x), -0.001 * e2(x))     # ICD celeba_combine.py: -0.001 E
    torch.testing.assert_close(negation(e2, weight=0.5)(x), -0.5 * e2(x))


def test_disjunction_values_by_hand():
    x = torch.zeros(1, 1)
    # equal energies 0: -log(2) / 100
    assert disjunction(const(torch.tensor(0.0)), const(torch.tensor(0.0)))(x).item() == pytest.approx(
        -math.log(2) / 100, rel=1e-6)
    # E = 1 and 3 with k = 1: -log(e^-1 + e^-3) = 1 - log(1 + e^-2) = 0.873072
    d = disjunction(const(torch.tensor(1.0)), const(torch.tensor(3.0)), sharpness=1.0)(x).item()
    assert d == pytest.approx(0.8730719, abs=1e-6)


def test_disjunction_is_a_soft_min_between_min_minus_log_k_and_min():
    x = torch.randn(64, 2) * 2
    es = [quad(-1.0), quad(0.5, 3.0), quad(2.0, 0.2)]
    stacked = torch.stack([e(x) for e in es], 1)                      # (B, 3)
    d = disjunction(*es)(x)
    lo, hi = stacked.min(1).values - math.log(3) / 100, stacked.min(1).values
    assert (d >= lo - 1e-6).all() and (d <= hi + 1e-6).all()


def test_disjunction_gradient_is_the_softmax_weighted_gradient():
    x = torch.randn(8, 2, requires_grad=True)
    mus, cs, k = (-1.0, 2.0), (1.0, 0.5), 3.0
    es = [quad(m, c) for m, c in zip(mus, cs)]
    (g,) = torch.autograd.grad(disjunction(*es, sharpness=k)(x).sum(), x)
    with torch.no_grad():
        w = torch.softmax(-k * torch.stack([e(x) for e in es], 1), 1)  # (B, 2)
        want = sum(w[:, i:i + 1] * c * (x - m) for i, (m, c) in enumerate(zip(mus, cs)))
    torch.testing.assert_close(g, want)


def test_operators_refuse_nonsense():
    with pytest.raises(ValueError, match="at least one"):
        conjunction()
    with pytest.raises(ValueError, match="weight"):
        negation(quad(0.0), weight=0.0)
    with pytest.raises(ValueError, match="sharpness"):
        disjunction(quad(0.0), sharpness=-1.0)
    with pytest.raises(ValueError, match="mode"):
        joint_langevin([quad(0.0)], torch.zeros(2, 1), 1, 0.1, 0.0, mode="gibbs")


# ----------------------------------------------------------------------------- deterministic fixed points (no noise)
def test_sum_mode_descends_to_the_minimum_of_the_summed_energy():
    x = joint_langevin([quad(0.0), quad(1.0)], torch.full((3, 1), 5.0), 200, 0.5, 0.0, mode="sum", clamp=False)
    torch.testing.assert_close(x, torch.full((3, 1), 0.5))


def test_per_model_steps_have_the_closed_form_fixed_point_of_sequential_updates():
    # x <- (1 - lam) x + lam mu1, then x <- (1 - lam) x + lam mu2: fixed point ((1 - lam) mu1 + mu2) / (2 - lam),
    # pulled toward the model stepped last; -> the sum's minimum (mu1 + mu2) / 2 only as lam -> 0
    lam = 0.5
    x = joint_langevin([quad(0.0), quad(1.0)], torch.full((3, 1), 5.0), 200, lam, 0.0, mode="per_model", clamp=False)
    torch.testing.assert_close(x, torch.full((3, 1), (1 - lam) * 0.0 + 1.0) / (2 - lam))
    assert x[0].item() == pytest.approx(2 / 3)


def test_negation_moves_the_minimum_away_from_the_negated_model():
    # E1 + (-w) E2 with unit curvatures: minimum (mu1 - w mu2) / (1 - w)
    w, mu1, mu2 = 0.2, 0.0, 1.0
    x = joint_langevin([quad(mu1), negation(quad(mu2), w)], torch.zeros(2, 1), 400, 0.5, 0.0, mode="sum", clamp=False)
    torch.testing.assert_close(x, torch.full((2, 1), (mu1 - w * mu2) / (1 - w)))
    assert x[0].item() < mu1   # pushed away from mu2 = 1


def test_disjunction_chains_settle_in_the_mode_nearest_their_start():
    d = disjunction(quad(0.2), quad(0.8))
    x0 = torch.tensor([[0.3], [0.45], [0.55], [0.9]])
    x = joint_langevin([d], x0, 300, 0.2, 0.0, mode="sum", clamp=False)
    torch.testing.assert_close(x, torch.tensor([[0.2], [0.2], [0.8], [0.8]]), atol=1e-5, rtol=0)


def test_clamp_keeps_chains_in_the_unit_box():
    x = joint_langevin([quad(3.0)], torch.zeros(4, 2), 50, 0.5, 0.1, mode="per_model", clamp=True)
    assert x.min() >= 0 and x.max() <= 1 and (x == 1).float().mean() > 0.9


# ----------------------------------------------------------------------------- stationary moments (exact ULA algebra)
N_CHAINS, MU1, MU2, LAM, S = 40000, -1.0, 2.0, 0.1, 0.3


def _chains(mode: str) -> torch.Tensor:
    torch.manual_seed(0)
    return joint_langevin([quad(MU1), quad(MU2)], torch.zeros(N_CHAINS, 1), 300, LAM, S, mode=mode, clamp=False)[:, 0]


def test_sum_mode_samples_the_product_of_the_two_gaussians():
    # ICD order: noise first, then the gradient at the noisy point, step lam / K on sum E (curvature 2, so a = 1 - lam):
    # x' = a (x + eps) + lam m  ->  mean m = (mu1 + mu2) / 2, var v = a^2 s^2 / (1 - a^2)
    a = 1 - LAM
    x = _chains("sum")
    assert x.mean().item() == pytest.approx((MU1 + MU2) / 2, abs=0.02)
    assert x.var().item() == pytest.approx(a * a * S * S / (1 - a * a), rel=0.04)


def test_per_model_mode_has_the_moments_of_sequential_noisy_steps():
    # IGEBM order: gradient at x, then noise: x' = a x + lam mu_i + eps_i per model; two models per step:
    # mean (a lam mu1 + lam mu2) / (1 - a^2), var s^2 (1 + a^2) / (1 - a^4) = s^2 / (1 - a^2)
    a = 1 - LAM
    x = _chains("per_model")
    assert x.mean().item() == pytest.approx((a * LAM * MU1 + LAM * MU2) / (1 - a * a), abs=0.02)
    assert x.var().item() == pytest.approx(S * S / (1 - a * a), rel=0.04)


def test_both_modes_approach_the_same_product_distribution_as_the_step_shrinks():
    # Same temperature T = K s^2 / (2 lam) in both modes; for small lam both sample N(m, T / (2 c)) with c = 1.
    lam, T = 0.01, 0.1
    s = math.sqrt(2 * lam * T / 2)
    torch.manual_seed(1)
    got = {m: joint_langevin([quad(MU1), quad(MU2)], torch.full((N_CHAINS // 2, 1), 0.5), 1000, lam, s, mode=m,
                             clamp=False)[:, 0] for m in ("sum", "per_model")}
    for m, x in got.items():
        assert x.mean().item() == pytest.approx(0.5, abs=0.02), m
        assert x.var().item() == pytest.approx(T / 2, rel=0.06), m
