"""Batched augmentation (runtime.augment: batched) = torchvision's transform: same maths per image, same laws.

Given parameters, BatchedAugment.apply equals torchvision's functional ops image by image; its parameter draws
follow the laws of torchvision's own transforms (two-sample Kolmogorov-Smirnov and binomial bounds at
alpha = 1e-3, fixed seeds); whole-transform statistics agree too, and the same tests reject a transform with one
law changed (so they can fail).
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from ebm_repro import config as C
from ebm_repro.augment import Blur, BatchedAugment, crop_boxes, make_augment
from ebm_repro.params import load_params

ROOT = Path(__file__).resolve().parents[1]
ALPHA_C = math.sqrt(-math.log(1e-3 / 2) / 2)   # KS: reject at alpha = 1e-3 when D > c sqrt((n + m) / (n m))


def icd_augment() -> C.AugmentConfig:
    return C.resolve(load_params(ROOT / "params.yaml"), "icd", setting="paper").hp.augment


BLUR = Blur(0.5, 5, 0.1, 2.0)  # ICD test-time transition (test_inception.py)


def ks_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Two-sample Kolmogorov-Smirnov statistic sup |F_a - F_b|."""
    a, b = a.double().sort().values, b.double().sort().values
    grid = torch.cat([a, b])
    fa = torch.searchsorted(a, grid, right=True).double() / len(a)
    fb = torch.searchsorted(b, grid, right=True).double() / len(b)
    return float((fa - fb).abs().max())


def same_law(a: torch.Tensor, b: torch.Tensor) -> bool:
    n, m = len(a), len(b)
    return ks_distance(a, b) <= ALPHA_C * math.sqrt((n + m) / (n * m))


def rate_is(k: int, n: int, p: float) -> bool:
    """k successes in n trials are within 4 standard deviations of rate p (binomial)."""
    return abs(k - n * p) <= 4 * math.sqrt(n * p * (1 - p)) + 1e-9


# ----------------------------------------------------------------------------- same maths, given parameters
def reference_apply(x: torch.Tensor, p: dict, aug: BatchedAugment) -> torch.Tensor:
    """The parameters of a batch applied image by image with torchvision's functional ops."""
    out = []
    for i, img in enumerate(x):
        top, left, h, w = (int(v) for v in p["box"][i])
        y = TF.resized_crop(img, top, left, h, w, [aug.size, aug.size], antialias=True)
        if p["flip"][i]:
            y = TF.horizontal_flip(y)
        if p["jitter"][i]:
            ops = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue)
            for k in p["order"][i].tolist():
                if p["factors"][k] is not None:
                    y = ops[k](y, float(p["factors"][k][i]))
        if p["gray"][i]:
            y = TF.rgb_to_grayscale(y, num_output_channels=3)
        if p["sigma"] is not None and p["blur"][i]:
            s = float(p["sigma"][i])
            y = TF.gaussian_blur(y, [aug.blur.kernel] * 2, [s, s])
        out.append(y)
    return torch.stack(out).clamp(0, 1)


def test_batched_ops_equal_torchvision_image_by_image_given_the_parameters():
    torch.manual_seed(0)
    aug = BatchedAugment(icd_augment(), 32, BLUR)
    x = torch.rand(64, 3, 32, 32)
    p = aug.params(64, 3, 32, 32, "cpu")
    # every branch is taken by some image: both flip states, jitter orders, grayscale, blur, small and full crops
    assert p["flip"].any() and (~p["flip"]).any() and p["gray"].any() and p["blur"].any() and p["jitter"].any()
    assert (p["box"][:, 2] == 32).any() or (p["box"][:, 2] < 12).any()
    got, want = aug.apply(x, p), reference_apply(x, p, aug)
    assert (got - want).abs().max() < 2e-5


def test_resize_weights_are_identity_for_a_full_crop():
    aug = BatchedAugment(dataclasses.replace(icd_augment(), jitter_p=0.0, grayscale_p=0.0, hflip=False), 32, None)
    x = torch.rand(2, 3, 32, 32)
    p = aug.params(2, 3, 32, 32, "cpu")
    p["box"] = torch.tensor([[0, 0, 32, 32]] * 2)
    assert torch.allclose(aug.apply(x, p), x, atol=1e-6)


# ----------------------------------------------------------------------------- same laws
def torchvision_crops(n: int, height: int, width: int, scale: tuple[float, float]) -> torch.Tensor:
    t = v2.RandomResizedCrop(32, scale=scale, antialias=True)
    img = torch.zeros(3, height, width)
    rows = [t.make_params([img]) for _ in range(n)]
    return torch.tensor([[r["top"], r["left"], r["height"], r["width"]] for r in rows])


@pytest.mark.parametrize("height, width", [(32, 32), (8, 32)])   # (8, 32): most tries fail -> the fallback
def test_crop_boxes_follow_random_resized_crop(height, width):
    torch.manual_seed(1)
    n, scale = 4000, (0.08, 1.0)
    ref, got = torchvision_crops(n, height, width, scale), crop_boxes(n, height, width, scale)
    for a, b, what in [(ref, got, "ours"), (ref, crop_boxes(n, height, width, (0.2, 1.0)), "scale 0.2")]:
        area = (a[:, 2] * a[:, 3]).float(), (b[:, 2] * b[:, 3]).float()
        aspect = (a[:, 3] / a[:, 2]).log(), (b[:, 3] / b[:, 2]).log()
        # corner position relative to its free range: uniform in [0, 1] for any box size
        pos = [(c[:, 0] + 0.5) / (height - c[:, 2] + 1) for c in (a, b)], \
              [(c[:, 1] + 0.5) / (width - c[:, 3] + 1) for c in (a, b)]
        ok = same_law(*area) and same_law(*aspect) and all(same_law(*q) for q in pos)
        assert ok == (what == "ours"), what   # the wrong scale range must be told apart
    assert (got[:, 0] + got[:, 2] <= height).all() and (got[:, 1] + got[:, 3] <= width).all()


