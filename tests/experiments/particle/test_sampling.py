"""Samplers: MPPI and Langevin on a known quadratic energy; differentiability for L_KL."""
import torch

from ebm_repro.experiments.particle.config import LangevinConfig, MPPIConfig
from ebm_repro.experiments.particle.sampling import conditional_energy, langevin, make_sampler, mppi

CENTRE = torch.tensor([0.7, 0.2])


def quadratic(y, centre=CENTRE, scale=200.0):
    """E(y) = scale * |y - centre|^2 for (B, 2) or (B, S, 2)."""
    return scale * ((y - centre) ** 2).sum(-1)


def test_mppi_moves_toward_quadratic_minimum():
    x0 = torch.full((64, 2), 0.5)
    gen = torch.Generator().manual_seed(0)
    x = mppi(quadratic, x0, MPPIConfig(n_steps=30, n_samples=5, noise_std=0.02), generator=gen)
    d0, d = (x0 - CENTRE).norm(dim=1), (x - CENTRE).norm(dim=1)
    assert (d < d0).all()
    assert d.mean() < 0.35 * d0.mean()


def test_mppi_weights_favour_low_energy():
    # With one sample per step MPPI is a random walk; more samples must get closer on average.
    x0 = torch.full((256, 2), 0.5)
    dist = []
    for s in (1, 5):
        gen = torch.Generator().manual_seed(1)
        x = mppi(quadratic, x0, MPPIConfig(n_steps=30, n_samples=s, noise_std=0.02), generator=gen)
        dist.append((x - CENTRE).norm(dim=1).mean())
    assert dist[1] < 0.6 * dist[0]


def test_langevin_without_noise_descends_to_minimum():
    x0 = torch.rand(32, 2)
    x = langevin(quadratic, x0, LangevinConfig(n_steps=50, step_size=1e-3, noise_std=0.0, grad_clip=0.0))
    torch.testing.assert_close(x, CENTRE.expand(32, 2), atol=1e-3, rtol=0)
    assert not x.requires_grad


def test_langevin_grad_clip_bounds_each_step():
    cfg = LangevinConfig(n_steps=1, step_size=1.0, noise_std=0.0, grad_clip=0.01)
    x0 = torch.zeros(4, 2)
    assert (langevin(quadratic, x0, cfg) - x0).abs().max() <= 0.01 + 1e-7


def test_samplers_are_differentiable_in_energy_parameters():
    centre = CENTRE.clone().requires_grad_(True)
    energy = lambda y: quadratic(y, centre)  # noqa: E731
    for x in (langevin(energy, torch.full((8, 2), 0.5), LangevinConfig(5, 1e-3, 0.005, 0.0), differentiable=True),
              mppi(energy, torch.full((8, 2), 0.5), MPPIConfig(5, 5, 0.02), differentiable=True)):
        (g,) = torch.autograd.grad(x.sum(), centre)
        assert g.abs().sum() > 0


def test_conditional_energy_shapes():
    model = lambda past, y: (past.sum((1, 2)) + y.sum(-1))  # noqa: E731  (B, 3, 2), (B, 2) -> (B,)
    past = torch.rand(4, 3, 2)
    fn = conditional_energy(model, past)
    assert fn(torch.rand(4, 2)).shape == (4,)
    y = torch.rand(4, 5, 2)
    e = fn(y)
    assert e.shape == (4, 5)
    torch.testing.assert_close(e[2, 3], past[2].sum() + y[2, 3].sum())  # context row matches candidate row


def test_make_sampler_dispatch():
    lcfg, mcfg = LangevinConfig(2, 1e-3, 0.0, 0.0), MPPIConfig(2, 3, 0.01)
    x0 = torch.zeros(3, 2)
    assert make_sampler("ebm_ld", lcfg, mcfg)(quadratic, x0).shape == (3, 2)
    assert make_sampler("ebm_mppi", lcfg, mcfg)(quadratic, x0).shape == (3, 2)
