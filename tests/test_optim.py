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


def test_outlier_gradient_element_is_clipped_lagged_form():
    p = torch.nn.Parameter(torch.zeros(2))
    opt = ClippedAdam([p], lr=1.0, betas=(0.0, 0.999), std_clip=True, std_clip_form="lagged")
    p.grad = torch.tensor([1.0, 1.0])
    opt.step()  # v = 0.001 * g^2; lagged form: no clip at step 1
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


def _hand_adam(grads, b2, form, eps=1e-8):
    """Parameter after Adam(lr 1, beta1 0) with the std clip, computed by hand in float64 from the formulas."""
    x, v = 0.0, 0.0
    for t, g in enumerate(grads, start=1):
        if form == "tf":    # custom_adam.py: bound from v of steps < t over (1 - beta2^t), from step 1
            bound = 3 * (v / (1 - b2 ** t)) ** 0.5 + 0.1
        else:               # lagged: over (1 - beta2^(t-1)), from step 2
            bound = float("inf") if t == 1 else 3 * (v / (1 - b2 ** (t - 1))) ** 0.5 + 0.1
        g = max(min(g, bound), -bound)
        v = b2 * v + (1 - b2) * g * g
        x -= g / ((v / (1 - b2 ** t)) ** 0.5 + eps)
    return x


@pytest.mark.parametrize("form", ["tf", "lagged"])
def test_std_clip_where_v_hat_is_not_one_matches_a_hand_computation(form):
    # Gradients 4, 2 make v_hat(step 2) = (0.1 * 16 + ... ) != 1 (beta2 = 0.9 so the correction matters);
    # the third gradient 50 is an outlier clipped to 3 sqrt(v_hat) + 0.1 -- a bound of 3 v_hat + 0.1 (no
    # square root) or of sqrt without the bias correction gives another parameter.
    grads = [4.0, 2.0, 50.0, -1.0]
    p = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = ClippedAdam([p], lr=1.0, betas=(0.0, 0.9), std_clip=True, std_clip_form=form)
    for g in grads:
        p.grad = torch.tensor([g], dtype=torch.float64)
        opt.step()
    assert p.item() == pytest.approx(_hand_adam(grads, 0.9, form), rel=1e-12)
    # the two forms differ (step 1 is clipped to 0.1 by tf, not by lagged)
    assert _hand_adam(grads, 0.9, "tf") != pytest.approx(_hand_adam(grads, 0.9, "lagged"), rel=1e-3)


def test_tf_form_clips_the_first_step_to_0_1():
    # custom_adam.py: v = 0 before step 1, so the bound is 0.1 -- the first update sees g = 0.1, not 7.
    p = torch.nn.Parameter(torch.zeros(1))
    opt = ClippedAdam([p], lr=1.0, betas=(0.0, 0.999), std_clip=True, std_clip_form="tf")
    p.grad = torch.tensor([7.0])
    opt.step()
    assert opt.state[p]["v"].item() == pytest.approx(0.001 * 0.1 ** 2)


def clip_bound(v: float, steps_done: int, beta2: float, form: str) -> float | None:
    """IGEBM's bound on the next gradient element: 3 sqrt(v_hat) + 0.1 (IGEBM App. 9.6 / code).

    The one place that states the convention. form "tf" (custom_adam.py): v_hat = v / (1 - beta2^(steps_done+1)),
    from the first step on (v = 0 there: bound 0.1); form "lagged": v / (1 - beta2^steps_done), no clip before
    the first step.
    """
    if form == "tf":
        return 3 * math.sqrt(v / (1 - beta2 ** (steps_done + 1))) + 0.1
    if steps_done == 0:
        return None
    return 3 * math.sqrt(v / (1 - beta2 ** steps_done)) + 0.1


def hand_adam(grads: list[float], lr: float, beta1: float, beta2: float, clip: bool, form: str = "lagged",
              eps: float = 1e-8) -> float:
    """One parameter from 0 after Adam (Kingma & Ba 2015, Alg. 1) on `grads`, each first clipped to +-clip_bound."""
    p = m = v = 0.0
    for t, g in enumerate(grads):
        bound = clip_bound(v, t, beta2, form) if clip else None
        if bound is not None:
            g = max(-bound, min(bound, g))
        m, v = beta1 * m + (1 - beta1) * g, beta2 * v + (1 - beta2) * g * g
        p -= lr * (m / (1 - beta1 ** (t + 1))) / (math.sqrt(v / (1 - beta2 ** (t + 1))) + eps)
    return p


# Per element, three ordinary gradients then one more. v_hat after the three is 0.25 and 4 for the first two
# (bounds 1.6 and 6.1; v_hat in place of its root would give 0.85 and 12.1); the last two are never clipped.
GRADS = [[0.5, 0.5, 0.5, 10.0], [2.0, 2.0, 2.0, -20.0], [0.3, -0.2, 0.4, 0.1], [1e-3, -2e-3, 1e-3, 5e-3]]


@pytest.mark.parametrize("form", ["tf", "lagged"])
@pytest.mark.parametrize("std_clip", [True, False])
def test_std_clip_matches_a_hand_computation_where_v_hat_is_not_1(std_clip, form):
    lr, b1, b2 = 0.1, 0.5, 0.9
    p = torch.nn.Parameter(torch.zeros(len(GRADS)))
    opt = ClippedAdam([p], lr=lr, betas=(b1, b2), std_clip=std_clip, std_clip_form=form)
    for step in zip(*GRADS):
        p.grad = torch.tensor(step)
        opt.step()
    want = torch.tensor([hand_adam(g, lr, b1, b2, clip=std_clip, form=form) for g in GRADS])
    assert torch.allclose(p.detach(), want, rtol=1e-5, atol=1e-7), (p.detach(), want)
    if std_clip and form == "lagged":  # the outliers really were clipped, the ordinary gradients were not
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
