"""ClippedAdam equals Adam without the clip and clips outliers to 3 sqrt(v_hat) + 0.1; EMA arithmetic."""
import torch

from ebm_repro.optim import EMA, ClippedAdam


def test_without_clip_it_is_adam():
    torch.manual_seed(0)
    p1 = torch.nn.Parameter(torch.randn(20))
    p2 = torch.nn.Parameter(p1.detach().clone())
    o1 = ClippedAdam([p1], lr=1e-2, betas=(0.0, 0.999), std_clip=False)
    o2 = torch.optim.Adam([p2], lr=1e-2, betas=(0.0, 0.999))
    for _ in range(5):
        g = torch.randn(20)
        p1.grad, p2.grad = g.clone(), g.clone()
        o1.step()
        o2.step()
    assert torch.allclose(p1, p2, atol=1e-6)


def test_outlier_gradient_element_is_clipped():
    p = torch.nn.Parameter(torch.zeros(2))
    opt = ClippedAdam([p], lr=1.0, betas=(0.0, 0.999), std_clip=True)
    p.grad = torch.tensor([1.0, 1.0])
    opt.step()  # v = 0.001 * g^2
    v_hat = opt.state[p]["v"] / (1 - 0.999)  # = 1
    p.grad = torch.tensor([1000.0, 0.5])
    before = p.detach().clone()
    opt.step()
    bound = 3 * v_hat.sqrt() + 0.1  # 3.1
    g = torch.tensor([bound[0].item(), 0.5])
    v = 0.999 * opt.state[p]["v"].new_tensor([0.001, 0.001]) + 0.001 * g ** 2
    m_hat = g  # beta1 = 0
    expected = before - m_hat / ((v / (1 - 0.999 ** 2)).sqrt() + 1e-8)
    assert torch.allclose(p.detach(), expected, atol=1e-5)
    assert torch.allclose(opt.state[p]["v"], v)  # the clipped value, not 1000, entered the moments


def test_ema_update():
    m = torch.nn.Linear(3, 1)
    ema = EMA(m, decay=0.9)
    old = m.weight.detach().clone()
    with torch.no_grad():
        m.weight.add_(1.0)
    ema.update(m)
    assert torch.allclose(ema.model.weight, 0.9 * old + 0.1 * (old + 1.0))
