"""ICD data-augmentation transitions (ICD §2.3): random crop-resize, flip, colour jitter, grayscale (+ test-time blur).

Two implementations of one transform: torchvision's v2 ops one image at a time (the reference, on the CPU), and
BatchedAugment, the same parameter distributions and the same per-image maths as batched tensor ops on any
device (runtime.augment: batched). They draw their random numbers differently, so switching changes results
(the switch is part of the training hash); tests/test_augment.py checks the maths and the distributions.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torchvision.transforms import v2
from torchvision.transforms.v2.functional._color import _hsv_to_rgb, _rgb_to_hsv

from ebm_repro.config import AugmentConfig


@dataclass(frozen=True)
class Blur:
    """Gaussian blur with probability p, sigma ~ U(sigma_min, sigma_max) (ICD test_inception.py GaussianBlur)."""
    p: float
    kernel: int
    sigma_min: float
    sigma_max: float


def make_augment(cfg: AugmentConfig, image_size: int, blur: Blur | None = None,
                 batched: bool = False) -> Callable[[torch.Tensor], torch.Tensor]:
    """Return augment(x (B, C, H, W) in [0, 1]) -> x', each image transformed independently.

    blur: the Gaussian blur of this transition; default the training one of cfg (test time passes its own).
    batched (runtime.augment: batched): the same transform as one batched draw on x's device (BatchedAugment);
    the reference is torchvision's v2 transform, one image at a time on the CPU.
    """
    if blur is None:
        blur = Blur(cfg.blur_p, cfg.blur_kernel, cfg.blur_sigma_min, cfg.blur_sigma_max)
    if batched:
        return BatchedAugment(cfg, image_size, blur)
    s = cfg.jitter_strength
    ops = [v2.RandomResizedCrop(image_size, scale=(cfg.crop_scale_min, 1.0), antialias=True)]
    if cfg.hflip:
        ops.append(v2.RandomHorizontalFlip())
    # ICD code: ColorJitter(0.8s, 0.8s, 0.8s, 0.4s) applied with p = 0.8, then grayscale with p = 0.2
    ops.append(v2.RandomApply([v2.ColorJitter(0.8 * s, 0.8 * s, 0.8 * s, min(0.4 * s, 0.5))], p=cfg.jitter_p))
    ops.append(v2.RandomGrayscale(p=cfg.grayscale_p))
    if blur is not None and blur.p > 0:
        # reflect padding = cv2's default BORDER_REFLECT_101, which the code's cv2.GaussianBlur uses
        ops.append(v2.RandomApply([v2.GaussianBlur(blur.kernel, sigma=(blur.sigma_min, blur.sigma_max))], p=blur.p))
    tf = v2.Compose(ops)

    def augment(x: torch.Tensor) -> torch.Tensor:
        if not cfg.enabled:
            return x
        # torchvision v2 draws one set of parameters per call, so loop to get one per chain
        return torch.stack([tf(img) for img in x.detach()]).clamp(0, 1)

    return augment


# ----------------------------------------------------------------------------- batched (runtime.augment: batched)
CROP_RATIO = (3 / 4, 4 / 3)   # v2.RandomResizedCrop's default aspect-ratio range
CROP_TRIES = 10               # ... and its number of tries before the centre-crop fallback


def crop_boxes(n: int, height: int, width: int, scale: tuple[float, float], device=None) -> torch.Tensor:
    """n crop boxes (n, 4) int64 rows (top, left, h, w), drawn as v2.RandomResizedCrop.make_params draws one.

    Per image: up to 10 tries of area share ~ U(scale) and log aspect ratio ~ U(log 3/4, log 4/3), the first
    that fits kept, its corner uniform; none fits -> the centre crop clamped to the ratio range.
    """
    area = height * width
    s = torch.empty(n, CROP_TRIES, device=device).uniform_(scale[0], scale[1])          # float32, as torchvision
    ratio = torch.exp(torch.empty(n, CROP_TRIES, device=device).uniform_(math.log(CROP_RATIO[0]),
                                                                          math.log(CROP_RATIO[1])))
    target, ratio = area * s.double(), ratio.double()   # torchvision: .item() -> Python floats (double)
    w = torch.round(torch.sqrt(target * ratio))         # round half to even, as Python's round
    h = torch.round(torch.sqrt(target / ratio))
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)                              # (n, tries)
    first = fits.int().argmax(dim=1, keepdim=True)                                       # first fitting try
    w, h = w.gather(1, first).squeeze(1).long(), h.gather(1, first).squeeze(1).long()    # (n,)
    # fallback (no try fits): the centre crop, w = width, h = height clamped to the ratio range
    in_ratio = width / height
    if in_ratio < min(CROP_RATIO):
        fw, fh = width, int(round(width / min(CROP_RATIO)))
    elif in_ratio > max(CROP_RATIO):
        fw, fh = int(round(height * max(CROP_RATIO))), height
    else:
        fw, fh = width, height
    ok = fits.any(dim=1)
    w, h = torch.where(ok, w, fw), torch.where(ok, h, fh)
    u = torch.rand(n, 2, device=device, dtype=torch.float64)
    top = torch.where(ok, (u[:, 0] * (height - h + 1)).floor().long(), (height - fh) // 2)
    left = torch.where(ok, (u[:, 1] * (width - w + 1)).floor().long(), (width - fw) // 2)
    return torch.stack([top, left, h, w], dim=1)


def resize_weights(start: torch.Tensor, length: torch.Tensor, size_in: int, size_out: int) -> torch.Tensor:
    """(n, size_out, size_in) matrices: resample pixels [start, start + length) to size_out pixels.

    The weights of torch's antialiased bilinear resize (interpolate(..., antialias=True), which torchvision's
    resize uses): tap p of output o weighs max(0, 1 - |p + 0.5 - c_o| / s') with c_o = (o + 0.5) L / size_out,
    s' = max(L / size_out, 1), each row normalised to sum 1.
    """
    scale = length.float() / size_out                                                    # (n,)
    centre = scale[:, None] * (torch.arange(size_out, device=start.device) + 0.5)       # (n, out)
    inv = 1.0 / scale.clamp(min=1.0)                                                     # upsampling: 1
    p = torch.arange(size_in, device=start.device)[None, None, :] - start[:, None, None]  # crop coordinate
    w = (1 - ((p + 0.5 - centre[:, :, None]) * inv[:, None, None]).abs()).clamp(min=0)
    w = w * ((p >= 0) & (p < length[:, None, None]))                                   # taps inside the crop
    return w / w.sum(dim=2, keepdim=True)


def _gray(x: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) luma of RGB x, torchvision's weights and order of operations."""
    r, g, b = x.unbind(dim=-3)
    return r.mul(0.2989).add_(g, alpha=0.587).add_(b, alpha=0.114).unsqueeze(-3)


def _blend(a: torch.Tensor, b: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
    """ratio a + (1 - ratio) b, clamped to [0, 1] (torchvision _blend), ratio (B,)."""
    r = ratio.view(-1, 1, 1, 1)
    return (a * r + b * (1 - r)).clamp(0, 1)


def _adjust_hue(x: torch.Tensor, hue: torch.Tensor) -> torch.Tensor:
    hsv = _rgb_to_hsv(x)
    h, s, v = hsv.unbind(dim=-3)
    h = (h + hue.view(-1, 1, 1)).remainder(1.0)
    return _hsv_to_rgb(torch.stack((h, s, v), dim=-3))


def _gaussian_kernels(kernel: int, sigma: torch.Tensor) -> torch.Tensor:
    """(B, k) 1-D Gaussian kernels, torchvision's formula: softmax(-(t / sigma)^2), t in +-(k - 1) / (2 sqrt 2)."""
    lim = (kernel - 1) / (2.0 * math.sqrt(2.0))
    t = torch.linspace(-lim, lim, steps=kernel, device=sigma.device)
    return torch.softmax(-(t[None, :] / sigma[:, None]).pow(2), dim=1)


class BatchedAugment:
    """The torchvision transform of make_augment as batched ops: same parameter laws, per-image maths to rounding.

    Order and laws as the reference: crop-resize (RandomResizedCrop), flip (p 0.5), colour jitter with p =
    jitter_p (brightness, contrast, saturation, hue in a uniformly random order per image), grayscale
    (p = grayscale_p), Gaussian blur (p = blur.p, sigma ~ U(sigma_min, sigma_max), reflect padding).
    Random numbers come from the global generator of x's device.
    """

    on_device = True  # callers hand it the chains where they are (the reference transform wants CPU tensors)

    def __init__(self, cfg: AugmentConfig, image_size: int, blur: Blur | None):
        self.cfg, self.size, self.blur = cfg, image_size, blur
        s = cfg.jitter_strength
        # v2.ColorJitter ranges: (max(0, 1 - v), 1 + v) for brightness/contrast/saturation, (-h, h) for hue;
        # a zero strength drops that operation
        self.jitter = [None if v == 0 else (max(0.0, 1 - v), 1 + v) for v in (0.8 * s, 0.8 * s, 0.8 * s)]
        hue = min(0.4 * s, 0.5)
        self.jitter.append(None if hue == 0 else (-hue, hue))

    def params(self, n: int, c: int, height: int, width: int, device) -> dict:
        """One batch's random parameters, (n,) or (n, k) tensors."""
        cfg, dev = self.cfg, device
        u = torch.rand(n, 4, device=dev)
        p = {"box": crop_boxes(n, height, width, (cfg.crop_scale_min, 1.0), dev),
             "flip": u[:, 0] < 0.5 if cfg.hflip else torch.zeros(n, dtype=torch.bool, device=dev),
             "jitter": u[:, 1] < cfg.jitter_p, "order": torch.rand(n, 4, device=dev).argsort(dim=1),
             "gray": u[:, 2] < cfg.grayscale_p}
        p["factors"] = [None if r is None else torch.empty(n, device=dev).uniform_(*r) for r in self.jitter]
        b = self.blur
        p["blur"] = (u[:, 3] < b.p) if b is not None and b.p > 0 else torch.zeros(n, dtype=torch.bool, device=dev)
        p["sigma"] = (torch.empty(n, device=dev).uniform_(b.sigma_min, b.sigma_max) if b is not None and b.p > 0
                      else None)
        return p

    def apply(self, x: torch.Tensor, p: dict) -> torch.Tensor:
        """The transform with given parameters (x (B, C, H, W) in [0, 1])."""
        n, c, height, width = x.shape
        top, left, h, w = p["box"].unbind(dim=1)
        wy = resize_weights(top, h, height, self.size)                                    # (B, S, H)
        wx = resize_weights(left, w, width, self.size)                                    # (B, S, W)
        wx = torch.where(p["flip"].view(-1, 1, 1), wx.flip(1), wx)                       # flip = reversed columns
        x = wy[:, None] @ x @ wx[:, None].transpose(-1, -2)                               # (B, C, S, S)
        if any(f is not None for f in p["factors"]):
            x = torch.where(p["jitter"].view(-1, 1, 1, 1), self._jitter(x, p), x)
        if c == 3:
            x = torch.where(p["gray"].view(-1, 1, 1, 1), _gray(x).expand_as(x), x)
        if p["sigma"] is not None:
            x = torch.where(p["blur"].view(-1, 1, 1, 1), self._blur(x, p["sigma"]), x)
        return x.clamp(0, 1)

    def _jitter(self, x: torch.Tensor, p: dict) -> torch.Tensor:
        bright, contrast, sat, hue = p["factors"]
        rgb = x.shape[1] == 3
        for k in range(4):  # k-th operation of each image's order: compute the four, keep each image's own
            op = p["order"][:, k].view(-1, 1, 1, 1)
            out = x
            if bright is not None:
                out = torch.where(op == 0, (x * bright.view(-1, 1, 1, 1)).clamp(0, 1), out)
            if contrast is not None:
                mean = (_gray(x) if rgb else x).mean(dim=(-3, -2, -1), keepdim=True)
                out = torch.where(op == 1, _blend(x, mean, contrast), out)
            if sat is not None and rgb:   # saturation and hue leave a 1-channel image alone (torchvision)
                out = torch.where(op == 2, _blend(x, _gray(x), sat), out)
            if hue is not None and rgb:
                out = torch.where(op == 3, _adjust_hue(x, hue), out)
            x = out
        return x

    def _blur(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        n, c, height, width = x.shape
        k = self.blur.kernel
        g = _gaussian_kernels(k, sigma)                                                   # (B, k)
        kern = (g[:, :, None] * g[:, None, :]).repeat_interleave(c, dim=0)[:, None]      # (B C, 1, k, k)
        xp = F.pad(x.reshape(1, n * c, height, width), [k // 2] * 4, mode="reflect")
        return F.conv2d(xp, kern, groups=n * c).view(n, c, height, width)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not self.cfg.enabled:
            return x
        x = x.detach()
        return self.apply(x, self.params(len(x), *x.shape[1:], device=x.device))
