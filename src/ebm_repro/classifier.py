"""Image classifiers: the judge of E7/E8 (a standard CIFAR ResNet-18) and E9's classifiers built from an energy net.

E9 (IGEBM §4.3, Tab. 1) turns the conditional EBM into a classifier. The authors' code (ebm_sandbox.py
`construct_finetune_label`, l.451-474) uses the energies over the classes as logits, logit_k = -E(x, k), and
trains every weight (`head="energies"`). The paper text instead replaces the last linear layer with a
classification layer (`head="linear"`, on an unconditional net: "after pretraining in an unsupervised way").
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ebm_repro import checkpoint as ck
from ebm_repro.classifier_config import ARCHS, HEADS, ClassifierTrainConfig

CROP_PAD = 4  # IGEBM data.py l.204: RandomCrop(32, padding=4), then RandomHorizontalFlip (l.205)


def to_unit(images_u8: torch.Tensor) -> torch.Tensor:
    """uint8 (N, H, W, C) -> float (N, C, H, W) = k / 256, as the IGEBM code reads test images (data.py l.254)."""
    return images_u8.permute(0, 3, 1, 2).float() / 256.0


def flip_crop(x: torch.Tensor, generator: torch.Generator | None = None, pad: int = CROP_PAD) -> torch.Tensor:
    """Random crop of the zero-padded image (pad px each side) and a horizontal flip with p 0.5, per image."""
    b, c, h, w = x.shape
    dev = x.device
    padded = F.pad(x, (pad, pad, pad, pad))                                     # (B, C, H + 2p, W + 2p)
    oy = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(dev)       # crop offsets (B,)
    ox = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(dev)
    flip = torch.rand(b, generator=generator).to(dev) < 0.5                     # (B,)
    cols = torch.arange(w, device=dev).expand(b, w)                             # (B, W)
    cols = torch.where(flip[:, None], cols.flip(1), cols) + ox[:, None]         # flipped crop reads right to left
    rows = torch.arange(h, device=dev)[None] + oy[:, None]                      # (B, H)
    out = padded[torch.arange(b, device=dev)[:, None, None], :, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous()


def resnet18(n_classes: int, channels: int = 3) -> nn.Module:
    """torchvision ResNet-18 for 32x32 inputs: 3x3 stride-1 stem, no max-pool (the usual CIFAR adaptation)."""
    from torchvision.models import resnet18 as tv_resnet18

    net = tv_resnet18(num_classes=n_classes)
    net.conv1 = nn.Conv2d(channels, 64, 3, stride=1, padding=1, bias=False)
    net.maxpool = nn.Identity()
    return net


def make_classifier(arch: str, n_classes: int, channels: int = 3, image_size: int = 32) -> nn.Module:
    """A plain classifier by name: resnet18 (paper setting) or small_cnn (smoke: feature_net.SmallCNN)."""
    if arch == "resnet18":
        return resnet18(n_classes, channels)
    if arch == "small_cnn":
        from ebm_repro.feature_net import SmallCNN

        if channels != 3:
            raise ValueError(f"classifier arch small_cnn takes RGB images, got {channels} channels; use resnet18")
        return SmallCNN(n_classes=n_classes, width=16, image_size=image_size)
    raise ValueError(f"classifier arch: unknown {arch!r}; choose one of {ARCHS}")


class EnergyLogits(nn.Module):
    """A conditional energy net as a classifier: logit_k(x) = -E(x, k) for every class k (IGEBM code)."""

    def __init__(self, net: nn.Module, n_classes: int):
        super().__init__()
        if getattr(net.cfg, "n_classes", 0) != n_classes:
            raise ValueError(f"head 'energies' needs a conditional energy net with {n_classes} classes, got "
                             f"model.n_classes={net.cfg.n_classes}; pick a conditional variant")
        self.net, self.n_classes = net, n_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, k = len(x), self.n_classes
        # every image with every label (ebm_sandbox.py l.454-455: X tiled 10 times, Y = the 10 one-hots)
        xs = x.repeat_interleave(k, dim=0)                                  # (B * K, C, H, W)
        ys = torch.arange(k, device=x.device).repeat(b)                     # (B * K,): 0..K-1, 0..K-1, ...
        return -self.net(xs, ys).view(b, k)                                 # (B, K), l.474


class LinearHeadLogits(nn.Module):
    """An unconditional energy net whose last linear layer (-> 1) is replaced by a linear layer -> n_classes."""

    def __init__(self, net: nn.Module, n_classes: int):
        super().__init__()
        head = getattr(net, "head", None)
        if getattr(net.cfg, "n_classes", 0) != 0:
            raise ValueError("head 'linear' (paper §4.3: features of an unsupervised model) needs an unconditional "
                             f"energy net, got model.n_classes={net.cfg.n_classes}; pick an unconditional variant")
        if not isinstance(head, nn.Linear) or head.out_features != 1:
            raise ValueError(f"head 'linear' needs an energy net ending in a linear layer -> 1 (`.head`); "
                             f"arch {net.cfg.arch!r} has none")
        # the net's energy() ends in head(pooled).squeeze(-1): with K > 1 outputs it returns (B, K) logits
        net.head = nn.Linear(head.in_features, n_classes)
        self.net, self.n_classes = net, n_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)                                                  # (B, K)


def energy_classifier(net: nn.Module, head: str, n_classes: int) -> nn.Module:
    """Wrap an energy net (fresh or pretrained) as a classifier with the given head."""
    if head == "energies":
        return EnergyLogits(net, n_classes)
    if head == "linear":
        return LinearHeadLogits(net, n_classes)
    raise ValueError(f"finetune head: unknown {head!r}; choose one of {HEADS}")


def copy_ebm_weights(clf: nn.Module, ebm_state: dict[str, torch.Tensor]) -> list[str]:
    """Load an EBM's weights into a classifier's energy net; return the keys copied (all but a replaced head)."""
    own = clf.net.state_dict()
    linear = isinstance(clf, LinearHeadLogits)  # the EBM's head (-> 1 energy) is the layer the paper removes
    copied = sorted(k for k in ebm_state if not (linear and k.startswith("head.")))
    state = {k: ebm_state[k] for k in copied}
    if linear:
        state.update({k: v for k, v in own.items() if k.startswith("head.")})  # the new layer keeps its fresh init
    ck.load_state_strict(clf.net, state, "the EBM weights for fine-tuning")
    return copied


def load_ebm(cfg, model_path: Path, device: torch.device) -> tuple[nn.Module, dict]:
    """A variant's trained energy net (final or EMA weights, as test-time sampling), eval mode, and its file."""
    nets, meta = ck.load_nets(cfg, model_path, "single", device)
    return nets[0], meta


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch: int = 500) -> torch.Tensor:
    """Eval-mode class predictions (N,) of float images (N, C, H, W) in [0, 1]."""
    model.eval()
    dev = next(model.parameters()).device
    return torch.cat([model(x[i:i + batch].to(dev)).argmax(1).cpu() for i in range(0, len(x), batch)])


