"""Energy networks: interface, parameter counts at paper widths, conditioning, gradients, dropout, spectral norm."""
from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn as nn

from ebm_repro.config import ModelConfig, resolve
from ebm_repro.models import ARCHS, count_params, make_model
from ebm_repro.models.icd import ICDResNet
from ebm_repro.models.igebm import IGEBMResNet
from ebm_repro.models.layers import SpectralNormAtMostOne, has_spectral_norm
from ebm_repro.params import load_params

torch.set_num_threads(1)

# Paper-width recipes (params.yaml: igebm, igebm_cond, icd), written out so the counts do not hang on other edits.
IGEBM_INIT = dict(sn_init="code", head_init="xavier", cond_gain_offset=True, residual_skip=True)  # preset code
TORCH_INIT = dict(sn_init="torch", head_init="torch", cond_gain_offset=False, residual_skip=True)
PAPER = {
    "igebm_resnet32_large": dict(arch="igebm_resnet32_large", width=128, n_classes=0, spectral_norm=True,
                                 spectral_norm_head=False, dropout=0.5, attention=False, multiscale=False,
                                 activation="leaky_relu", norm="none", image_size=32, channels=3, **IGEBM_INIT),
    "igebm_resnet32": dict(arch="igebm_resnet32", width=128, n_classes=10, spectral_norm=True,
                           spectral_norm_head=False, dropout=0.0, attention=False, multiscale=False,
                           activation="leaky_relu", norm="none", image_size=32, channels=3, **IGEBM_INIT),
    "icd_resnet": dict(arch="icd_resnet", width=64, n_classes=0, spectral_norm=False, spectral_norm_head=False,
                       dropout=0.0, attention=True, multiscale=True, activation="swish", norm="group",
                       image_size=32, channels=3, **TORCH_INIT),
    # ICD code CelebAModel as trained for the released CelebA-HQ models (README: --filter_dim=128 --cond)
    "icd_celeba": dict(arch="icd_celeba", width=128, n_classes=2, spectral_norm=False, spectral_norm_head=False,
                       dropout=0.0, attention=True, multiscale=True, activation="swish", norm="instance",
                       image_size=128, channels=3, **TORCH_INIT),
    "mlp2d": dict(arch="mlp2d", width=64, n_classes=0, spectral_norm=True, spectral_norm_head=False, dropout=0.0,
                  attention=False, multiscale=False, activation="swish", norm="none", image_size=1, channels=2,
                  **TORCH_INIT),
    # IGEBM code DspritesNet (E11): num_filters 64, swish (--swish_act), spectral norm, 64x64 binary images
    "dsprites_net": dict(arch="dsprites_net", width=64, n_classes=2, spectral_norm=True, spectral_norm_head=False,
                         dropout=0.0, attention=False, multiscale=False, activation="swish", norm="none",
                         image_size=64, channels=1, **IGEBM_INIT),
}
PAPER["igebm_resnet32_large_fig15b"] = dict(PAPER["igebm_resnet32_large"], arch="igebm_resnet32_large_fig15b",
                                            dropout=0.0)  # preset paper_text: Fig. 15b as printed, no dropout
PAPER["igebm_resnet32_wider"] = dict(PAPER["igebm_resnet32_large"], arch="igebm_resnet32_wider", width=256,
                                     dropout=0.0)  # IGEBM code, --dataset=imagenet: ResNet32Wider(num_filters=256)
TARGETS = {"igebm_resnet32_large": 18.6e6, "igebm_resnet32": 5.4e6, "icd_resnet": 6.6e6}  # methods.md (code)
B = 3


def small(arch: str, **kw) -> ModelConfig:
    """A tiny config of `arch` (width 8, 16x16 images; 64x64 for the CelebA net's six poolings) for fast passes."""
    d = dict(PAPER[arch], width=8)
    if arch != "mlp2d":
        d["image_size"] = 64 if arch == "icd_celeba" else 16
    d.update(kw)
    return ModelConfig(**d)


