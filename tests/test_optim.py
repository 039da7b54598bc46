"""ClippedAdam equals Adam without the clip and clips outliers to 3 sqrt(v_hat) + 0.1; EMA arithmetic."""
import math

import pytest
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


def clip_bound(v: float, steps_done: int, beta2: float) -> float | None:
    """IGEBM's bound on the next gradient element: 3 sqrt(v_hat) + 0.1, v_hat = v / (1 - beta2^steps_done) from
    the steps so far (IGEBM App. 9.6 / code); None before the first step (no second moment yet: no clip).

    The one place that states the convention: a change of when the clip starts or how v is bias-corrected goes here.
    """
    if steps_done == 0:
        return None
    return 3 * math.sqrt(v / (1 - beta2 ** steps_done)) + 0.1


def hand_adam(grads: list[float], lr: float, beta1: float, beta2: float, clip: bool, eps: float = 1e-8) -> float:
    """One parameter from 0 after Adam (Kingma & Ba 2015, Alg. 1) on `grads`, each first clipped to +-clip_bound."""
    p = m = v = 0.0
    for t, g in enumerate(grads):
        bound = clip_bound(v, t, beta2) if clip else None
        if bound is not None:
            g = max(-bound, min(bound, g))
        m, v = beta1 * m + (1 - beta1) * g, beta2 * v + (1 - beta2) * g * g
        p -= lr * (m / (1 - beta1 ** (t + 1))) / (math.sqrt(v / (1 - beta2 ** (t + 1))) + eps)
    return p


# Per element, three ordinary gradients then one more. v_hat after the three is 0.25 and 4 for the first two
# (bounds 1.6 and 6.1; v_hat in place of its root would give 0.85 and 12.1); the last two are never clipped.
GRADS = [[0.5, 0.5, 0.5, 10.0], [2.0, 2.0, 2.0, -20.0], [0.3, -0.2, 0.4, 0.1], [1e-3, -2e-3, 1e-3, 5e-3]]


@pytest.mark.parametrize("std_clip", [True, False])
def test_std_clip_matches_a_hand_computation_where_v_hat_is_not_1(std_clip):
    lr, b1, b2 = 0.1, 0.5, 0.9
    p = torch.nn.Parameter(torch.zeros(len(GRADS)))
    opt = ClippedAdam([p], lr=lr, betas=(b1, b2), std_clip=std_clip)
    for step in zip(*GRADS):
        p.grad = torch.tensor(step)
        opt.step()
    want = torch.tensor([hand_adam(g, lr, b1, b2, clip=std_clip) for g in GRADS])
    assert torch.allclose(p.detach(), want, rtol=1e-5, atol=1e-7), (p.detach(), want)
    if std_clip:  # the outliers really were clipped, the ordinary gradients were not
        plain = torch.tensor([hand_adam(g, lr, b1, b2, clip=False) for g in GRADS])
        assert ((want - plain).abs()[:2] > 0.005).all() and torch.allclose(want[2:], plain[2:])


def test_ema_update():
    m = torch.nn.Linear(3, 1)
    ema = EMA(m, decay=0.9)
    old = m.weight.detach().clone()
    with torch.no_grad():
        m.weight.add_(1.0)
    ema.update(m)
    assert torch.allclose(ema.model.weight, 0.9 * old + 0.1 * (old + 1.0))
