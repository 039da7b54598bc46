"""IGEBM's dSprites energy net (Du & Mordatch 2019 §6; code models.py `DspritesNet`), conditioned on latents.

Layout (IGEBM code models.py l.126-185, at num_filters F = 64 and 64x64 inputs):
    stem 3x3 conv 1 -> F/2 (code: 32), act
    c1..c4 4x4 stride-2 'same' convs F/2 -> F -> 2F -> 2F -> 2F (64 -> 4 pixels), act after each; the latent y
        enters every one as an input bias y @ B (utils.py conv_block `extra_bias`) and c3 also as an output gain
        y @ G + cb (`use_scale`); no conv biases (`use_bias` False)
    dense 2F * (S/16)^2 -> 2F (spectral norm), act, dense 2F -> 1 (no spectral norm)
"Latents can be either continuous or discrete and are projected to the size of each gain or bias" (§6): y is a float
latent vector (B, n_classes) -- scale (1), position (2), (cos, sin) of the rotation (2) -- or integer class labels
(B,), which are one-hot encoded (the shape model). model.n_classes is the size of that vector (0 = unconditional).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ebm_repro.config import ModelConfig
from ebm_repro.models.layers import EnergyNet, linear, make_activation, require, spectral

N_DOWN = 4              # stride-2 convs c1..c4
GAIN_LAYER = 2          # c3 (0-based) carries the conditional gain (code: use_scale=True on c3 only)


def conv(c_in: int, c_out: int, k: int, stride: int, sn: bool, sn_init: str) -> nn.Conv2d:
    """k x k 'same' conv without bias; spectral-normalised weights start N(0, 1) under sn_init 'code'."""
    layer = nn.Conv2d(c_in, c_out, k, stride=stride, padding=(k - stride) // 2 if stride > 1 else k // 2, bias=False)
    if sn and sn_init == "code":
        nn.init.normal_(layer.weight, std=1.0)  # IGEBM utils.py get_weight
    return spectral(layer) if sn else layer


class LatentProjection(nn.Module):
    """Input bias y @ B (B, C_in) and, optionally, output gain y @ G (+ cb) (B, C_out) of one conv.

    Unconditional (dim 0): one learned bias row and one gain row shared by every input, as the code's vectors.
    Init as the code (utils.py init_conv_weight): biases 0, gains 1, offset cb 0.
    """

    def __init__(self, dim: int, c_in: int, c_out: int, gain: bool, offset: bool):
        super().__init__()
        self.dim = dim
        self.bias = nn.Parameter(torch.zeros(max(dim, 1), c_in))
        self.gain = nn.Parameter(torch.ones(max(dim, 1), c_out)) if gain else None
        self.offset = nn.Parameter(torch.zeros(c_out)) if gain and dim and offset else None

    @staticmethod
    def _project(y: torch.Tensor | None, table: torch.Tensor) -> torch.Tensor:
        rows = table[:1] if y is None else y @ table                           # (1 or B, C)
        return rows[:, :, None, None]

    def in_bias(self, y: torch.Tensor | None) -> torch.Tensor:
        return self._project(y, self.bias)                                     # (1 or B, C_in, 1, 1)

    def out_gain(self, y: torch.Tensor | None) -> torch.Tensor | None:
        if self.gain is None:
            return None
        g = self._project(y, self.gain)                                        # (1 or B, C_out, 1, 1)
        return g if self.offset is None else g + self.offset[:, None, None]


class DspritesNet(EnergyNet):
    """E(x | y) for 1-channel images whose side is a multiple of 16 (dSprites: 64x64)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        require(cfg, attention=False, multiscale=False, norm="none", dropout=0.0, residual_skip=True)
        if cfg.image_size % 2 ** N_DOWN:
            raise ValueError(f"model.image_size={cfg.image_size} must be divisible by {2 ** N_DOWN} for arch "
                             f"{cfg.arch!r} ({N_DOWN} stride-2 convs)")
        f, sn, init = cfg.width, cfg.spectral_norm, cfg.sn_init
        stem = max(f // 2, 1)
        chans = (stem, f, 2 * f, 2 * f, 2 * f)
        self.stem = conv(cfg.channels, stem, 3, 1, sn, init)
        self.convs = nn.ModuleList(conv(a, b, 4, 2, sn, init) for a, b in zip(chans[:-1], chans[1:]))
        self.cond = nn.ModuleList(LatentProjection(cfg.n_classes, a, b, gain=i == GAIN_LAYER,
                                                   offset=cfg.cond_gain_offset)
                                  for i, (a, b) in enumerate(zip(chans[:-1], chans[1:])))
        side = cfg.image_size // 2 ** N_DOWN
        self.dense = linear(2 * f * side * side, 2 * f, sn, sn_init=init)             # code `fc_dense`: spec_norm
        self.head = linear(2 * f, 1, cfg.spectral_norm_head, sn_init=init, head_init=cfg.head_init)  # code `fc5`
        self.act = make_activation(cfg.activation)

    def check_inputs(self, x: torch.Tensor, y: torch.Tensor | None) -> None:
        """x (B, C, S, S); y float latents (B, n_classes) or integer labels (B,) when conditional, else None."""
        if tuple(x.shape[1:]) != self.input_shape():
            raise ValueError(f"{self.cfg.arch}: expected x of shape (B, {', '.join(map(str, self.input_shape()))}), "
                             f"got {tuple(x.shape)} (check model.channels / model.image_size)")
        n = self.cfg.n_classes
        if n == 0:
            if y is not None:
                raise ValueError(f"{self.cfg.arch} is unconditional (model.n_classes=0) but latents y were given")
            return
        if y is None:
            raise ValueError(f"{self.cfg.arch} is conditional (model.n_classes={n}): pass latents y")
        integer = not y.is_floating_point() and y.dtype != torch.bool
        if not ((integer and y.shape == (x.shape[0],)) or (y.is_floating_point() and y.shape == (x.shape[0], n))):
            raise ValueError(f"{self.cfg.arch}: y must be integer class labels ({x.shape[0]},) or float latents "
                             f"({x.shape[0]}, {n}), got {y.dtype} {tuple(y.shape)}")

    def energy(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        if y is not None and not y.is_floating_point():
            y = F.one_hot(y.long(), self.cfg.n_classes).to(x.dtype)            # (B, n_classes)
        h = self.act(self.stem(x))                                             # (B, F/2, S, S)
        for layer, cond in zip(self.convs, self.cond):
            h = layer(h + cond.in_bias(y))                                     # (B, C_out, S/2, S/2)
            gain = cond.out_gain(y)
            h = self.act(h if gain is None else h * gain)
        h = self.act(self.dense(h.flatten(1)))                                 # (B, 2F)
        return self.head(h).squeeze(-1)                                        # (B,)


def dsprites_net(cfg: ModelConfig) -> DspritesNet:
    """IGEBM DspritesNet: about 0.95M parameters at width 64 on 64x64 images."""
    return DspritesNet(cfg)