def inputs(cfg: ModelConfig, conditional: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    shape = (B, cfg.channels) if cfg.arch == "mlp2d" else (B, cfg.channels, cfg.image_size, cfg.image_size)
    y = torch.arange(B) % cfg.n_classes if conditional else None
    return torch.rand(shape), y


def perturb(model: nn.Module) -> None:
    """Move every parameter off its init (class gains 1 / biases 0 make all classes equal at init, as the code)."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))


ALL = [(a, c) for a in ARCHS for c in (False, True)]


def test_archs_table():
    assert set(ARCHS) == {"igebm_resnet32_large", "igebm_resnet32_large_fig15b", "igebm_resnet32", "icd_resnet",
                          "icd_celeba", "mlp2d", "dsprites_net", "igebm_resnet32_wider"}


def test_wider_net_is_the_large_layout_behind_a_fixed_128_channel_stem():
    """Code ResNet32Wider: c1_pre 3 -> 128 whatever F, res_optim 128 -> F with a conv shortcut; the rest as Large."""
    wide = make_model(ModelConfig(**PAPER["igebm_resnet32_wider"]))
    assert wide.stem.weight.shape[0] == 128 and wide.blocks[0].conv1.weight.shape[:2] == (256, 128)
    assert not isinstance(wide.blocks[0].shortcut, nn.Identity)  # 128 -> 256: the code's `_res_adaptive` conv
    assert count_params(wide) == 74_337_537  # F = 256 (printed by this test's first run; ~4x ResNet32Large)
    at_128 = dict(PAPER["igebm_resnet32_wider"], width=128)  # stem = F: exactly ResNet32Large's parameters
    assert count_params(make_model(ModelConfig(**at_128))) == count_params(
        make_model(ModelConfig(**dict(PAPER["igebm_resnet32_large"], dropout=0.0))))


@pytest.mark.parametrize("arch,conditional", ALL)
def test_output_shape_and_cfg(arch, conditional):
    cfg = small(arch, n_classes=4 if conditional else 0)
    model = make_model(cfg)
    assert model.cfg is cfg
    x, y = inputs(cfg, conditional)
    e = model(x, y)
    assert e.shape == (B,) and e.dtype == torch.float32 and torch.isfinite(e).all()


@pytest.mark.parametrize("arch", list(TARGETS))
def test_param_counts_at_paper_width(arch):
    n = count_params(make_model(ModelConfig(**PAPER[arch])))
    assert abs(n - TARGETS[arch]) / TARGETS[arch] < 0.05, f"{arch}: {n:,} params vs about {TARGETS[arch]:,.0f}"


@pytest.mark.parametrize("arch", list(ARCHS))
def test_conditional_energy_depends_on_y(arch):
    cfg = small(arch, n_classes=4)
    model = make_model(cfg).eval()
    perturb(model)
    x, _ = inputs(cfg, False)
    e0, e1 = model(x, torch.zeros(B, dtype=torch.long)), model(x, torch.ones(B, dtype=torch.long))
    assert not torch.allclose(e0, e1)
    torch.testing.assert_close(model(x, torch.ones(B, dtype=torch.int32)), e1)  # any integer label dtype


@pytest.mark.parametrize("arch", list(ARCHS))
def test_label_mismatch_raises(arch):
    cond, uncond = make_model(small(arch, n_classes=4)), make_model(small(arch, n_classes=0))
    x, y = inputs(cond.cfg, True)
    with pytest.raises(ValueError, match="conditional"):
        cond(x)
    with pytest.raises(ValueError, match="unconditional"):
        uncond(x, y)
    with pytest.raises(ValueError, match="integer"):
        cond(x, y.float())


def test_wrong_input_shape_raises():
    model = make_model(small("igebm_resnet32_large", n_classes=0))
    with pytest.raises(ValueError, match="image_size"):
        model(torch.rand(B, 3, 32, 32))


@pytest.mark.parametrize("arch,conditional", ALL)
def test_grad_wrt_x_finite(arch, conditional):
    cfg = small(arch, n_classes=4 if conditional else 0)
    model = make_model(cfg)
    x, y = inputs(cfg, conditional)
    x.requires_grad_(True)
    (g,) = torch.autograd.grad(model(x, y).sum(), x)
    assert g.shape == x.shape and torch.isfinite(g).all() and g.abs().sum() > 0


@pytest.mark.parametrize("arch", ["igebm_resnet32_large", "icd_resnet"])
def test_double_backward_through_energy_grad(arch):
    """ICD's L_opt differentiates the Langevin step dE/dx w.r.t. the parameters (create_graph)."""
    cfg = small(arch, n_classes=0)
    model = make_model(cfg)
    x, _ = inputs(cfg, False)
    x.requires_grad_(True)
    (g,) = torch.autograd.grad(model(x).sum(), x, create_graph=True)
    (x - 10.0 * g).pow(2).sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("arch", [a for a in ARCHS if a != "dsprites_net"])  # IGEBM's DspritesNet: no dropout
def test_dropout_train_vs_eval(arch):
    # spectral norm off: its power iteration also changes train-mode outputs from call to call
    cfg = small(arch, n_classes=0, dropout=0.5, spectral_norm=False)
    model = make_model(cfg)
    perturb(model)  # IGEBM's near-zero second conv would otherwise hide the dropout mask
    x, _ = inputs(cfg, False)
    model.train()
    assert not torch.allclose(model(x), model(x))
    model.eval()
    assert torch.equal(model(x), model(x))
    no_dropout = make_model(dataclasses.replace(cfg, dropout=0.0)).train()
    assert torch.equal(no_dropout(x), no_dropout(x))


def test_igebm_spectral_norm_on_every_conv_not_final_linear():
    model = make_model(small("igebm_resnet32_large"))
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 1 + 9 * 2 + 2 and all(has_spectral_norm(c) for c in convs)  # stem, 9 blocks, 2 shortcuts
    assert not has_spectral_norm(model.head)
    off = make_model(small("igebm_resnet32_large", spectral_norm=False))
    assert not any(has_spectral_norm(m) for m in off.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))


