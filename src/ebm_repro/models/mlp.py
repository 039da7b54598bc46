"""MLP energy for low-dimensional toy densities (2-D by default): x (B, D) -> (B,)."""
from __future__ import annotations

import torch
import torch.nn as nn

from ebm_repro.config import ModelConfig
from ebm_repro.models.layers import EnergyNet, linear, make_activation, require

N_HIDDEN = 3


class MLPEnergy(EnergyNet):
    """3 hidden dense layers of `width` units (optionally spectral-normalised) and a plain dense -> 1.

    The data dimension is model.channels (2 for 2-D toys); model.image_size must be 1.
    Conditional (n_classes > 0): a learned per-class bias on the first hidden layer, as IGEBM's class biases.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        require(cfg, attention=False, multiscale=False, norm="none", image_size=1)
        dims = [cfg.channels] + [cfg.width] * N_HIDDEN
        self.hidden = nn.ModuleList(linear(a, b, cfg.spectral_norm) for a, b in zip(dims[:-1], dims[1:]))
        self.class_bias = nn.Embedding(cfg.n_classes, cfg.width) if cfg.n_classes else None
        if self.class_bias is not None:
            nn.init.zeros_(self.class_bias.weight)  # starts unconditional; training learns the class offsets
        self.head = linear(cfg.width, 1, cfg.spectral_norm_head)  # IGEBM code: no spectral norm on the final layer
        self.act = make_activation(cfg.activation)
        self.dropout = nn.Dropout(cfg.dropout)

    def input_shape(self) -> tuple[int, ...]:
        return (self.cfg.channels,)

    def energy(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        h = x                                                    # (B, D)
        for i, layer in enumerate(self.hidden):
            h = layer(h)                                         # (B, W)
            if i == 0 and self.class_bias is not None:
                h = h + self.class_bias(y)
            h = self.dropout(self.act(h))
        return self.head(h).squeeze(-1)                          # (B,)
