"""Loss gradients against hand derivations on a linear energy E_theta(x) = theta * sum(x)."""
import torch

from ebm_repro.losses import cd_loss, entropy_loss, l2_reg, ml_loss


def setup():
    theta = torch.tensor(0.7, requires_grad=True)
    xp, xn = torch.rand(5, 3), torch.rand(7, 3)
    sp, sn = xp.sum(1), xn.sum(1)
    return theta, sp, sn


def test_cd_gradient():
    theta, sp, sn = setup()
    cd_loss(theta * sp, theta * sn).backward()
    assert torch.allclose(theta.grad, sp.mean() - sn.mean())


def test_ml_gradient_uses_detached_softmax_of_minus_energy():
    theta, sp, sn = setup()
    ml_loss(theta * sp, theta * sn).backward()
    w = torch.softmax(-0.7 * sn, 0)  # IGEBM Eq. 8: weights e^-E / sum e^-E, no gradient through them
    assert torch.allclose(theta.grad, sp.mean() - (w * sn).sum(), atol=1e-6)


def test_ml_equals_cd_when_negative_energies_are_equal():
    e_pos, e_neg = torch.tensor([0.3, -0.1]), torch.full((4,), 0.2)
    assert torch.allclose(ml_loss(e_pos, e_neg), cd_loss(e_pos, e_neg), atol=1e-6)


def test_l2_regulariser_gradient():
    theta, sp, sn = setup()
    l2_reg(theta * sp, theta * sn).backward()
    assert torch.allclose(theta.grad, 2 * 0.7 * ((sp ** 2).mean() + (sn ** 2).mean()))


def test_entropy_loss_is_minus_log_nearest_neighbour_distance():
    bank = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    x = torch.tensor([[0.0, 0.5], [0.9, 0.0]])
    # nearest distances 0.5 and 0.1
    assert torch.allclose(entropy_loss(x, bank), -(torch.log(torch.tensor(0.5)) + torch.log(torch.tensor(0.1))) / 2,
                          atol=1e-5)


def test_entropy_loss_decreases_when_samples_spread_out():
    bank = torch.rand(100, 8) * 0.1
    clustered = torch.rand(16, 8) * 0.1
    spread = torch.rand(16, 8)
    assert entropy_loss(spread, bank) < entropy_loss(clustered, bank)
    x = clustered.clone().requires_grad_(True)
    entropy_loss(x, bank).backward()
    moved = x.detach() - 0.01 * x.grad  # a gradient step on L_ent moves samples away from the bank
    assert entropy_loss(moved, bank) < entropy_loss(clustered, bank)