@pytest.mark.parametrize("arch", ["igebm_resnet32_large", "igebm_resnet32", "mlp2d"])
def test_spectral_norm_head_switch_normalises_the_final_dense_layer(arch):
    """IGEBM paper text: "spectral normalization on all layers"; preset paper_text sets spectral_norm_head."""
    model = make_model(small(arch, spectral_norm_head=True))
    assert has_spectral_norm(model.head)
    with torch.no_grad():  # sigma_max of the effective head weight is at most 1 after a few power iterations
        for _ in range(20):
            model(*inputs(model.cfg, arch == "igebm_resnet32"))
    assert torch.linalg.matrix_norm(model.head.weight, ord=2) <= 1.0 + 1e-3


def test_mlp_spectral_norm_hidden_only():
    model = make_model(small("mlp2d"))
    assert all(has_spectral_norm(m) for m in model.hidden) and not has_spectral_norm(model.head)


def test_icd_spectral_norm_option_replaces_weight_standardisation():
    model = make_model(small("icd_resnet", spectral_norm=True))
    block = model.scales[0].stages[0][0]
    assert has_spectral_norm(block.conv1) and has_spectral_norm(block.conv2)
    assert not any(has_spectral_norm(net.head) for net in model.scales)


def test_igebm_second_conv_starts_near_zero_and_is_bounded():
    """Zero init survives spectral norm (code's lower-bound variant), which still caps the norm at 1."""
    model = make_model(small("igebm_resnet32_large")).train()
    conv2 = model.blocks[0].conv2
    assert isinstance(conv2.parametrizations.weight[0], SpectralNormAtMostOne)
    assert conv2.weight.abs().max() < 1e-6
    with torch.no_grad():
        conv2.parametrizations.weight.original.normal_()
    for _ in range(200):  # power iteration converges over training forwards (slowly when sigma_1 ~ sigma_2)
        w = conv2.weight
    assert torch.linalg.matrix_norm(w.flatten(1), ord=2) <= 1.0 + 1e-3


