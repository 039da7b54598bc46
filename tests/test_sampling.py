"""Langevin sampler: descent, clipping, clamping, stationary law, and the truncated L_opt graph."""
import math

import torch

from ebm_repro.config import SamplerConfig
from ebm_repro.losses import frozen, kl_opt_loss
from ebm_repro.sampling import langevin_step, make_langevin


def quad(mu):
    return lambda x: ((x - mu) ** 2).flatten(1).sum(1) / 2  # (B,)


def test_noiseless_step_lowers_a_quadratic_energy_by_the_gradient_step():
    x = torch.rand(16, 3, 4, 4)
    e = quad(0.5)
    x1 = langevin_step(e, x.clone(), step_size=0.1, noise_std=0.0, grad_clip=0.0, clamp=False)
    assert torch.allclose(x1, x - 0.1 * (x - 0.5), atol=1e-6)  # dE/dx = x - mu
    assert (e(x1) < e(x)).all()


def test_per_element_gradient_clip_bounds_the_move():
    x = torch.full((4, 10), 0.5)
    steep = lambda z: (1000.0 * z).sum(1)  # dE/dx = 1000 everywhere
    x1 = langevin_step(steep, x, step_size=10.0, noise_std=0.0, grad_clip=0.01, clamp=False)
    assert torch.allclose(x1, x - 10.0 * 0.01)  # IGEBM: the clip V, not the raw gradient, sets the move


def test_clamp_keeps_images_in_unit_interval():
    x = torch.rand(8, 3, 4, 4)
    x1 = langevin_step(lambda z: -(z * 5).flatten(1).sum(1), x, 1.0, 0.1, 0.0, clamp=True)
    assert x1.min() >= 0 and x1.max() <= 1 and (x1 == 1).any()


def test_stationary_law_of_a_gaussian_energy():
    # E = |x - mu|^2 / (2 s^2); with step = noise^2 / 2 Langevin targets exp(-E) = N(mu, s^2).
    mu, s, noise = 0.3, 0.2, 0.04
    e = lambda x: ((x - mu) ** 2).sum(1) / (2 * s * s)
    sample = make_langevin(SamplerConfig(n_steps=1500, step_size=noise ** 2 / 2, noise_std=noise,
                                         grad_clip=0.0, clamp=False))
    x = sample(e, torch.rand(4000, 1) * 2 - 0.5).x
    # 4000 chains: standard error of the mean ~ 0.2/63 = 0.003, of the variance ~ 0.04*sqrt(2/4000) = 0.0009;
    # the discretisation bias at step 8e-4 vs s^2 = 0.04 is ~1% of the variance.
    assert abs(x.mean().item() - mu) < 0.015
    assert abs(x.var().item() - s * s) / (s * s) < 0.06


def test_broken_step_size_misses_the_stationary_law():
    # Same chain with step = noise^2 (twice the right one): the variance must come out wrong -> the test above can fail.
    mu, s, noise = 0.3, 0.2, 0.04
    e = lambda x: ((x - mu) ** 2).sum(1) / (2 * s * s)
    sample = make_langevin(SamplerConfig(1500, noise ** 2, noise, 0.0, False))
    x = sample(e, torch.rand(4000, 1)).x
    assert abs(x.var().item() - s * s) / (s * s) > 0.3


def test_kl_opt_gradient_flows_through_the_last_step_only_and_not_into_the_final_energy():
    # E_theta(x) = theta * x^2 / 2. Last step: x_kl = z - lam * theta * z, z = x_{t-1} + noise.
    # L_opt = E_{sg(theta)}(x_kl) => dL/dtheta = theta * x_kl * (-lam * z)   (no x_kl^2/2 term: stop-grad).
    theta = torch.nn.Parameter(torch.tensor(2.0))
    model = torch.nn.Module()
    model.theta = theta
    energy = lambda x: model.theta * (x ** 2).sum(1) / 2
    lam = 0.05
    sample = make_langevin(SamplerConfig(n_steps=5, step_size=lam, noise_std=0.01, grad_clip=0.0, clamp=False))
    res = sample(energy, torch.randn(6, 1), kl_chains=4)
    assert res.x_kl.shape == (4, 1) and res.x_kl.requires_grad
    with frozen(model):
        loss = kl_opt_loss(energy(res.x_kl))
    loss.backward()
    z = res.x_kl.detach() / (1 - lam * 2.0)
    expected = (2.0 * res.x_kl.detach() * (-lam * z)).sum() / 4
    assert math.isclose(theta.grad.item(), expected.item(), rel_tol=1e-5)
    # the first K chains' final states equal the detached chains (same noise, same step)
    assert torch.allclose(res.x_kl.detach(), res.x[:4], atol=1e-6)


def test_kl_all_steps_gradient_includes_earlier_steps():
    theta = torch.nn.Parameter(torch.tensor(2.0))
    model = torch.nn.Module()
    model.theta = theta
    energy = lambda x: model.theta * (x ** 2).sum(1) / 2
    cfg = SamplerConfig(n_steps=3, step_size=0.05, noise_std=0.0, grad_clip=0.0, clamp=False)
    x0 = torch.randn(4, 1)
    res = make_langevin(cfg)(energy, x0, kl_chains=4, kl_all_steps=True)
    with frozen(model):
        loss = kl_opt_loss(energy(res.x_kl))
    loss.backward()  # after the block, as in the trainer: frozen leaves accumulate no gradient
    # noiseless: x_3 = (1 - lam theta)^3 x0 -> dL/dtheta = theta x3 * 3 (1 - lam theta)^2 (-lam) x0 / K
    a = 1 - 0.05 * 2.0
    expected = (2.0 * (a ** 3 * x0) * 3 * a ** 2 * (-0.05) * x0).sum() / 4
    assert math.isclose(theta.grad.item(), expected.item(), rel_tol=1e-5)
