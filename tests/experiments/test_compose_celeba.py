"""E19: the composed energy is the sum of the conditional energies, sampling descends it, the classifier and table."""
from __future__ import annotations

import json

import numpy as np
import torch
import yaml

from ebm_repro import config as C
from ebm_repro.experiments import compose_celeba as E
from ebm_repro.params import load_params


class Quadratic(torch.nn.Module):
    """E(x | y) = 0.5 * sum (x - c)^2 + y: a bowl around c (y shifts it, so the label must be 1)."""

    def __init__(self, c: float):
        super().__init__()
        self.c = c

    def forward(self, x, y):
        return 0.5 * ((x - self.c) ** 2).flatten(1).sum(1) + y.float()


def test_composed_energy_is_the_sum_at_label_one():
    models = [Quadratic(0.2), Quadratic(0.6)]
    x = torch.rand(3, 3, 4, 4)
    e = E.composed_energy(models, 3, "cpu")(x)
    expected = sum(0.5 * ((x - c) ** 2).flatten(1).sum(1) + 1.0 for c in (0.2, 0.6))
    assert torch.allclose(e, expected)


def test_composed_sampling_reaches_the_minimum_of_the_summed_energy():
    # sum of bowls at 0.2 and 0.6 -> minimum at 0.4; step 0.5 / 2 models halves the distance each step
    s = E.ComposeSampling(n_samples=4, batch_size=4, step_size=0.5, noise_std=0.0, init_rounds=1,
                          steps_per_round=1, refine_steps=30, seed=0)
    out = E.sample_composition([Quadratic(0.2), Quadratic(0.6)], s, lambda x: x, (3, 4, 4), 4, "cpu")
    assert out.shape == (4, 4, 4, 3) and out.dtype == np.uint8
    assert set(np.unique(out)) <= {101, 102}  # floor(0.4 * 255) within float rounding


def test_classifier_trains_and_reports_accuracy_and_attribute_shares(tmp_path):
    from ebm_repro.datasets_large import write_npz
    from tests.large_standins import CELEBA_NAMES

    rng = np.random.default_rng(0)
    for split, n in (("train", 8), ("test", 6)):
        attrs = rng.integers(0, 2, (n, 40)).astype(np.uint8)
        write_npz(tmp_path / f"{split}.npz", dict(images=rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
                                                 labels=np.zeros(n, np.int64), attributes=attrs,
                                                 attribute_names=np.array(CELEBA_NAMES)))
    state, info = E.train_classifier(tmp_path / "train.npz", tmp_path / "test.npz",
                                     E.ClassifierConfig(epochs=1, batch_size=4, lr=1e-3, seed=0), "cpu")
    male = CELEBA_NAMES.index("Male")
    assert info["test_share_with_attribute"]["female"] == float((attrs[:, male] == 0).mean())
    assert all(0.0 <= v <= 1.0 for v in info["test_accuracy"].values()) and info["n_test"] == 6
    E.save_classifier(tmp_path / "clf.pt", state)
    net = E.load_classifier(tmp_path / "clf.pt")  # strict: a whole ResNet-18 with 4 logits
    assert net.fc.out_features == 4 and not net.training


def test_table_and_claims_say_not_run_when_celebahq_is_missing(tmp_path):
    cell = "not run: dataset missing (put CelebAMask-HQ.zip, unzipped at `data/raw/CelebAMask-HQ`)"
    t = E.table(None, cell, "paper")
    assert t.count(cell) == 10  # the 1 + 2 + 3 + 4 conditioned cells of our rows
    assert "(paper 0.922)" in t and "| IGEBM (Young)" in t
    params = load_params()
    (tmp_path / "data/celebahq128").mkdir(parents=True)
    (tmp_path / "data/celebahq128/status.json").write_text(json.dumps(
        {"status": "missing", "path": "data/raw/CelebAMask-HQ", "dataset": "celebahq128"}))
    claims = E.claims(params, f"{tmp_path}/")
    assert len(claims) == 10 and all(c.verdict.startswith("not run: dataset missing") for c in claims)
    (tmp_path / "results/compose_celeba").mkdir(parents=True)
    (tmp_path / "results/compose_celeba/shares.json").write_text(json.dumps(
        {"n_samples": 4, "compositions": {str(k): {a: 0.5 for a in E.ATTRS[:k]} for k in range(1, 5)}}))
    claims = E.claims(params, f"{tmp_path}/")
    young1 = next(c for c in claims if c.key.endswith("ICD/Young/0"))
    assert young1.reproduced == 0.5 and young1.paper == 0.847 and young1.verdict == "not reproduced"


def test_params_compose_the_four_attribute_models_in_table_3_order():
    params = load_params()
    cfg = E.settings(params, "paper")
    assert [m.attribute for m in cfg.models] == list(E.ATTRS)
    rc = C.resolve(params, cfg.models[1].variant, setting="paper", validated=True)
    assert rc.dataset == "celebahq128_female" and rc.hp.model.arch == "icd_celeba" and rc.hp.model.width == 128
    bad = yaml.safe_load(yaml.safe_dump(params))
    bad["compose_celeba"]["paper"]["models"][0]["variant"] = "icd"
    try:
        E.check(bad)
    except C.ConfigError as err:
        assert "n_classes 2" in str(err)
    else:
        raise AssertionError("a non-conditional model was accepted")