def test_multiscale_energy_is_sum_of_scales():
    cfg = small("icd_resnet", n_classes=0)
    model = make_model(cfg).eval()
    assert isinstance(model, ICDResNet) and len(model.scales) == 3
    assert [len(net.stages) for net in model.scales] == [4, 3, 2]
    assert [net.n_pool for net in model.scales] == [0, 1, 2]
    x, _ = inputs(cfg, False)
    parts = [net(x, None) for net in model.scales]
    torch.testing.assert_close(model(x), parts[0] + parts[1] + parts[2])
    torch.testing.assert_close(model.scale_energies(x), torch.stack(parts, dim=1))
    single = make_model(small("icd_resnet", multiscale=False, attention=False))
    assert len(single.scales) == 1 and single.scales[0].attention is None


@pytest.mark.parametrize("arch,field,value", [
    ("igebm_resnet32_large", "attention", True),
    ("igebm_resnet32", "multiscale", True),
    ("igebm_resnet32_large", "norm", "group"),
    ("igebm_resnet32_large", "image_size", 20),
    ("icd_resnet", "image_size", 18),
    ("icd_celeba", "image_size", 96),
    ("icd_celeba", "width", 7),
    ("mlp2d", "image_size", 32),
    ("mlp2d", "attention", True),
    ("mlp2d", "activation", "tanh"),
    ("icd_resnet", "dropout", 1.0),
    ("mlp2d", "arch", "resnet50"),
])
def test_bad_field_raises_naming_it(arch, field, value):
    cfg = dataclasses.replace(small(arch), **{field: value})
    with pytest.raises(ValueError, match=f"model.{field}"):
        make_model(cfg)


@pytest.mark.parametrize("arch", list(ARCHS))
def test_state_dict_round_trip_strict(arch):
    cfg = small(arch, n_classes=4)
    a, b = make_model(cfg), make_model(cfg)
    b.load_state_dict(a.state_dict(), strict=True)
    a.eval(), b.eval()
    x, y = inputs(cfg, True)
    torch.testing.assert_close(a(x, y), b(x, y))


@pytest.mark.parametrize("variant", ["igebm_uncond", "igebm_cond", "icd"])
def test_params_yaml_variants_build(variant):
    """Every image variant of params.yaml builds in the smoke setting and runs a tiny batch."""
    cfg = resolve(load_params(), variant, setting="smoke").hp.model
    model = make_model(cfg)
    x, y = inputs(cfg, cfg.n_classes > 0)
    assert model(x, y).shape == (B,)
    assert dataclasses.asdict(model.cfg) == dataclasses.asdict(cfg)
    assert isinstance(model, ICDResNet if cfg.arch == "icd_resnet" else IGEBMResNet)


def test_icd_instance_norm_follows_the_code_rule():
    """norm 'instance' (ICD code CondResBlock): InstanceNorm2d(affine) up to 128 channels, GroupNorm(32) above."""
    from ebm_repro.models.layers import block_norm
    x = torch.randn(2, 64, 5, 5) * 3 + 1
    torch.testing.assert_close(block_norm("instance", 64)(x), nn.InstanceNorm2d(64, affine=True)(x))
    wide = block_norm("instance", 256)
    assert isinstance(wide, nn.GroupNorm) and wide.num_groups == 32
    paper = block_norm("group", 64)
    assert paper.num_groups == 32 and isinstance(block_norm("none", 64), nn.Identity)
    net = make_model(ModelConfig(**dict(PAPER["icd_resnet"], norm="instance")))
    groups = {m.num_channels: m.num_groups for m in net.modules() if isinstance(m, nn.GroupNorm)}
    assert groups == {64: 64, 128: 128, 256: 32}
    assert count_params(net) == count_params(make_model(ModelConfig(**PAPER["icd_resnet"])))