def subset(images: np.ndarray, labels: np.ndarray, n: int, seed: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """n images (0 = all): a seeded random subset, or the first n when seed is None (test splits)."""
    if n and n < len(labels):
        idx = (np.random.default_rng(seed).permutation(len(labels))[:n] if seed is not None else np.arange(n))
        images, labels = images[idx], labels[idx]
    return torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(np.ascontiguousarray(labels))


def train_classifier(model: nn.Module, train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray],
                     tc: ClassifierTrainConfig, augment: bool, device: torch.device,
                     log: Callable[[str], None] = print) -> dict:
    """Cross-entropy training on uint8 images (N, H, W, C); returns test accuracy (%) and the per-epoch history."""
    xtr, ytr = subset(*train, tc.n_train, tc.seed)
    xte, yte = subset(*test, tc.n_test, None)
    model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    if tc.optimizer == "adam":
        opt = torch.optim.Adam(params, lr=tc.lr, weight_decay=tc.weight_decay)
    else:
        opt = torch.optim.SGD(params, lr=tc.lr, momentum=tc.momentum, weight_decay=tc.weight_decay)
    steps_per_epoch = math.ceil(len(ytr) / tc.batch_size)
    total = tc.epochs * steps_per_epoch
    sched = (torch.optim.lr_scheduler.CosineAnnealingLR(opt, total) if tc.schedule == "cosine"
             else torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0))
    gen = torch.Generator().manual_seed(tc.seed)  # batch order and augmentation: the same for every init
    history, t0 = [], time.time()
    for epoch in range(tc.epochs):
        model.train()
        loss_sum, correct = 0.0, 0
        for idx in torch.randperm(len(ytr), generator=gen).split(tc.batch_size):
            x = to_unit(xtr[idx])                                           # (B, C, H, W)
            if augment:
                x = flip_crop(x, gen)
            y = ytr[idx].to(device)
            logits = model(x.to(device))                                    # (B, K)
            loss = F.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += float(loss.detach()) * len(idx)
            correct += int((logits.argmax(1) == y).sum())
        history.append({"epoch": epoch + 1, "loss": loss_sum / len(ytr), "train_acc": 100.0 * correct / len(ytr)})
        log(f"epoch {epoch + 1}/{tc.epochs}: loss {history[-1]['loss']:.4f}, "
            f"train acc {history[-1]['train_acc']:.1f}% ({time.time() - t0:.0f} s)")
    pred = predict(model, to_unit(xte))
    test_acc = 100.0 * float((pred == yte).float().mean())
    return {"test_acc": test_acc, "n_train": len(ytr), "n_test": len(yte), "steps": total,
            "augment": augment, "history": history, "seconds": time.time() - t0}


def save_classifier(path: Path, model: nn.Module, arch: str, shape: tuple[int, int, int], n_classes: int,
                    info: dict) -> None:
    """Weights (moved to CPU), arch, image shape (H, W, C) and training record, as plain data."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    ck.save(Path(path), {"kind": "classifier", "arch": arch, "n_classes": n_classes, "image_size": shape[0],
                         "channels": shape[2], "state_dict": state, **info})


def load_classifier(path: Path) -> tuple[nn.Module, dict]:
    """A classifier written by save_classifier (strict keys), in eval mode, and its record."""
    path = Path(path)
    obj = ck.load_data(path, "classifier", fix="delete it and rerun the train_classifier rule")
    if not isinstance(obj, dict) or obj.get("kind") != "classifier":
        raise ck.CheckpointError(f"{path} is not a classifier file of save_classifier; delete it and rerun the "
                                 f"train_classifier rule")
    model = make_classifier(obj["arch"], obj["n_classes"], obj["channels"], obj["image_size"])
    ck.load_state_strict(model, obj["state_dict"], f"classifier {path}")
    return model.eval().requires_grad_(False), obj
