"""IGEBM energy ResNets (Du & Mordatch 2019, Fig. 15 and Sec. 9.2; code: ResNet32Large / ResNet32)."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ebm_repro.config import ModelConfig
from ebm_repro.models.layers import EnergyNet, conv3x3, linear, make_activation, require

# Residual blocks as (c_in, c_out, downsample), channels in units of cfg.width.
# Code ResNet32Large (unconditional CIFAR-10): F -> 2F -> 4F, i.e. 128 -> 256 -> 512 (Fig. 15b says 128/256/256).
LARGE_BLOCKS = ((1, 1, True), (1, 1, False), (1, 1, False),
                (1, 2, True), (2, 2, False), (2, 2, False),
                (2, 4, True), (4, 4, False), (4, 4, False))
# Paper Fig. 15b (unconditional): the same nine blocks, but the last stage stays at 2F = 256 channels.
LARGE_BLOCKS_FIG15B = LARGE_BLOCKS[:6] + ((2, 2, True), (2, 2, False), (2, 2, False))
# Code ResNet32Wider (train.py --dataset=imagenet, num_filters=256): a 3x3 stem to a fixed 128 channels, then the
# Large layout from F (models.py: res_optim 128 -> F with a conv shortcut, res_3 F -> 2F, res_6 2F -> 4F).
WIDER_STEM = 128
WIDER_BLOCKS = LARGE_BLOCKS
# Code ResNet32 (conditional CIFAR-10, Fig. 15a): down 128, 128, down 256, 256, down 256, 256.
COND_BLOCKS = ((1, 1, True), (1, 1, False),
               (1, 2, True), (2, 2, False),
               (2, 2, True), (2, 2, False))


class ClassTable(nn.Module):
    """A learned (n_classes, dim) table indexed by y -> (B, dim, 1, 1); one shared row when unconditional (as the code)."""

    def __init__(self, n_classes: int, dim: int, init: float):
        super().__init__()
        self.weight = nn.Parameter(torch.full((max(n_classes, 1), dim), init))

    def forward(self, y: torch.Tensor | None) -> torch.Tensor:
        rows = self.weight[:1] if y is None else self.weight[y]   # (1 or B, dim)
        return rows[:, :, None, None]


class IGEBMBlock(nn.Module):
    """Code res block: c1 = conv(x + b1[y]); act; c2 = conv(h + b2[y]) * g2[y]; + shortcut; avg-pool; act."""

    def __init__(self, c_in: int, c_out: int, down: bool, cfg: ModelConfig):
        super().__init__()
        sn, n, init = cfg.spectral_norm, cfg.n_classes, cfg.sn_init
        self.conv1 = conv3x3(c_in, c_out, sn, sn_init=init)      # no conv biases (code: use_bias False)
        self.conv2 = conv3x3(c_out, c_out, sn, near_zero=True)    # zero init (Sec. 9.2): block starts as its shortcut
        # 3x3 conv shortcut only where the channel count changes (code: `_res_adaptive`)
        self.shortcut = conv3x3(c_in, c_out, sn, sn_init=init) if c_in != c_out else nn.Identity()
        # conditioning (Sec. 9.2 "conditional bias and gains"): per-class input biases and a per-class gain on c2
        self.bias1 = ClassTable(n, c_in, 0.0)
        self.bias2 = ClassTable(n, c_out, 0.0)
        self.gain2 = ClassTable(n, c_out, 1.0)
        # code conv_block: scale = label @ g + cb, a shared learned offset on every class's gain (conditional only)
        self.gain_offset = nn.Parameter(torch.zeros(c_out)) if n and cfg.cond_gain_offset else None
        self.dropout = nn.Dropout(cfg.dropout)  # active in train mode, which the trainer keeps inside Langevin
        self.act = make_activation(cfg.activation)
        self.down = down

    def forward(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        h = self.conv1(x + self.bias1(y))                         # (B, C_out, H, W)
        h = self.act(self.dropout(h))                             # code: dropout on c1's output, before the act
        gain = self.gain2(y)                                      # (1 or B, C_out, 1, 1)
        if self.gain_offset is not None:
            gain = gain + self.gain_offset[:, None, None]
        h = self.conv2(h + self.bias2(y)) * gain                  # (B, C_out, H, W)
        h = h + self.shortcut(x)
        if self.down:
            h = F.avg_pool2d(h, 2)                                # Sec. 9.2: average pooling, not strided convs
        return self.act(h)                                        # (B, C_out, H', W')


class IGEBMResNet(EnergyNet):
    """3x3 conv stem, residual blocks, ReLU, global sum pool, dense -> 1 (no spectral norm on the dense)."""

    def __init__(self, cfg: ModelConfig, blocks: tuple[tuple[int, int, bool], ...], stem: int | None = None):
        super().__init__(cfg)
        # IGEBM nets have no attention/multiscale; Sec. 3.3: no activation normalisation (keeps LD samplable)
        require(cfg, attention=False, multiscale=False, norm="none", residual_skip=True)
        n_down = sum(d for *_, d in blocks)
        if cfg.image_size % 2 ** n_down:
            raise ValueError(f"model.image_size={cfg.image_size} must be divisible by {2 ** n_down} "
                             f"for arch {cfg.arch!r} ({n_down} 2x2 average-pool downsamplings)")
        f = cfg.width
        c_stem = f if stem is None else stem  # ResNet32Wider: a fixed 128-channel stem whatever F is
        self.stem = conv3x3(cfg.channels, c_stem, cfg.spectral_norm, sn_init=cfg.sn_init)  # code `c1_pre`: conv + act
        c_in = [c_stem] + [b * f for _, b, _ in blocks[:-1]]  # each block's input: the previous block's output
        self.blocks = nn.ModuleList(IGEBMBlock(c, b * f, d, cfg) for c, (_, b, d) in zip(c_in, blocks))
        # code `fc5`: spec_norm=False; the paper: "spectral normalization on all layers" (model.spectral_norm_head)
        self.head = linear(blocks[-1][1] * f, 1, cfg.spectral_norm_head, sn_init=cfg.sn_init, head_init=cfg.head_init)
        self.act = make_activation(cfg.activation)

    def energy(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        h = self.act(self.stem(x))                                # (B, F, H, W)
        for block in self.blocks:
            h = block(h, y)                                       # (B, 4F, H/8, W/8) at the end (Large)
        h = F.relu(h).sum(dim=(2, 3))                             # code: ReLU, then global SUM pool -> (B, C)
        return self.head(h).squeeze(-1)                           # (B,)


def resnet32_large(cfg: ModelConfig) -> IGEBMResNet:
    """Unconditional CIFAR-10 net (code ResNet32Large, Fig. 15b): about 18.6M parameters at width 128."""
    return IGEBMResNet(cfg, LARGE_BLOCKS)


def resnet32_large_fig15b(cfg: ModelConfig) -> IGEBMResNet:
    """Unconditional net as the paper draws it (Fig. 15b: 128 -> 256 -> 256), for preset paper_text."""
    return IGEBMResNet(cfg, LARGE_BLOCKS_FIG15B)


def resnet32_wider(cfg: ModelConfig) -> IGEBMResNet:
    """Unconditional ImageNet 32x32 net of the code (ResNet32Wider): about 74M parameters at width 256."""
    return IGEBMResNet(cfg, WIDER_BLOCKS, stem=WIDER_STEM)


def resnet32(cfg: ModelConfig) -> IGEBMResNet:
    """Conditional CIFAR-10 net (code ResNet32, Fig. 15a): about 5.4M parameters at width 128."""
    return IGEBMResNet(cfg, COND_BLOCKS)
