"""E5 likelihood: energy statistics against closed forms, the "close" criterion, the report and its claims."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from ebm_repro import claims as CL
from ebm_repro import config as C
from ebm_repro.cli import main
from ebm_repro.data import load_split
from ebm_repro.energies import as_float, image_energies, load_energy_net
from ebm_repro.experiments import likelihood as L
from ebm_repro.params import load_params
from tests.experiments.energy_helpers import VARIANTS, shapes_data, tiny_params, write_model, write_samples
from tests.experiments.run_helpers import ROOT


def test_stats_and_separation_against_hand_values():
    a, b = L.stats([1.0, 2.0, 3.0]), L.stats([2.0, 3.0, 4.0])
    assert a == {"n": 3, "mean": 2.0, "std": pytest.approx(math.sqrt(2 / 3))}     # population std, as np.std
    assert L.separation(a, b) == pytest.approx(1 / math.sqrt(2 / 3))               # |2 - 3| / sqrt(2/3)
    c = L.stats([0.0, 0.0, 4.0, 4.0])                                               # mean 2, std 2
    assert L.separation(a, c) == pytest.approx(0.0)
    assert L.separation(L.stats([1.0, 3.0]), L.stats([3.0, 3.0])) == pytest.approx(1 / math.sqrt(0.5))  # std 1 and 0
    assert L.separation(L.stats([1.0]), L.stats([1.0])) == 0.0
    assert L.separation(L.stats([1.0]), L.stats([2.0])) == math.inf
    # the paper's own numbers (IGEBM §4.2): 0.003144 / 0.018627 and 0.00553 / 0.037151
    p = L.paper_stats("unconditional")
    assert L.separation(p["train"], p["test"]) == pytest.approx(0.16879, abs=1e-4)
    p = L.paper_stats("conditional")
    assert L.separation(p["train"], p["test"]) == pytest.approx(0.14885, abs=1e-4)


def test_summary_applies_the_close_criterion_at_its_bound():
    meta = {"rows": [{"variant": "a", "label": "A", "paper": "unconditional"},
                     {"variant": "b", "label": "B", "paper": "none"}]}
    base = np.array([-1.0, 1.0] * 50)                               # mean 0, std 1
    e = {"a/train": base, "a/test": base + 0.49, "a/samples": base + 0.51,
         "b/train": base, "b/test": base - 0.51, "b/samples": base}
    s = L.summarise(e, meta, close_within=0.5)
    assert s["a"]["train_test_sep"] == pytest.approx(0.49) and s["a"]["train_test_close"]
    assert s["a"]["samples_train_sep"] == pytest.approx(0.51) and not s["a"]["samples_train_close"]
    assert not s["b"]["train_test_close"] and s["b"]["samples_train_close"]


def test_energies_of_a_conditional_model_use_the_given_labels(tmp_path):
    params, _ = tiny_params(tmp_path)
    path = write_model(tmp_path, params, "igebm_cond")
    cfg = C.resolve(params, "igebm_cond", setting="smoke")
    net = load_energy_net(cfg, path, torch.device("cpu"))
    x = as_float(np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8))
    y = np.array([3, 1, 4, 1, 5])
    with torch.no_grad():
        want = net(torch.from_numpy(x).permute(0, 3, 1, 2), torch.as_tensor(y)).double().numpy()
        every = np.stack([net(torch.from_numpy(x).permute(0, 3, 1, 2), torch.full((5,), k)).double().numpy()
                          for k in range(10)], 1)                                     # (5, 10)
    np.testing.assert_allclose(image_energies(net, x, y, batch_size=2), want, rtol=1e-6)
    np.testing.assert_allclose(image_energies(net, x, None, batch_size=2), every.min(1), rtol=1e-6)
    assert not net.training


def test_score_and_report_likelihood_end_to_end_and_claims(tmp_path):
    params, ppath = tiny_params(tmp_path)
    shapes_data(tmp_path / "data")
    models = [str(write_model(tmp_path / "train", params, v, seed=i)) for i, v in enumerate(VARIANTS)]
    samples = [str(write_samples(tmp_path / "samples" / v / "single.npz", 9, 10 if v == "igebm_cond" else 0, i))
               for i, v in enumerate(VARIANTS)]
    common = ["--params", str(ppath), "--setting", "smoke"]
    energies = tmp_path / "results" / "likelihood" / "energies.npz"
    main(["score-likelihood", *common, "--models", *models, "--samples", *samples,
          "--data-root", str(tmp_path / "data"), "--out", str(energies)])
    z = np.load(energies)
    assert {len(z[f"{v}/{p}"]) for v in VARIANTS for p in L.PARTS} == {6}
    # the conditional model's training energies are E(x, y) under each image's own label
    meta = json.loads(energies.with_suffix(".json").read_text())
    train, labels = load_split(tmp_path / "data" / "shapes" / "train.npz")
    net = load_energy_net(C.resolve(params, "igebm_cond", setting="smoke"), models[1], torch.device("cpu"))
    idx = np.sort(np.random.default_rng([0, 0]).permutation(len(train))[:6])
    np.testing.assert_allclose(z["igebm_cond/train"], image_energies(net, as_float(train[idx]), labels[idx]),
                               rtol=1e-6)
    assert "6 of 20 shapes train images" in meta["images"]["igebm_cond"]["train"]

    table, fig = tmp_path / "results" / "tables" / "likelihood.md", tmp_path / "results" / "figures" / "e.png"
    summary = tmp_path / "results" / "likelihood" / "summary.json"
    main(["report-likelihood", *common, "--energies", str(energies), "--table", str(table),
          "--summary", str(summary), "--figure", str(fig)])
    s = json.loads(summary.read_text())["summary"]
    md = table.read_text()
    for v in VARIANTS:
        e_tr, e_te = z[f"{v}/train"], z[f"{v}/test"]
        sep = abs(e_tr.mean() - e_te.mean()) / math.sqrt((e_tr.std() ** 2 + e_te.std() ** 2) / 2)
        assert s[v]["train_test_sep"] == pytest.approx(sep)
        line = next(l for l in md.splitlines() if f"`{v}`" in l)
        assert f"{sep:.2f} ({'yes' if sep <= 0.5 else 'no'})" in line and f"{e_tr.mean():.4g}" in line
    assert "-0.00169 ± 0.0196" in md and "0.001454 ± 0.0176" in md and "not comparable" in md
    assert all("|" not in h for h in md.splitlines()[2].strip("|").split(" | "))   # no stray cell splits
    assert len(md.splitlines()[2].split("|")) == 13                                 # 11 columns
    assert fig.stat().st_size > 10000 and fig.with_suffix(".pdf").exists()
    cl = L.claims(params, f"{tmp_path}/")
    # per model: the closeness claim on the printed train mean, its other printed numbers, then Fig. 2's claim
    row = lambda m: [f"igebm_2019/likelihood_sec_4_2/{m}/{k}" for k in ("train/0", "train/1", "test/0", "test/1")]  # noqa: E731
    assert [c.key for c in cl] == [*row("unconditional"), "qualitative/likelihood/fig2_unconditional",
                                   *row("conditional"), "qualitative/likelihood/fig2_conditional"]
    assert {c.verdict for c in cl} == {CL.SMOKE} and cl[0].paper.startswith("train -0.00169 ± 0.0196, test 0.001454")
    assert "= 0.17" in cl[0].paper


def test_claims_verdicts_in_the_paper_setting(tmp_path):
    params = load_params(ROOT / "params.yaml")
    not_run = {c.verdict for c in L.claims(params, f"{tmp_path}/")}
    assert not_run == {f"not run: no {tmp_path}/results/likelihood/summary.json"}
    st = lambda m: {"n": 100, "mean": m, "std": 1.0}  # noqa: E731
    out = tmp_path / "results" / "likelihood" / "summary.json"
    out.parent.mkdir(parents=True)
    out.write_text(json.dumps({"setting": "paper", "summary": {
        "igebm_uncond": {"train": st(0.0), "test": st(0.2), "samples": st(0.9), "train_test_sep": 0.2,
                         "samples_train_sep": 0.9, "train_test_close": True, "samples_train_close": False},
        "igebm_cond": None, "icd": None}}))
    cl = {c.key: c for c in L.claims(params, f"{tmp_path}/")}
    unc = "igebm_2019/likelihood_sec_4_2/unconditional"
    assert cl[f"{unc}/train/0"].verdict == CL.REPRODUCED
    assert cl[f"{unc}/test/1"].verdict == CL.REPRODUCED and cl[f"{unc}/test/1"].paper == 0.0176  # beside, same verdict
    assert cl["qualitative/likelihood/fig2_unconditional"].verdict == CL.NOT_REPRODUCED
    assert cl["igebm_2019/likelihood_sec_4_2/conditional/train/0"].verdict.startswith("not run: diverged")
    assert "0.5 x pooled std" in cl[f"{unc}/train/0"].tolerance
