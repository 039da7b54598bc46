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


class _Linear(torch.nn.Module):
    """E_theta(x) = theta * sum(x), as a module so `frozen` can stop its gradient."""

    def __init__(self):
        super().__init__()
        self.theta = torch.nn.Parameter(torch.tensor(0.7))

    def forward(self, x):
        return self.theta * x.sum(1)


def _loss_config(**kw):
    from ebm_repro.config import LossConfig
    d = dict(kind="cd", l2_coeff=0.5, kl_opt_coeff=2.0, kl_ent_coeff=0.3, kl_opt_chains=2, kl_all_steps=False,
             ent_n_neighbours=3, ent_min_buffer=0, ent_bank_augment=False, ent_bank_after_push=True,
             multiscale_reduce="sum")
    return LossConfig(**{**d, **kw})


def test_training_loss_is_main_plus_weighted_terms_and_l_opt_leaves_theta_alone():
    from ebm_repro.losses import training_loss

    model, xp, xn, bank = _Linear(), torch.rand(5, 3), torch.rand(7, 3), torch.rand(4, 3)
    x_kl = torch.rand(2, 3, requires_grad=True)  # stands for the sampler's differentiable last step
    e_pos, e_neg = model(xp), model(xn)
    t = training_loss(_loss_config(), model, model, e_pos, e_neg, x_kl, lambda: bank)
    e_kl = 0.7 * x_kl.sum(1)
    want = cd_loss(e_pos, e_neg) + 0.5 * l2_reg(e_pos, e_neg) + 2.0 * e_kl.mean() + 0.3 * entropy_loss(x_kl, bank)
    assert torch.allclose(t.total, want)
    assert set(t.parts) == {"loss_kl_opt", "loss_ent"}
    t.kl.backward()  # L_KL: gradient flows into the samples only, never into theta (ICD Eq. 6 stop-grad)
    assert model.theta.grad is None and x_kl.grad is not None


def test_training_loss_skips_l_ent_without_a_bank_and_follows_loss_kind():
    from ebm_repro.losses import training_loss

    model, xp, xn, x_kl = _Linear(), torch.rand(5, 3), torch.rand(7, 3), torch.rand(2, 3)
    e_pos, e_neg = model(xp), model(xn)
    t = training_loss(_loss_config(kind="ml", kl_opt_coeff=0.0), model, model, e_pos, e_neg, x_kl, None)
    assert t.parts == {} and float(t.kl) == 0.0
    assert torch.allclose(t.total, ml_loss(e_pos, e_neg) + 0.5 * l2_reg(e_pos, e_neg))
