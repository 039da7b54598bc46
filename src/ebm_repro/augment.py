"""ICD data-augmentation transitions (ICD §2.3): random crop-resize, flip, colour jitter, grayscale (+ test-time blur)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torchvision.transforms import v2

from ebm_repro.config import AugmentConfig


@dataclass(frozen=True)
class Blur:
    """Gaussian blur with probability p, sigma ~ U(sigma_min, sigma_max) (ICD test_inception.py GaussianBlur)."""
    p: float
    kernel: int
    sigma_min: float
    sigma_max: float


def make_augment(cfg: AugmentConfig, image_size: int,
                 blur: Blur | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """Return augment(x (B, C, H, W) in [0, 1]) -> x', each image transformed independently.

    blur: the Gaussian blur of this transition; default the training one of cfg (test time passes its own).
    """
    if blur is None:
        blur = Blur(cfg.blur_p, cfg.blur_kernel, cfg.blur_sigma_min, cfg.blur_sigma_max)
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
