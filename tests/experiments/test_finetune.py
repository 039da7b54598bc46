"""E9 (IGEBM Tab. 1): the FT initialisation copies the EBM's weights, the four runs, the table and the claims."""
from __future__ import annotations

import json

import pytest
import torch
import yaml

from ebm_repro import config as C
from ebm_repro import checkpoint as ck
from ebm_repro.claims import NOT_REPRODUCED, REPRODUCED, SMOKE
from ebm_repro.cli import main
from ebm_repro.experiments import finetune as FT
from ebm_repro.params import load_params
from tests.experiments.tiny_ebm import ROOT, tiny_checkpoint, tiny_data, tiny_params


def test_ft_initialisation_copies_every_tensor_of_the_ebm_checkpoint(tmp_path):
    params = tiny_params(tmp_path)
    cfg, model = tiny_checkpoint(params, "igebm_cond", tmp_path / "model.pt")
    fc = FT.finetune_config(load_params(params), "smoke")
    saved = ck.load(model)["model"]
    clf, copied, meta = FT.build_classifier(cfg, fc, "ebm", model, 10)
    assert copied == sorted(saved) and meta["step"] == 7     # the complete list of the EBM's tensors
    own = clf.net.state_dict()
    assert set(own) == set(saved)
    assert all(torch.equal(own[k], saved[k]) for k in saved)
    fresh, none, _ = FT.build_classifier(cfg, fc, "scratch", None, 10)
    assert none == []
    differ = [k for k, v in fresh.net.state_dict().items() if v.is_floating_point() and not torch.equal(v, saved[k])]
    assert len(differ) > 10                                   # the baseline really starts elsewhere


def test_linear_head_runs_copy_all_but_the_removed_layer(tmp_path):
    params = tiny_params(tmp_path)
    p = load_params(params)
    p["finetune"]["smoke"].update(variant="igebm_uncond", head="linear")
    cfg, model = tiny_checkpoint(params, "igebm_uncond", tmp_path / "model.pt")
    fc = FT.finetune_config(p, "smoke")
    saved = ck.load(model)["model"]
    clf, copied, _ = FT.build_classifier(cfg, fc, "ebm", model, 10)
    assert copied == sorted(k for k in saved if not k.startswith("head."))
    assert all(torch.equal(clf.net.state_dict()[k], saved[k]) for k in copied)
    assert clf.net.head.out_features == 10


def test_head_must_match_the_kind_of_variant():
    p = yaml.safe_load((ROOT / "params.yaml").read_text())
    p["finetune"]["paper"]["head"] = "linear"                 # with the conditional igebm_cond
    with pytest.raises(C.ConfigError, match="finetune.paper: head 'linear'"):
        FT.check(p)
    p["finetune"]["paper"].update(head="energies", variant="igebm_uncond")
    with pytest.raises(C.ConfigError, match="unconditional"):
        FT.check(p)


def test_four_runs_and_the_table(tmp_path):
    params = tiny_params(tmp_path)
    data = tiny_data(tmp_path)
    _, model = tiny_checkpoint(params, "igebm_cond", tmp_path / "train" / "model.pt")
    outs = []
    for run in FT.RUNS:
        out = tmp_path / "finetune" / f"{run}.json"
        extra = ["--model", str(model)] if FT.RUNS[run][1] == "ebm" else []
        main(["train-finetune", "--params", str(params), "--run", run, "--data", str(data), *extra, "--out", str(out)])
        outs.append(out)
    r = {json.loads(o.read_text())["run"]: json.loads(o.read_text()) for o in outs}
    assert r["ft"]["n_copied"] == len(ck.load(model)["model"]) and r["baseline"]["n_copied"] == 0
    assert r["ft_da"]["augment"] and not r["ft"]["augment"] and r["ft"]["steps"] == 2   # 16 images, batch 8
    assert all(0 <= v["test_acc"] <= 100 and v["n_test"] == 10 for v in r.values())
    table = tmp_path / "finetune.md"
    main(["table-finetune", "--params", str(params), "--results", *map(str, outs), "--out", str(table)])
    text = table.read_text()
    for col in ("Baseline", "FT", "Baseline + DA", "FT + DA"):
        assert f" {col} " in text
    assert "| test accuracy (paper, %)    | 83.6" in text and f"{r['ft_da']['test_acc']:.1f}" in text


def write_results(root, accs: dict, setting="paper"):
    d = root / "results" / "finetune"
    d.mkdir(parents=True, exist_ok=True)
    for run, acc in accs.items():
        (d / f"{run}.json").write_text(json.dumps({"run": run, "setting": setting, "test_acc": acc}))


def test_claims_numbers_within_one_point_and_the_ft_direction(tmp_path):
    params = load_params(ROOT / "params.yaml")
    assert all(c.verdict.startswith("not run") for c in FT.claims(params, f"{tmp_path}/"))
    write_results(tmp_path, {"baseline": 84.5, "ft": 86.0, "baseline_da": 88.0, "ft_da": 90.9})
    got = {c.key.split("/")[-1]: c for c in FT.claims(params, f"{tmp_path}/")}
    assert got["Baseline"].verdict == REPRODUCED and got["FT"].verdict == REPRODUCED     # 0.9, 0.5 points off
    assert got["Baseline + DA"].verdict == NOT_REPRODUCED and got["FT + DA"].verdict == REPRODUCED   # 1.7, 0.7
    assert got["ft_beats_baseline"].verdict == REPRODUCED
    write_results(tmp_path, {"ft_da": 87.0})                  # FT + DA below Baseline + DA: direction fails
    assert {c.key.split("/")[-1]: c for c in FT.claims(params, f"{tmp_path}/")}["ft_beats_baseline"].verdict \
        == NOT_REPRODUCED
    write_results(tmp_path, {r: 50.0 for r in FT.RUNS}, setting="smoke")
    assert {c.verdict for c in FT.claims(params, f"{tmp_path}/")} == {SMOKE}
