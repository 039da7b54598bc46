"""E8 (IGEBM Figs. 6 / 12): chains under the target label, the command's shares and figure, the judged claim."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch
import yaml

from ebm_repro import config as C
from ebm_repro.claims import NOT_REPRODUCED, REPRODUCED, SMOKE
from ebm_repro.cli import main
from ebm_repro.config import SamplerConfig
from ebm_repro.experiments import cross_class as X
from ebm_repro.params import load_params
from tests.experiments.tiny_ebm import ROOT, tiny_checkpoint, tiny_data, tiny_params


class Recorder(torch.nn.Module):
    """An energy 0.5 |x - 0.5|^2 that records the labels it is asked about."""

    def __init__(self):
        super().__init__()
        self.labels = []

    def forward(self, x, y):
        self.labels.append(y.clone())
        return 0.5 * ((x - 0.5) ** 2).flatten(1).sum(1)


def test_map_pair_runs_every_chain_under_the_target_label_and_keeps_each_call():
    cfg = X.cross_class_config(load_params(ROOT / "params.yaml"), "smoke")
    sampler = SamplerConfig(n_steps=3, step_size=0.1, noise_std=0.0, grad_clip=0.0, clamp=True)
    cc = dataclasses.replace(cfg, sampler=sampler, calls=4, batch_size=2)
    net = Recorder()
    x = torch.zeros(5, 3, 4, 4)
    snaps = X.map_pair(net, x, 7, cc, "cpu")
    assert snaps.shape == (4, 5, 3, 4, 4)                        # (calls, N, C, H, W)
    assert all(torch.equal(y, torch.full_like(y, 7)) for y in net.labels)
    assert len(net.labels) == 3 * 4 * 3                          # 3 batches x 4 calls x 3 steps
    # no noise: each step moves x to x + 0.1 (0.5 - x), so after k steps 0.5 (1 - 0.9^k); calls continue the chain
    for k in range(4):
        assert torch.allclose(snaps[k], torch.full_like(x, 0.5 * (1 - 0.9 ** (3 * (k + 1)))), atol=1e-6)


def test_config_refuses_an_unconditional_variant_and_a_pair_of_one_class():
    p = yaml.safe_load((ROOT / "params.yaml").read_text())
    p["cross_class"]["paper"]["variant"] = "igebm_uncond"
    with pytest.raises(C.ConfigError, match="unconditional"):
        X.check(p)
    p = yaml.safe_load((ROOT / "params.yaml").read_text())
    p["cross_class"]["smoke"]["pairs"] = [{"source": 3, "target": 3}]
    with pytest.raises(C.ConfigError, match=r"cross_class.smoke.pairs\[0\]"):
        X.check(p)


def test_command_writes_shares_per_pair_and_the_figure(tmp_path):
    params = tiny_params(tmp_path)
    data = tiny_data(tmp_path)
    _, model = tiny_checkpoint(params, "igebm_cond", tmp_path / "train" / "model.pt")
    common = ["--params", str(params)]
    judge = tmp_path / "classifier.pt"
    main(["train-classifier", *common, "--data", str(data), "--out", str(judge)])
    png, res = tmp_path / "cc.png", tmp_path / "cc.json"
    main(["map-cross-class", *common, "--model", str(model), "--classifier", str(judge), "--data", str(data),
          "--out-png", str(png), "--out-json", str(res)])
    r = json.loads(res.read_text())
    pairs = yaml.safe_load(params.read_text())["cross_class"]["smoke"]["pairs"]
    assert [(q["source"], q["target"]) for q in r["pairs"]] == [(q["source"], q["target"]) for q in pairs]
    for q in r["pairs"]:
        assert q["n"] == 3 and q["share_target"] in (0, 1 / 3, 2 / 3, 1) and q["share_target"] + q["share_source"] <= 1
    assert r["mean_share_target"] == pytest.approx(sum(q["share_target"] for q in r["pairs"]) / len(pairs))
    assert r["held"] == (r["mean_share_target"] >= r["criterion"])
    assert png.stat().st_size > 1000 and png.with_suffix(".pdf").exists()


def test_claim_is_judged_by_the_mean_target_share_against_the_criterion(tmp_path):
    params = load_params(ROOT / "params.yaml")
    assert X.claims(params, f"{tmp_path}/")[0].verdict.startswith("not run")
    out = tmp_path / "results" / "cross_class"
    out.mkdir(parents=True)
    pair = {"source_name": "cat", "target_name": "dog", "share_target": 0.7}
    body = {"setting": "paper", "criterion": 0.5, "mean_share_target": 0.7, "held": True, "pairs": [pair],
            "classifier": {"test_acc": 93.0}}
    (out / "cross_class.json").write_text(json.dumps(body))
    c = X.claims(params, f"{tmp_path}/")[0]
    assert c.verdict == REPRODUCED and "0.70" in c.reproduced and ">= 50%" in c.tolerance
    (out / "cross_class.json").write_text(json.dumps({**body, "held": False, "mean_share_target": 0.3}))
    assert X.claims(params, f"{tmp_path}/")[0].verdict == NOT_REPRODUCED
    (out / "cross_class.json").write_text(json.dumps({**body, "setting": "smoke"}))
    assert X.claims(params, f"{tmp_path}/")[0].verdict == SMOKE
