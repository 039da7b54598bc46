"""ICD energy ResNets (Du et al. 2021, Tab. 4 and App. C.1; code: ResNetModel, CelebAModel, CondResBlock)."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ebm_repro.config import ModelConfig
from ebm_repro.models.layers import (EnergyNet, SelfAttention, WSConv2d, block_norm, linear, make_activation,
                                     spectral)

ATTENTION_AFTER_STAGE = 1  # Tab. 4: self-attention after the second down block (8x8 for 32x32 inputs)


def downsample(x: torch.Tensor) -> torch.Tensor:
    """Halve the resolution as the code does: avg_pool2d(x, 3, stride=2, padding=1)."""
    return F.avg_pool2d(x, 3, stride=2, padding=1)


class FiLM(nn.Module):
    """Class-conditional affine map h * gain[y] + bias[y] (code: Linear(one_hot(y)) -> gain, bias; default init)."""

    def __init__(self, n_classes: int, channels: int):
        super().__init__()
        self.n_classes = n_classes
        self.map = nn.Linear(n_classes, 2 * channels)

    def forward(self, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        gain, bias = self.map(F.one_hot(y.long(), self.n_classes).to(h.dtype)).chunk(2, dim=1)  # (B, C) each
        return h * gain[:, :, None, None] + bias[:, :, None, None]


class ICDBlock(nn.Module):
    """Code CondResBlock: two 3x3 WS convs (norm, FiLM, act) + identity skip (model.residual_skip); down: conv, pool.

    `norm` / `sn` default to cfg.norm / cfg.spectral_norm (the CelebA net's side scales fix them, see ICDCelebA).
    """

    def __init__(self, channels: int, c_down: int | None, cfg: ModelConfig, norm: str | None = None,
                 sn: bool | None = None):
        super().__init__()
        norm = cfg.norm if norm is None else norm
        sn = cfg.spectral_norm if sn is None else sn

        def conv() -> nn.Module:
            # code: spectral norm, when asked for, replaces weight standardisation in the block convs
            plain = nn.Conv2d(channels, channels, 3, padding=1)
            return spectral(plain) if sn else WSConv2d(channels, channels, 3, padding=1)

        self.conv1, self.conv2 = conv(), conv()
        # paper App. C.1: group norm; code: instance norm for C <= 128, group norm above (model.norm)
        self.norm1, self.norm2 = block_norm(norm, channels), block_norm(norm, channels)
        self.film1 = FiLM(cfg.n_classes, channels) if cfg.n_classes else None
        self.film2 = FiLM(cfg.n_classes, channels) if cfg.n_classes else None
        self.dropout = nn.Dropout(cfg.dropout)
        self.act = make_activation(cfg.activation)
        # down block: plain conv to c_down channels, then avg-pool(3, 2, 1) and act (code `conv_downsample`)
        self.down = nn.Conv2d(channels, c_down, 3, padding=1) if c_down else None
        self.skip = cfg.residual_skip  # HEAD adds the block input back; the paper-era code (54b46ad) did not

    def forward(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        h = self.norm1(self.conv1(x))                            # (B, C, H, W)
        h = self.dropout(self.act(h if self.film1 is None else self.film1(h, y)))
        h = self.norm2(self.conv2(h))
        h = self.act(h if self.film2 is None else self.film2(h, y))
        if self.skip:
            h = h + x
        if self.down is not None:
            h = self.act(downsample(self.down(h)))               # (B, C_down, H/2, W/2)
        return h


class ICDScaleNet(nn.Module):
    """One resolution's energy: pool the input n_pool times, stem, n_stages x (Res, Res down), mean pool, dense."""

    def __init__(self, cfg: ModelConfig, n_stages: int, n_pool: int, attention: bool):
        super().__init__()
        f = cfg.width
        c_in = [f, f, 2 * f, 4 * f]      # Tab. 4 rows "ResBlock 64 / 64 / 128 / 256"
        c_out = [f, 2 * f, 4 * f, 8 * f]  # each stage's down block doubles channels, except the first (code)
        self.n_pool = n_pool
        self.stem = nn.Conv2d(cfg.channels, f, 3, padding=1)
        self.stages = nn.ModuleList(
            nn.ModuleList([ICDBlock(c_in[i], None, cfg), ICDBlock(c_in[i], c_out[i], cfg)]) for i in range(n_stages))
        self.attention = SelfAttention(c_out[ATTENTION_AFTER_STAGE]) if attention else None
        self.head = linear(c_out[n_stages - 1], 1, cfg.spectral_norm_head, head_init=cfg.head_init)
        self.act = make_activation(cfg.activation)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        for _ in range(self.n_pool):
            x = downsample(x)                                    # (B, C, H / 2^n_pool, W / 2^n_pool)
        h = self.act(self.stem(x))                               # (B, F, h, w)
        for i, stage in enumerate(self.stages):
            for block in stage:
                h = block(h, y)
            if i == ATTENTION_AFTER_STAGE and self.attention is not None:
                h = self.attention(h)                            # (B, 2F, 8, 8) for 32x32 inputs
        h = self.act(h).mean(dim=(2, 3))                         # global mean pool -> (B, C)
        return self.head(h).squeeze(-1)                          # (B,)


class MultiscaleEnergy(EnergyNet):
    """Energy summed over `self.scales` (full resolution first); subclasses build the scale nets."""

    scales: nn.ModuleList

    def scale_energies(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Per-resolution energies (B, n_scales), full resolution first (the code's loss averages them)."""
        self.check_inputs(x, y)
        return torch.stack([net(x, y) for net in self.scales], dim=1)

    def energy(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        # Sec. 2.4 / Fig. 5: the energy of an image is the SUM of the energies at each resolution
        return torch.stack([net(x, y) for net in self.scales], dim=1).sum(dim=1)  # (B,)


class ICDResNet(MultiscaleEnergy):
    """ICD energy: full-resolution net, plus half- and quarter-resolution nets when multiscale; energies summed."""

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        if cfg.multiscale and cfg.image_size % 4:
            raise ValueError(f"model.multiscale needs model.image_size divisible by 4, got {cfg.image_size}")
        nets = [ICDScaleNet(cfg, n_stages=4, n_pool=0, attention=cfg.attention)]
        if cfg.multiscale:
            # Code: the half/quarter nets are the full net's first 3 / 2 stages (the last, widest stages dropped),
            # without attention; this gives the code's ~6.6M parameters. App. C.1's wording ("first down-sampled
            # block(s) removed") would keep the wide stages and give ~14M.
            nets += [ICDScaleNet(cfg, n_stages=3, n_pool=1, attention=False),
                     ICDScaleNet(cfg, n_stages=2, n_pool=2, attention=False)]
        self.scales = nn.ModuleList(nets)


# ----------------------------------------------------------------------------- CelebA-HQ 128 (code CelebAModel)
# Blocks as (channels, down-conv output channels or None), in units of F = cfg.width (code filter_dim).
# Code CelebAModel.init_main_model: stem -> F/2; res_1a..res_4b; attention after res_3b (4F channels).
CELEBA_MAIN = ((0.5, 1), (1, 1), (1, 1), (1, 2), (2, None), (2, 4), (4, None), (4, 8))
CELEBA_ATTENTION_AFTER = 5   # index of res_3b: 4x4 for 128x128 inputs
# init_mid_model / init_small_model: stem -> F, then the main net's first blocks at F (no F/2 stage).
CELEBA_MID = ((1, 1), (1, 1), (1, 1), (1, 2), (2, None), (2, 4))
CELEBA_SMALL = ((1, 1), (1, 1), (1, 1), (1, 2))
# Code: the mid/small CondResBlocks are built with the block defaults (norm=True, spec_norm=False) whatever
# args.norm / args.spec_norm say; norm=True is the code's instance/group rule (our 'instance').
CELEBA_SIDE_NORM = "instance"


class ICDCelebAScale(nn.Module):
    """One resolution of the CelebA net: pool n_pool times, stem, residual blocks (+ attention), mean pool, dense."""

    def __init__(self, cfg: ModelConfig, blocks: tuple, n_pool: int, attention_after: int | None,
                 side: bool):
        super().__init__()
        f = cfg.width
        kw = dict(norm=CELEBA_SIDE_NORM, sn=False) if side else {}
        self.n_pool = n_pool
        self.stem = nn.Conv2d(cfg.channels, int(blocks[0][0] * f), 3, padding=1)
        self.blocks = nn.ModuleList(ICDBlock(int(c * f), None if d is None else int(d * f), cfg, **kw)
                                    for c, d in blocks)
        self.attention_after = attention_after
        self.attention = (SelfAttention(int(blocks[attention_after][1] * f))
                          if attention_after is not None else None)
        self.head = linear(int(blocks[-1][1] * f), 1, cfg.spectral_norm_head, head_init=cfg.head_init)
        self.act = make_activation(cfg.activation)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        for _ in range(self.n_pool):
            x = downsample(x)                                    # (B, C, H / 2^n_pool, W / 2^n_pool)
        h = self.act(self.stem(x))                               # (B, F or F/2, h, w)
        for i, block in enumerate(self.blocks):
            h = block(h, y)
            if i == self.attention_after:
                h = self.attention(h)                            # (B, 4F, 4, 4) for 128x128 inputs
        h = self.act(h).mean(dim=(2, 3))                         # global mean pool -> (B, C)
        return self.head(h).squeeze(-1)                          # (B,)


class ICDCelebA(MultiscaleEnergy):
    """ICD CelebA-HQ energy (code CelebAModel, filter_dim F): six 2x downsamplings per scale, energies summed."""

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        if cfg.width % 2:
            raise ValueError(f"model.width must be even for arch {cfg.arch!r} (its stem has width/2 channels), "
                             f"got {cfg.width}")
        if cfg.image_size % 64:
            raise ValueError(f"model.image_size={cfg.image_size} must be divisible by 64 for arch {cfg.arch!r} "
                             f"(six 2x downsamplings per scale)")
        nets = [ICDCelebAScale(cfg, CELEBA_MAIN, 0, CELEBA_ATTENTION_AFTER if cfg.attention else None, False)]
        if cfg.multiscale:
            # code: the half / quarter resolution nets never get self-attention
            nets += [ICDCelebAScale(cfg, CELEBA_MID, 1, None, True),
                     ICDCelebAScale(cfg, CELEBA_SMALL, 2, None, True)]
        self.scales = nn.ModuleList(nets)
