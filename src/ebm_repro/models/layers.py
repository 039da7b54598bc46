"""Building blocks shared by the energy networks: base class, field checks, activations, spectral norm, WS conv, attention."""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import _SpectralNorm, spectral_norm

from ebm_repro.config import ModelConfig

LEAKY_SLOPE = 0.2  # IGEBM code: tf.nn.leaky_relu's default slope


# ----------------------------------------------------------------------------- config checks
def require(cfg: ModelConfig, **expected: Any) -> None:
    """Raise ValueError naming the field when a field that cannot apply to cfg.arch is set to a non-default value."""
    for name, want in expected.items():
        got = getattr(cfg, name)
        if got != want:
            raise ValueError(f"model.{name}={got!r} does not apply to arch {cfg.arch!r}; set model.{name}: {want!r}")


def check_common(cfg: ModelConfig) -> None:
    """Field checks that hold for every arch."""
    if cfg.width < 1:
        raise ValueError(f"model.width must be >= 1, got {cfg.width}")
    if cfg.n_classes < 0:
        raise ValueError(f"model.n_classes must be >= 0 (0 = unconditional), got {cfg.n_classes}")
    if not 0.0 <= cfg.dropout < 1.0:
        raise ValueError(f"model.dropout must be in [0, 1), got {cfg.dropout}")
    if cfg.norm not in ("none", "group", "instance"):
        raise ValueError(f"model.norm: unknown {cfg.norm!r}; choose 'none', 'group' or 'instance'")
    if cfg.channels < 1 or cfg.image_size < 1:
        raise ValueError(f"model.channels and model.image_size must be >= 1, got {cfg.channels}, {cfg.image_size}")
    make_activation(cfg.activation)  # raises on an unknown name


