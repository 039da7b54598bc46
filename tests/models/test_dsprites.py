"""dsprites_net (IGEBM code DspritesNet, E11): layout, hand-counted size, latent conditioning, checks."""
from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn as nn

from ebm_repro.config import ModelConfig
from ebm_repro.models import count_params, make_model
from ebm_repro.models.dsprites import DspritesNet
from ebm_repro.models.layers import has_spectral_norm

PAPER = ModelConfig(arch="dsprites_net", width=64, n_classes=2, spectral_norm=True, spectral_norm_head=False,
                    dropout=0.0, attention=False, multiscale=False, activation="swish", norm="none", image_size=64,
                    channels=1, sn_init="code", head_init="xavier", cond_gain_offset=True, residual_skip=True)


def cfg(**kw) -> ModelConfig:
    return dataclasses.replace(PAPER, **{"width": 8, "image_size": 32, **kw})


def perturb(model: nn.Module) -> None:
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))


def hand_count(f: int, d: int, side: int = 4) -> int:
    """models.py l.136-142 at num_filters f: c1_pre 3x3 1->32 (f/2), c1..c4 4x4, fc_dense, fc5; no conv biases.
    Conditioning: input biases (d x c_in) on c1..c4, gain (d x c_out) and its offset cb on c3; unconditional
    (d = 0): one bias row per conv and one gain row, no offset (the code's plain `gb` / `g` vectors)."""
    convs = 9 * 1 * (f // 2) + 16 * (f // 2) * f + 16 * f * 2 * f + 2 * 16 * (2 * f) ** 2
    dense = 2 * f * side * side * 2 * f + 2 * f + 2 * f + 1
    rows = max(d, 1)
    cond = rows * (f // 2 + f + 2 * f + 2 * f) + rows * 2 * f + (2 * f if d else 0)
    return convs + dense + cond


@pytest.mark.parametrize("d", [1, 2, 3])
def test_param_count_matches_a_hand_count_of_the_code(d):
    n = count_params(make_model(dataclasses.replace(PAPER, n_classes=d)))
    assert n == hand_count(64, d)
    assert abs(n - 0.95e6) < 0.01e6   # about 0.95M at the code's 64 filters


def test_unconditional_net_has_one_shared_bias_and_gain_row():
    net = make_model(dataclasses.replace(PAPER, n_classes=0))
    assert count_params(net) == hand_count(64, 0)
    assert net.cond[0].bias.shape == (1, 32) and net.cond[2].gain.shape == (1, 128) and net.cond[2].offset is None


def test_spatial_layout_halves_four_times_with_same_padding():
    net = make_model(PAPER).eval()
    sizes = []
    for conv in net.convs:
        conv.register_forward_hook(lambda m, i, o: sizes.append(tuple(o.shape[1:])))
    net(torch.rand(2, 1, 64, 64), torch.rand(2, 2))
    assert sizes == [(64, 32, 32), (128, 16, 16), (128, 8, 8), (128, 4, 4)]
    assert net.stem.out_channels == 32 and net.dense.in_features == 128 * 16


def test_spectral_norm_on_every_conv_and_the_hidden_dense_not_the_head():
    net = make_model(cfg())
    assert has_spectral_norm(net.stem) and all(has_spectral_norm(c) for c in net.convs)
    assert has_spectral_norm(net.dense) and not has_spectral_norm(net.head)
    assert all(c.bias is None for c in [net.stem, *net.convs])   # code conv_block: use_bias False


def test_only_the_third_conv_has_a_gain():
    net = make_model(cfg())
    assert [c.gain is not None for c in net.cond] == [False, False, True, False]


def test_integer_labels_equal_their_one_hot_latents():
    net = make_model(cfg(n_classes=3)).eval()
    perturb(net)
    x, y = torch.rand(4, 1, 32, 32), torch.tensor([0, 2, 1, 2])
    torch.testing.assert_close(net(x, y), net(x, torch.eye(3)[y]))


def test_continuous_latents_enter_linearly_as_biases_and_gain():
    """At init (biases 0, gains 1, offset 0) only the gain y @ G = sum(y) matters; the projection is linear in y."""
    net = make_model(cfg(n_classes=2)).eval()
    x = torch.rand(3, 1, 32, 32)
    a = torch.tensor([[0.3, 0.2]]).expand(3, 2)
    b = torch.tensor([[0.1, 0.4]]).expand(3, 2)     # same sum: same gain, same energy at init
    torch.testing.assert_close(net(x, a), net(x, b))
    perturb(net)
    assert not torch.allclose(net(x, a), net(x, b))
    cond = net.cond[1]
    torch.testing.assert_close(cond.in_bias(a + b), cond.in_bias(a) + cond.in_bias(b))


def test_gradient_wrt_latents_and_image_is_finite():
    net = make_model(cfg(n_classes=2))
    x, y = torch.rand(2, 1, 32, 32, requires_grad=True), torch.rand(2, 2, requires_grad=True)
    gx, gy = torch.autograd.grad(net(x, y).sum(), [x, y])
    assert torch.isfinite(gx).all() and torch.isfinite(gy).all() and gy.abs().sum() > 0


@pytest.mark.parametrize("field,value", [("image_size", 24), ("dropout", 0.5), ("attention", True),
                                         ("norm", "group")])
def test_bad_field_raises_naming_it(field, value):
    with pytest.raises(ValueError, match=f"model.{field}"):
        make_model(cfg(**{field: value}))


def test_latent_shape_is_checked():
    net = make_model(cfg(n_classes=2))
    x = torch.rand(2, 1, 32, 32)
    with pytest.raises(ValueError, match=r"float latents \(2, 2\)"):
        net(x, torch.rand(2, 3))
    with pytest.raises(ValueError, match="pass latents"):
        net(x)
    assert isinstance(net, DspritesNet)
