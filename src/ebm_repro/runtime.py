"""The runtime switches of params.yaml `runtime:` (config.RuntimeConfig) applied to a model: the Langevin hot path.

HotPath gives the energy of the Langevin steps that keep no graph (all but ICD's L_opt step): the same network,
optionally in channels-last layout, compiled, or under bf16 autocast. The steps that keep a graph and the loss
always use the eager fp32 network. docs/speed.md states what each switch changes and the measured tolerances.
"""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import torch
from torch import nn

from ebm_repro.config import RuntimeConfig


def pick_device(device: str = "auto") -> torch.device:
    """auto = cuda when available, else the CPU; any other name as torch spells it (cpu, cuda, cuda:N)."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device)


def set_matmul_precision(rt: RuntimeConfig, device: torch.device) -> None:
    """fp32 / bf16: true fp32 convolutions and matmuls on a GPU (PyTorch lets cuDNN use TF32 by default); tf32: TF32.

    CPUs have no TF32 units: there tf32 computes in fp32.
    """
    if device.type == "cuda":
        tf32 = rt.precision == "tf32"
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32


class NCHWDropout(nn.Dropout):
    """nn.Dropout whose mask is drawn in NCHW order whatever the input's layout.

    torch fills a dropout mask in memory order, so in channels-last layout the same random numbers would land on
    other units: IGEBM's dropout inside Langevin would then be another random stream, not the same maths.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x    # what F.dropout returns here (no mask, no random numbers): no NCHW copy
        if x.device.type == "cpu" and not self.inplace:
            # ATen's CPU dropout is exactly noise = bernoulli(1 - p) / (1 - p), x * noise: drawn here on an NCHW
            # buffer, the masks are the reference's and x stays channels-last (no copy of x in and out of NCHW)
            noise = torch.empty(x.shape, dtype=x.dtype, device=x.device).bernoulli_(1 - self.p).div_(1 - self.p)
            return x * noise
        return super().forward(x.contiguous())   # GPUs: the fused kernel, as the reference runs it


def prepare_model(model: nn.Module, rt: RuntimeConfig) -> nn.Module:
    """The model in the layout the runtime asks for (in place); its values and random streams are unchanged."""
    if rt.channels_last:
        for parent in list(model.modules()):
            for name, child in parent.named_children():
                # p = 0 draws no mask: left as it is, or its NCHW copy would cost a layout round trip per block
                if type(child) is nn.Dropout and child.p > 0:
                    setattr(parent, name, NCHWDropout(child.p, child.inplace))
        model.to(memory_format=torch.channels_last)
    return model


def _has_dropout(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Dropout) and m.p > 0 for m in model.modules())


@contextlib.contextmanager
def requires_grad(params: list[nn.Parameter], flags: list[bool]) -> Iterator[None]:
    """Set each parameter's requires_grad to its flag for the duration; restore the previous flags after."""
    before = [p.requires_grad for p in params]
    for p, f in zip(params, flags):
        p.requires_grad_(f)
    try:
        yield
    finally:
        for p, f in zip(params, before):
            p.requires_grad_(f)


class HotPath:
    """Energy for the Langevin steps without a graph, plus the scopes a chain runs in.

    With `compile`, theta is frozen (requires_grad False) for the whole chain: the compiled backward then
    computes the input gradient only (with theta live it would also compute every weight gradient, +50% FLOPs);
    the step that keeps a graph (L_opt) runs in `graph_scope`, which makes theta live again.
    """

    def __init__(self, model: nn.Module, rt: RuntimeConfig, device: torch.device | str,
                 compile_backend: str = "inductor"):
        self.model, self.rt, self.dev = model, rt, torch.device(device)
        self.params = list(model.parameters())
        self.net: Callable = model
        if rt.compile:
            if _has_dropout(model):
                # dropout inside Langevin (IGEBM code): draw its masks from torch's RNG as eager does, so the
                # compiled chain is the eager chain to rounding (inductor would use its own Philox stream)
                import torch._inductor.config as inductor_config
                inductor_config.fallback_random = True
            self.net = torch.compile(model, dynamic=False, backend=compile_backend)
        self.bf16 = rt.precision == "bf16"

    def energy(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """E(x[, y]) -> (B,) fp32 under the runtime switches."""
        with torch.autocast(self.dev.type, dtype=torch.bfloat16, enabled=self.bf16):
            e = self.net(x) if y is None else self.net(x, y)
        return e.float()

    def chain_scope(self) -> contextlib.AbstractContextManager:
        """Context around one sampler call (theta frozen when compiled)."""
        if not self.rt.compile:
            return contextlib.nullcontext()
        self._trainable = [p.requires_grad for p in self.params]
        return requires_grad(self.params, [False] * len(self.params))

    def graph_scope(self) -> contextlib.AbstractContextManager:
        """Context of a step that keeps a graph inside chain_scope (theta as trainable as before the chain)."""
        if not self.rt.compile:
            return contextlib.nullcontext()
        return requires_grad(self.params, self._trainable)