def test_jitter_blur_and_coin_laws_follow_torchvision():
    torch.manual_seed(2)
    cfg, n = icd_augment(), 4000
    aug = BatchedAugment(cfg, 32, BLUR)
    p = aug.params(n, 3, 32, 32, "cpu")
    jit = v2.ColorJitter(*(0.8 * cfg.jitter_strength,) * 3, min(0.4 * cfg.jitter_strength, 0.5))
    ref = [jit.make_params([]) for _ in range(n)]
    names = ("brightness_factor", "contrast_factor", "saturation_factor", "hue_factor")
    for k, name in enumerate(names):
        assert same_law(torch.tensor([r[name] for r in ref]), p["factors"][k]), name
    # the order of the four operations: each of the 24 permutations equally likely, as torch.randperm(4)
    codes = (p["order"] * torch.tensor([64, 16, 4, 1])).sum(1)
    counts = torch.bincount(torch.unique(codes, return_inverse=True)[1]).double()
    assert len(counts) == 24
    chi2, df = float(((counts - n / 24) ** 2 / (n / 24)).sum()), 23
    assert chi2 < df * (1 - 2 / (9 * df) + 3.09 * math.sqrt(2 / (9 * df))) ** 3   # Wilson-Hilferty 99.9%
    blur = v2.GaussianBlur(5, sigma=(BLUR.sigma_min, BLUR.sigma_max))
    assert same_law(torch.tensor([blur.make_params([])["sigma"][0] for _ in range(n)]), p["sigma"])
    # coins: torchvision applies each with probability p (`torch.rand(1) >= p` skips it)
    for key, rate in [("flip", 0.5), ("jitter", cfg.jitter_p), ("gray", cfg.grayscale_p), ("blur", BLUR.p)]:
        assert rate_is(int(p[key].sum()), n, rate), key
    # and the coins are independent of each other (the joint rate of two is the product)
    assert rate_is(int((p["flip"] & p["gray"]).sum()), n, 0.5 * cfg.grayscale_p)


def transform_stats(y: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-image statistics that see each part of the transform (crop scale, flip, colour, grayscale, blur)."""
    gray = y.mean(1)                                                      # (N, H, W)
    return {"mean_r": y[:, 0].mean((1, 2)), "mean_b": y[:, 2].mean((1, 2)),
            "chroma": y.std(1).mean((1, 2)),                              # 0 for grayscale images
            "left_right": gray[:, :, :16].mean((1, 2)) - gray[:, :, 16:].mean((1, 2)),   # flip
            "edges": (gray[:, :, 1:] - gray[:, :, :-1]).abs().mean((1, 2)),              # crop scale, blur
            "spread": gray.std((1, 2))}


def test_whole_transform_has_the_reference_law_and_a_changed_law_is_seen():
    cfg = icd_augment()
    # a structured test image: colour ramps, a bright left half, a checkerboard corner (high frequencies)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 32), torch.linspace(0, 1, 32), indexing="ij")
    img = torch.stack([xx, yy, 1 - xx * yy])
    img[:, :, :16] = img[:, :, :16] * 0.5 + 0.5
    img[:, :8, :8] = ((torch.arange(8)[:, None] + torch.arange(8)) % 2).float()
    n = 1200
    torch.manual_seed(3)
    ref = make_augment(cfg, 32, BLUR)(img.expand(n, -1, -1, -1))
    torch.manual_seed(4)
    got = make_augment(cfg, 32, BLUR, batched=True)(img.expand(n, -1, -1, -1).contiguous())
    a, b = transform_stats(ref), transform_stats(got)
    bad = [k for k in a if not same_law(a[k], b[k])]
    assert bad == [], bad
    # the share of grayscale outputs (no chroma at all): grayscale coin, unaffected by the other operations
    gray_ref, gray_got = int((a["chroma"] < 1e-6).sum()), int((b["chroma"] < 1e-6).sum())
    assert rate_is(gray_got, n, cfg.grayscale_p) and rate_is(gray_ref, n, cfg.grayscale_p)
    # power: one changed law at a time is rejected by at least one statistic
    for change in [dict(grayscale_p=0.5), dict(hflip=False), dict(crop_scale_min=0.5)]:
        torch.manual_seed(4)
        c = transform_stats(make_augment(dataclasses.replace(cfg, **change), 32, BLUR, batched=True)(
            img.expand(n, -1, -1, -1).contiguous()))
        assert any(not same_law(a[k], c[k]) for k in a), change
    torch.manual_seed(4)
    c = transform_stats(make_augment(cfg, 32, Blur(0.0, 5, 0.1, 2.0), batched=True)(
        img.expand(n, -1, -1, -1).contiguous()))
    assert any(not same_law(a[k], c[k]) for k in a), "blur off"


def test_disabled_augmentation_is_the_identity_in_both():
    cfg = dataclasses.replace(icd_augment(), enabled=False)
    x = torch.rand(4, 3, 32, 32)
    assert make_augment(cfg, 32, batched=True)(x) is x and torch.equal(make_augment(cfg, 32)(x), x)