# ----------------------------------------------------------------------------- base class
class EnergyNet(nn.Module):
    """Base of every energy network: forward(x, y=None) -> (B,) energies (low = likely), inputs checked against cfg."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        check_common(cfg)
        self.cfg = cfg

    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input example; images by default."""
        return (self.cfg.channels, self.cfg.image_size, self.cfg.image_size)

    def check_inputs(self, x: torch.Tensor, y: torch.Tensor | None) -> None:
        """Raise ValueError on a wrongly shaped x or a label that does not match n_classes."""
        if tuple(x.shape[1:]) != self.input_shape():
            raise ValueError(f"{self.cfg.arch}: expected x of shape (B, {', '.join(map(str, self.input_shape()))}), "
                             f"got {tuple(x.shape)} (check model.channels / model.image_size)")
        if self.cfg.n_classes > 0:
            if y is None:
                raise ValueError(f"{self.cfg.arch} is conditional (model.n_classes={self.cfg.n_classes}): "
                                 f"pass class labels y")
            if y.shape != (x.shape[0],) or y.is_floating_point() or y.dtype == torch.bool:
                raise ValueError(f"labels y must be an integer tensor of shape ({x.shape[0]},), "
                                 f"got {y.dtype} {tuple(y.shape)}")
        elif y is not None:
            raise ValueError(f"{self.cfg.arch} is unconditional (model.n_classes=0) but labels y were given")

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        self.check_inputs(x, y)
        return self.energy(x, y)

    def energy(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


# ----------------------------------------------------------------------------- activations, norms
def swish(x: torch.Tensor) -> torch.Tensor:
    """Swish x * sigmoid(x) (Ramachandran et al. 2017; ICD Sec. C.1)."""
    return F.silu(x)


def make_activation(name: str) -> nn.Module:
    """'leaky_relu' (slope 0.2, IGEBM) or 'swish' (ICD) as a module."""
    if name == "leaky_relu":
        return nn.LeakyReLU(LEAKY_SLOPE)
    if name == "swish":
        return nn.SiLU()  # SiLU is swish with beta = 1, as in the ICD code
    raise ValueError(f"model.activation: unknown {name!r}; choose 'leaky_relu' or 'swish'")


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with 32 groups, or the largest divisor of 32 that divides `channels` (small smoke widths)."""
    return nn.GroupNorm(math.gcd(32, channels), channels, affine=True)


def block_norm(kind: str, channels: int) -> nn.Module:
    """Norm inside an ICD residual block: 'group' (paper App. C.1), 'instance' (code), or 'none'."""
    if kind == "group":
        return group_norm(channels)
    if kind == "instance":
        # ICD code CondResBlock: InstanceNorm2d(affine) up to 128 channels, GroupNorm(32) for wider blocks.
        # GroupNorm(C, C) is instance norm with a per-channel affine map (same statistics, same parameters).
        return nn.GroupNorm(channels, channels, affine=True) if channels <= 128 else group_norm(channels)
    return nn.Identity()


# ----------------------------------------------------------------------------- spectral norm
class SpectralNormAtMostOne(_SpectralNorm):
    """W / max(sigma(W), 1): the IGEBM code's `lower_bound` spectral norm for its zero-initialised convs.

    Plain spectral norm would rescale a near-zero weight to norm 1 and undo the zero init (IGEBM Sec. 9.2).
    Reuses torch's power iteration (one step per training forward, as the code) and its state-dict layout.
    """

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        w = self._reshape_weight_to_matrix(weight)  # (C_out, C_in * k * k)
        if self.training:
            self._power_method(w, self.n_power_iterations)
        u = self._u.clone(memory_format=torch.contiguous_format)
        v = self._v.clone(memory_format=torch.contiguous_format)
        # code (utils.py:1059-1061): sigma + 1e-6, then W / sigma * min(sigma, 1) = W / max(sigma, 1)
        sigma = torch.vdot(u, torch.mv(w, v)) + 1e-6
        return weight / sigma.clamp(min=1.0)


def spectral(module: nn.Module, at_most_one: bool = False) -> nn.Module:
    """Spectral-normalise module.weight (Miyato et al. 2018); `at_most_one` only shrinks, never grows, it."""
    if at_most_one:
        parametrize.register_parametrization(module, "weight", SpectralNormAtMostOne(module.weight))
        return module
    return spectral_norm(module)


def has_spectral_norm(module: nn.Module) -> bool:
    """True when module.weight is spectral-normalised (either variant)."""
    return parametrize.is_parametrized(module, "weight") and any(
        isinstance(p, _SpectralNorm) for p in module.parametrizations.weight)


def conv3x3(c_in: int, c_out: int, sn: bool, bias: bool = False, near_zero: bool = False,
            sn_init: str = "torch") -> nn.Conv2d:
    """3x3 'same' conv, optionally spectral-normalised; `near_zero` = IGEBM zero init (std 1e-10, as the code).

    sn_init "code": a spectral-normed weight starts N(0, 1) (IGEBM utils.py get_weight). Spectral norm removes
    the scale in the forward pass, but Adam moves each raw element by ~lr per step, so the raw scale sets how
    fast the normalised weight turns: torch's default (std ~0.01-0.03 here) makes it ~30-100x faster.
    """
    conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=bias)
    if near_zero:
        # not exactly 0: power iteration needs a non-zero matrix to find its direction
        nn.init.normal_(conv.weight, std=1e-10)
    elif sn and sn_init == "code":
        nn.init.normal_(conv.weight, std=1.0)
    return spectral(conv, at_most_one=near_zero) if sn else conv


def linear(d_in: int, d_out: int, sn: bool, sn_init: str = "torch", head_init: str = "torch") -> nn.Linear:
    """Dense layer, optionally spectral-normalised; init as IGEBM's get_weight when asked (N(0, 1) / Xavier)."""
    layer = nn.Linear(d_in, d_out)
    if sn and sn_init == "code":
        nn.init.normal_(layer.weight, std=1.0)
        nn.init.zeros_(layer.bias)       # IGEBM init_fc_weight: bias starts at zero
    elif not sn and head_init == "xavier":
        nn.init.xavier_uniform_(layer.weight)
        nn.init.zeros_(layer.bias)
    return spectral(layer) if sn else layer


# ----------------------------------------------------------------------------- ICD pieces
class WSConv2d(nn.Conv2d):
    """Conv2d with weight standardisation (Qiao et al. 2019): each filter zero mean, unit std, before the conv."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight                                        # (C_out, C_in, k, k)
        flat = w.flatten(1)                                    # (C_out, C_in * k * k)
        mean = flat.mean(dim=1).view(-1, 1, 1, 1)
        std = flat.std(dim=1).view(-1, 1, 1, 1) + 1e-5        # ICD code: unbiased std + 1e-5
        return self._conv_forward(x, (w - mean) / std, self.bias)


class SelfAttention(nn.Module):
    """SAGAN self-attention (Zhang et al. 2019): x + gamma * attend(x), gamma initialised to 0 (ICD Tab. 4)."""

    def __init__(self, channels: int):
        super().__init__()
        inner = max(channels // 8, 1)
        self.query = nn.Conv2d(channels, inner, 1)
        self.key = nn.Conv2d(channels, inner, 1)
        self.value = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))  # starts as the identity: the net learns how much to attend

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q = self.query(x).flatten(2)                           # (B, C/8, N), N = H*W
        k = self.key(x).flatten(2)                             # (B, C/8, N)
        v = self.value(x).flatten(2)                           # (B, C, N)
        attn = torch.softmax(q.transpose(1, 2) @ k, dim=-1)    # (B, N, N): row i = weights of position i over keys
        out = v @ attn.transpose(1, 2)                         # (B, C, N)
        return x + self.gamma * out.view(b, c, h, w)