def test_igebm_fig15b_keeps_the_last_stage_at_256_channels():
    """Paper Fig. 15b (preset paper_text) vs code ResNet32Large: 128 -> 256 -> 256 instead of -> 512."""
    paper = make_model(ModelConfig(**PAPER["igebm_resnet32_large_fig15b"]))
    code = make_model(ModelConfig(**PAPER["igebm_resnet32_large"]))
    assert [b.conv2.weight.shape[0] for b in paper.blocks] == [128] * 3 + [256] * 6
    assert [b.conv2.weight.shape[0] for b in code.blocks][-1] == 512
    assert paper.head.in_features == 256 and count_params(paper) < count_params(code) / 2


# ----------------------------------------------------------------------------- authors' init and switches (issue 8)
def _raw(conv: nn.Module) -> torch.Tensor:
    return conv.parametrizations.weight.original


@pytest.mark.parametrize("sn_init, std", [("code", 1.0), ("torch", None)])
def test_spectral_norm_weights_start_as_the_switch_says(sn_init, std):
    # IGEBM utils.py get_weight: spectral-normed weights start N(0, 1); torch's Kaiming-uniform has
    # std = 1 / sqrt(3 fan_in) (a = sqrt(5)): 1/sqrt(3 * 9 * 128) = 0.0170 for the 128-channel 3x3 convs.
    model = make_model(ModelConfig(**dict(PAPER["igebm_resnet32_large"], sn_init=sn_init)))
    w = _raw(model.blocks[1].conv1)                       # (128, 128, 3, 3): 147,456 draws
    want = std if std is not None else 1 / (3 * 9 * 128) ** 0.5
    assert w.std().item() == pytest.approx(want, rel=0.01)
    assert _raw(model.blocks[1].conv2).abs().max() < 1e-8  # the zero-init conv stays near zero either way


@pytest.mark.parametrize("head_init", ["xavier", "torch"])
def test_dense_head_init(head_init):
    model = make_model(ModelConfig(**dict(PAPER["igebm_resnet32_large"], head_init=head_init)))
    w, b = model.head.weight, model.head.bias                # (1, 512), (1,)
    # Xavier-uniform bound sqrt(6 / (fan_in + fan_out)) = sqrt(6 / 513) = 0.1081; torch: 1 / sqrt(512) = 0.0442
    bound = (6 / 513) ** 0.5 if head_init == "xavier" else 1 / 512 ** 0.5
    assert w.abs().max().item() <= bound and w.abs().max().item() > 0.9 * bound
    assert (b == 0).all() if head_init == "xavier" else b.abs().item() > 0


def test_conditional_gain_has_a_shared_offset_only_when_asked():
    on = make_model(small("igebm_resnet32", n_classes=4, cond_gain_offset=True)).eval()
    off = make_model(small("igebm_resnet32", n_classes=4, cond_gain_offset=False))
    assert on.blocks[0].gain_offset.shape == (8,) and off.blocks[0].gain_offset is None
    assert count_params(on) - count_params(off) == sum(b.conv2.weight.shape[0] for b in on.blocks)
    x, y = inputs(small("igebm_resnet32", n_classes=4), True)
    perturb(on)
    base = on(x, y)
    with torch.no_grad():  # an offset c on every class's gain equals adding c to each class row of g
        for blk in on.blocks:
            blk.gain_offset.add_(0.3)
    shifted = on(x, y)
    with torch.no_grad():
        for blk in on.blocks:
            blk.gain_offset.sub_(0.3)
            blk.gain2.weight.add_(0.3)
    assert not torch.allclose(base, shifted) and torch.allclose(on(x, y), shifted, atol=1e-6)
    assert make_model(small("igebm_resnet32_large", cond_gain_offset=True)).blocks[0].gain_offset is None


