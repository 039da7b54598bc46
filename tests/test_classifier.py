"""classifier.py: flip+crop, energies as logits, weight copying, the training loop, save/load."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ebm_repro import checkpoint as ck
from ebm_repro import classifier as K
from ebm_repro.classifier_config import ClassifierTrainConfig
from ebm_repro.config import ModelConfig
from ebm_repro.models import make_model


def igebm_cfg(n_classes: int, arch: str = "igebm_resnet32") -> ModelConfig:
    return ModelConfig(arch=arch, width=4, n_classes=n_classes, spectral_norm=True, spectral_norm_head=False,
                       dropout=0.0, attention=False, multiscale=False, activation="leaky_relu", norm="none",
                       image_size=32, channels=3, sn_init="code", head_init="xavier", cond_gain_offset=True,
                       residual_skip=True)


def test_flip_crop_returns_a_shift_of_the_padded_image_possibly_flipped():
    x = torch.rand(64, 3, 8, 8) + 0.5           # > 0 everywhere: zero fill shows where padding came in
    out = K.flip_crop(x, torch.Generator().manual_seed(0), pad=2)
    padded = F.pad(x, (2, 2, 2, 2))
    seen = set()
    for b in range(len(x)):
        hits = [(oy, ox, f) for oy in range(5) for ox in range(5) for f in (False, True)
                if torch.equal(out[b], (lambda c: c.flip(-1) if f else c)(padded[b, :, oy:oy + 8, ox:ox + 8]))]
        assert hits, f"image {b} is no crop of the padded image"
        seen.update(hits)
    flips = sum(f for *_, f in seen)
    assert 0 < flips < len(seen) and len({(oy, ox) for oy, ox, _ in seen}) > 5  # both flips, many offsets


def test_flip_crop_at_the_centre_offset_without_flip_is_the_identity():
    # offsets drawn from randint(0, 2p + 1): p is the un-shifted crop; find a draw that gives it and no flip
    x = torch.rand(1, 3, 6, 6)
    for seed in range(200):
        g = torch.Generator().manual_seed(seed)
        oy, ox = torch.randint(0, 9, (1,), generator=g), torch.randint(0, 9, (1,), generator=g)
        flip = torch.rand(1, generator=g) < 0.5
        if oy == 4 and ox == 4 and not flip:
            assert torch.equal(K.flip_crop(x, torch.Generator().manual_seed(seed)), x)
            return
    pytest.fail("no seed gave the centre crop")


def test_energy_logits_are_minus_the_energy_of_each_class():
    torch.manual_seed(0)
    net = make_model(igebm_cfg(10)).eval()
    clf = K.EnergyLogits(net, 10)
    x = torch.rand(3, 3, 32, 32)
    logits = clf(x)
    want = torch.stack([torch.stack([-net(x[b:b + 1], torch.tensor([k]))[0] for k in range(10)]) for b in range(3)])
    assert logits.shape == (3, 10)
    assert torch.allclose(logits, want, atol=1e-5)


def test_heads_refuse_the_wrong_kind_of_energy_net():
    with pytest.raises(ValueError, match="conditional"):
        K.EnergyLogits(make_model(igebm_cfg(0)), 10)
    with pytest.raises(ValueError, match="unconditional"):
        K.LinearHeadLogits(make_model(igebm_cfg(10)), 10)


@pytest.mark.parametrize("head, n_classes", [("energies", 10), ("linear", 0)])
def test_copy_ebm_weights_copies_every_tensor_but_a_replaced_head(head, n_classes):
    torch.manual_seed(1)
    ebm = make_model(igebm_cfg(n_classes, "igebm_resnet32" if n_classes else "igebm_resnet32_large"))
    state = {k: v.clone() for k, v in ebm.state_dict().items()}
    torch.manual_seed(2)                                  # other fresh weights
    clf = K.energy_classifier(make_model(ebm.cfg), head, 10)
    fresh_head = {k: v.clone() for k, v in clf.net.state_dict().items() if k.startswith("head.")}
    copied = K.copy_ebm_weights(clf, state)
    own = clf.net.state_dict()
    expected = sorted(k for k in state if head == "energies" or not k.startswith("head."))
    assert copied == expected                             # complete: every EBM tensor but the removed head
    assert all(torch.equal(own[k], state[k]) for k in copied)
    if head == "linear":
        assert own["head.weight"].shape == (10, ebm.head.in_features)
        assert all(torch.equal(own[k], v) for k, v in fresh_head.items())   # the new layer keeps its init
        assert clf(torch.rand(2, 3, 32, 32)).shape == (2, 10)


def test_train_classifier_learns_a_separable_problem_and_reports_percent():
    # bright vs dark images: a linear model on the mean intensity separates them exactly
    rng = np.random.default_rng(0)
    def split(n):
        y = rng.integers(0, 2, n)
        x = np.where(y[:, None, None, None] == 1, rng.integers(150, 256, (n, 8, 8, 3)),
                     rng.integers(0, 100, (n, 8, 8, 3))).astype(np.uint8)
        return x, y.astype(np.int64)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(192, 2))
    tc = ClassifierTrainConfig(epochs=5, batch_size=16, optimizer="adam", lr=0.05, momentum=0.0, weight_decay=0.0,
                               schedule="cosine", n_train=0, n_test=0, seed=0)
    info = K.train_classifier(model, split(128), split(64), tc, False, torch.device("cpu"), log=lambda s: None)
    assert info["test_acc"] == 100.0 and info["n_train"] == 128 and info["steps"] == 5 * 8
    assert info["history"][-1]["loss"] < info["history"][0]["loss"]
    # subsets: n_train / n_test take that many images
    small = K.train_classifier(model, split(128), split(64), dataclasses.replace(tc, n_train=32, n_test=10, epochs=1),
                               True, torch.device("cpu"), log=lambda s: None)
    assert small["n_train"] == 32 and small["n_test"] == 10 and small["steps"] == 2


def test_saved_classifier_loads_strictly_with_its_record(tmp_path):
    torch.manual_seed(0)
    model = K.make_classifier("small_cnn", 10)
    K.save_classifier(tmp_path / "c.pt", model, "small_cnn", (32, 32, 3), 10, {"test_acc": 55.0})
    back, info = K.load_classifier(tmp_path / "c.pt")
    assert info["test_acc"] == 55.0
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), back.state_dict().values()))
    ck.save(tmp_path / "other.pt", {"kind": "model"})
    with pytest.raises(ck.CheckpointError, match="not a classifier file"):
        K.load_classifier(tmp_path / "other.pt")


def test_resnet18_judge_keeps_32x32_resolution_in_its_stem():
    net = K.make_classifier("resnet18", 10).eval()
    assert net.conv1.stride == (1, 1) and net.conv1.kernel_size == (3, 3)
    assert isinstance(net.maxpool, torch.nn.Identity)
    with torch.no_grad():
        assert net(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(ValueError, match="unknown 'vgg'"):
        K.make_classifier("vgg", 10)
