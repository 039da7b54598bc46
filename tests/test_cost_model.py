"""benchmarks/cost_model.py counts FLOPs as a hand count of a tiny conv + linear net says, and image-steps per sample
as the protocol's arithmetic says."""
from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import torch
from torch import nn

from ebm_repro import config as C
from ebm_repro.params import load_params

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("cost_model", ROOT / "benchmarks" / "cost_model.py")
cost_model = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cost_model)

B, C_IN, C_OUT, H, K, D_OUT = 3, 2, 4, 5, 3, 7
CONV = 2 * B * C_OUT * H * H * C_IN * K * K        # one multiply-add per weight per output pixel: 2 FLOPs
LIN = 2 * B * (C_OUT * H * H) * D_OUT


def tiny_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(C_IN, C_OUT, K, padding=1), nn.Flatten(), nn.Linear(C_OUT * H * H, D_OUT))


def test_forward_and_input_gradient_flops_equal_the_hand_count():
    net, x = tiny_net(), torch.rand(B, C_IN, H, H, requires_grad=True)
    # a Langevin step: forward, then d/dx only -- the input gradients of the linear and the conv (a transposed conv
    # of the same size), no weight gradients although the weights require grad
    assert cost_model.count(lambda: torch.autograd.grad(net(x).sum(), x)) == CONV + LIN + LIN + CONV


def test_weight_gradient_flops_equal_the_hand_count():
    net, x = tiny_net(), torch.rand(B, C_IN, H, H)
    # a training backward: both weight gradients and the linear's input gradient; none for the input image
    assert cost_model.count(lambda: net(x).sum().backward()) == CONV + LIN + (LIN + LIN + CONV)


def test_image_steps_per_sample_fresh_chains_is_the_steps_of_one_chain():
    params = load_params()
    ts = C.resolve(params, "icd", setting="paper").hp.test_sampling
    fresh = dataclasses.replace(ts, protocol="fresh_chains", n_chains=8, steps_per_iter=5, n_iters=3)
    # every kept sample is a chain of its own: n_iters x steps_per_iter image-steps, none shared or thrown away
    assert cost_model.image_steps_per_sample(fresh, 20) == 5 * 3
