"""Energy networks E(x[, y]) -> (B,) energies (low = likely); pick one by ModelConfig.arch."""
from __future__ import annotations

from typing import Callable

import torch.nn as nn

from ebm_repro.config import ModelConfig
from ebm_repro.models import dsprites, icd, igebm, mlp

# Explicit table (no registration by import side effects): arch name -> constructor.
ARCHS: dict[str, Callable[[ModelConfig], nn.Module]] = {
    "igebm_resnet32_large": igebm.resnet32_large,  # IGEBM code ResNet32Large (128 -> 256 -> 512)
    "igebm_resnet32_large_fig15b": igebm.resnet32_large_fig15b,  # IGEBM Fig. 15b as printed (128 -> 256 -> 256)
    "igebm_resnet32": igebm.resnet32,              # IGEBM Fig. 15a / code ResNet32
    "igebm_resnet32_wider": igebm.resnet32_wider,  # IGEBM code ResNet32Wider (ImageNet 32x32, E17)
    "icd_resnet": icd.ICDResNet,                   # ICD Tab. 4 (+ half/quarter-resolution nets)
    "icd_celeba": icd.ICDCelebA,                   # ICD code CelebAModel (CelebA-HQ 128, authors' checkpoints)
    "mlp2d": mlp.MLPEnergy,                        # 2-D toy densities
    "dsprites_net": dsprites.dsprites_net,         # IGEBM §6 / code DspritesNet (E11), latent-conditioned
}


def make_model(cfg: ModelConfig) -> nn.Module:
    """Build the energy network for cfg; raises ValueError naming the field on an impossible setting."""
    if cfg.arch not in ARCHS:
        raise ValueError(f"model.arch: unknown {cfg.arch!r}; choose one of {sorted(ARCHS)}")
    return ARCHS[cfg.arch](cfg)


def count_params(model: nn.Module) -> int:
    """Number of parameter elements (spectral-norm u/v vectors are buffers, not counted)."""
    return sum(p.numel() for p in model.parameters())