def test_icd_residual_skip_switch():
    # With the convs' output zeroed the block is its skip (x) or nothing (0) before the down path.
    for skip in (True, False):
        model = make_model(small("icd_resnet", residual_skip=skip, multiscale=False, attention=False)).eval()
        block = model.scales[0].stages[0][0]                 # no down conv: output = act(...) (+ x)
        with torch.no_grad():
            block.norm2.weight.zero_()
            block.norm2.bias.zero_()
        x = torch.randn(2, 8, 16, 16)
        out = block(x, None)                                 # swish(0) = 0
        assert torch.allclose(out, x if skip else torch.zeros_like(x))


def celeba_hand_count(f: int, classes: int) -> int:
    """Parameters of the ICD code's CelebAModel(filter_dim=f, cond, multiscale, self_attn), counted by hand from
    models.py at 7d3d4ee (CondResBlock l.52-113, Self_Attn l.16-26, CelebAModel l.413-490), without its unused
    `heir_weight` (3 numbers, l.429; never read by forward)."""
    def block(c, down):  # conv1, conv2 (+bias), bn1, bn2 (affine), latent_map(_2) Linear(classes, 2c), downsample conv
        n = 2 * (9 * c * c + c) + 2 * 2 * c + 2 * (classes * 2 * c + 2 * c)
        return n + (9 * c * down + down if down else 0)

    def stem(c):
        return 27 * c + c

    def attn(c):  # query/key 1x1 convs to c/8, value 1x1 conv to c, gamma
        return 2 * (c * (c // 8) + c // 8) + c * c + c + 1

    main = (stem(f // 2) + block(f // 2, f) + block(f, f) + block(f, f) + block(f, 2 * f) + block(2 * f, 0)
            + block(2 * f, 4 * f) + attn(4 * f) + block(4 * f, 0) + block(4 * f, 8 * f) + 8 * f + 1)
    mid = (stem(f) + block(f, f) + block(f, f) + block(f, f) + block(f, 2 * f) + block(2 * f, 0)
           + block(2 * f, 4 * f) + 4 * f + 1)
    small = stem(f) + block(f, f) + block(f, f) + block(f, f) + block(f, 2 * f) + 2 * f + 1
    return main + mid + small


@pytest.mark.parametrize("width", [128, 16])
def test_icd_celeba_param_count_matches_a_hand_count_of_the_code(width):
    cfg = ModelConfig(**dict(PAPER["icd_celeba"], width=width))
    assert count_params(make_model(cfg)) == celeba_hand_count(width, classes=2)
    if width == 128:
        assert celeba_hand_count(128, 2) == 27_095_940  # about 27M at the released models' filter_dim


def test_icd_celeba_layout_follows_the_code():
    """Stem F/2, attention at 4F after res_3b, side scales with instance norm and WS convs whatever cfg says."""
    from ebm_repro.models.layers import WSConv2d
    cfg = ModelConfig(**dict(PAPER["icd_celeba"], width=16, image_size=64, norm="none", spectral_norm=True))
    net = make_model(cfg)
    main, mid, small_net = net.scales
    assert main.stem.out_channels == 8 and mid.stem.out_channels == small_net.stem.out_channels == 16
    assert [b.down.out_channels if b.down is not None else None for b in main.blocks] == \
        [16, 16, 16, 32, None, 64, None, 128]
    assert main.attention.value.in_channels == 64 and mid.attention is None and small_net.attention is None
    assert [s.n_pool for s in net.scales] == [0, 1, 2]
    assert has_spectral_norm(main.blocks[0].conv1) and isinstance(main.blocks[0].norm1, nn.Identity)
    for side in (mid, small_net):
        assert all(isinstance(b.conv1, WSConv2d) and isinstance(b.norm1, nn.GroupNorm) for b in side.blocks)
    x = torch.rand(2, 3, 64, 64)
    y = torch.tensor([0, 1])
    parts = net.eval().scale_energies(x, y)
    assert parts.shape == (2, 3)
    torch.testing.assert_close(net(x, y), parts.sum(dim=1))
