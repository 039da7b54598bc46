"""E11 (IGEBM §6, Fig. 10): config, latent vectors, held-out region, training, regressor errors, evaluation, claims."""
from __future__ import annotations

import copy
import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from ebm_repro import checkpoint as ck
from ebm_repro import datasets_dsprites as D
from ebm_repro.claims import NOT_REPRODUCED, REPRODUCED, SMOKE
from ebm_repro.config import ConfigError
from ebm_repro.data import prepare_dataset
from ebm_repro.experiments.compose import claims as compose_claims
from ebm_repro.experiments.compose import report
from ebm_repro.experiments.compose.claims import judge
from ebm_repro.experiments.compose.config import ATTRIBUTES, compose_config
from ebm_repro.experiments.compose.data import condition, held_out_mask, load
from ebm_repro.experiments.compose.regressor import errors, predict, train_regressor
from ebm_repro.experiments.compose.sample import sample_all
from ebm_repro.experiments.compose.train import load_attribute_model, train_attribute
from ebm_repro.params import load_params

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def params() -> dict:
    return load_params(ROOT / "params.yaml")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("dsprites")
    prepare_dataset("dsprites_gen", d, seed=0, n_train=400, n_test=150)
    return d


def tiny(params: dict, **train) -> object:
    """The smoke config shrunk to 16x16 images, width 4, 2 Langevin steps, batch 8, 3 iterations, 4 targets a set."""
    cfg = compose_config(params, "smoke")
    return dataclasses.replace(
        cfg, image_size=16, model=dataclasses.replace(cfg.model, width=4),
        sampler=dataclasses.replace(cfg.sampler, n_steps=2), buffer=dataclasses.replace(cfg.buffer, size=16),
        train=dataclasses.replace(cfg.train, batch_size=8, ckpt_every=2, log_every=1,
                                  n_iters=dataclasses.replace(cfg.train.n_iters, **{a: 3 for a in ATTRIBUTES}),
                                  **train),
        regressor=dataclasses.replace(cfg.regressor, width=4, n_iters=5, batch_size=16),
        joint=dataclasses.replace(cfg.joint, n_steps=2), eval=dataclasses.replace(cfg.eval, n_per_set=4,
                                                                                  batch_size=8, n_figure=3))


# ----------------------------------------------------------------------------- config
def test_both_settings_resolve_and_smoke_uses_the_generated_stand_in(params):
    paper, smoke = compose_config(params, "paper"), compose_config(params, "smoke")
    assert paper.dataset == "dsprites" and smoke.dataset == "dsprites_gen"
    # the IGEBM README's dSprites command and train.py / ebm_combine.py defaults
    assert (paper.sampler.n_steps, paper.sampler.step_size, paper.sampler.noise_std) == (20, 500.0, 0.005)
    assert paper.train.batch_size == 256 and paper.model.activation == "swish" and paper.buffer.reinit_frac == 0.05
    assert (paper.chain_init.mean, paper.chain_init.std) == (0.5, 0.5) and paper.joint.mode == "per_model"
    assert [r.models for r in paper.rows][-1] == ATTRIBUTES


@pytest.mark.parametrize("key,value,match", [
    (("rows",), [{"models": ["scale", "colour"]}], r"compose.rows\[0\]"),
    (("rows",), [{"models": ["scale", "scale"]}], r"compose.rows\[0\]"),
    (("image_size",), 48, "compose.image_size"),
    (("loss", "kl_opt_coeff"), 1.0, "zero_kl"),
    (("eval", "n_figure"), 10 ** 6, "n_figure"),
])
def test_bad_values_are_refused_naming_the_key(params, key, value, match):
    p = copy.deepcopy(params)
    node = p["compose"]["paper"]
    for k in key[:-1]:
        node = node[k]
    node[key[-1]] = value
    with pytest.raises(ConfigError, match=match):
        compose_config(p, "paper")


def test_train_hash_of_one_attribute_ignores_the_others_iterations(params):
    p = copy.deepcopy(params)
    before = {a: compose_config(p, "paper").train_hash(a) for a in ATTRIBUTES}
    p["compose"]["paper"]["train"]["n_iters"]["scale"] += 1
    after = {a: compose_config(p, "paper").train_hash(a) for a in ATTRIBUTES}
    assert [a for a in ATTRIBUTES if before[a] != after[a]] == ["scale"]


# ----------------------------------------------------------------------------- latents and the held-out region
def test_latent_vectors_follow_igebm_data_py():
    c = D.latent_classes(np.array([0, D.N_IMAGES - 1, D.grid_index(np.array([[0, 1, 2, 10, 5, 7]]))[0]]))
    np.testing.assert_allclose(condition("scale", c)[:, 0], [0.5, 1.0, 0.7], atol=1e-6)
    np.testing.assert_allclose(condition("position", c), [[0, 0], [1, 1], [5 / 31, 7 / 31]], atol=1e-6)
    theta = 10 * 2 * math.pi / 39
    np.testing.assert_allclose(condition("rotation", c), [[1, 0], [1, 0], [math.cos(theta), math.sin(theta)]],
                               atol=1e-6)
    np.testing.assert_array_equal(condition("shape", c), [[1, 0, 0], [0, 0, 1], [0, 1, 0]])
    with pytest.raises(ValueError, match="attribute"):
        condition("colour", c)


def test_held_out_region_is_a_sixth_of_the_grid(params):
    h = compose_config(params, "paper").held_out           # scale 0.9 or 1.0 (2 of 6), posX < 0.5 (16 of 32)
    mask = held_out_mask(D.latent_classes(np.arange(D.N_IMAGES)), h)
    assert mask.sum() == D.N_IMAGES // 6 == 122880


# ----------------------------------------------------------------------------- training
def test_attribute_model_trains_without_the_held_out_images_and_resumes_exactly(params, data_dir, tmp_path):
    cfg = tiny(params)
    s = train_attribute(cfg, "position", data_dir, tmp_path / "ref.pt", log=lambda m: None)
    _, classes = load(data_dir / "train.npz")
    assert s["n_train"] == int((~held_out_mask(classes, cfg.held_out)).sum()) and s["n_held_out_removed"] > 0
    ref = load_attribute_model(tmp_path / "ref.pt", cfg, "position", torch.device("cpu"))
    # interrupted after the checkpoint at step 2, resumed in a fresh state: the same weights as one straight run
    short = dataclasses.replace(cfg, train=dataclasses.replace(
        cfg.train, n_iters=dataclasses.replace(cfg.train.n_iters, position=2)))
    ckpt = tmp_path / "ckpt.pt"
    train_attribute(short, "position", data_dir, tmp_path / "short.pt", ckpt, log=lambda m: None)
    state = ck.load(ckpt)
    ck.save(ckpt, {**state, "training_hash": cfg.train_hash("position")})   # as if the full run had stopped at 2
    torch.manual_seed(999)
    train_attribute(cfg, "position", data_dir, tmp_path / "resumed.pt", ckpt, log=lambda m: None)
    got = load_attribute_model(tmp_path / "resumed.pt", cfg, "position", torch.device("cpu"))
    for (k, a), b in zip(ref.state_dict().items(), got.state_dict().values()):
        torch.testing.assert_close(a, b, msg=k)
    with pytest.raises(ck.CheckpointError, match="another compose config"):
        load_attribute_model(tmp_path / "ref.pt", dataclasses.replace(cfg, image_size=32), "position",
                             torch.device("cpu"))


# ----------------------------------------------------------------------------- the regressor's errors
def _pred(scale, pos, shape, k_theta) -> dict:
    shape = torch.tensor(shape)
    return {"scale": torch.tensor(scale), "pos": torch.tensor(pos), "shape": shape,
            "k": torch.tensor([(4, 2, 1)[s] for s in shape]), "k_theta": torch.tensor(k_theta)}


def test_errors_by_hand_with_rotation_modulo_the_drawn_shapes_symmetry():
    # targets: square at theta index 1 (9.23°), heart at index 38 (350.77°), both scale 0.5 at (0, 0)
    classes = D.latent_classes(D.grid_index(np.array([[0, 0, 0, 1, 0, 0], [0, 2, 0, 38, 0, 0]])))
    t1, t2 = D.VALUES[3][1], D.VALUES[3][38]
    pred = _pred([0.7, 0.5], [[0.3, 0.4], [0.0, 0.0]], [0, 2],
                 [4 * (t1 + math.pi / 2) - 2 * math.pi, t2 + math.radians(20) - 2 * math.pi])
    e = errors(pred, classes)
    np.testing.assert_allclose(e["scale"], [0.2, 0.0], atol=1e-6)
    np.testing.assert_allclose(e["position"], [0.5, 0.0], atol=1e-6)          # 3-4-5
    np.testing.assert_allclose(e["rotation"], [0.0, 20.0], atol=1e-3)         # a square turned 90° is the same
    np.testing.assert_array_equal(e["shape"], [1.0, 1.0])
    pred["shape"], pred["k"] = torch.tensor([1, 0]), torch.tensor([2, 4])    # read as an ellipse and a square
    e = errors(pred, classes)
    assert e["shape"].tolist() == [0.0, 0.0] and e["rotation"].max() <= 45.0 + 1e-4


def test_regressor_learns_position_and_scale_well_beyond_chance(params, data_dir):
    cfg = tiny(params)
    cfg = dataclasses.replace(cfg, regressor=dataclasses.replace(cfg.regressor, width=8, n_iters=300, batch_size=32))
    model, info = train_regressor(cfg, data_dir, torch.device("cpu"), log=lambda m: None)
    images, classes = load(data_dir / "test.npz")
    shuffled = classes[np.random.default_rng(0).permutation(len(classes))]
    from ebm_repro.experiments.compose.data import to_float
    pred = predict(model, to_float(images, cfg.image_size))
    real, chance = errors(pred, classes), errors(pred, shuffled)
    assert real["position"].mean() < 0.5 * chance["position"].mean()
    assert real["scale"].mean() < 0.7 * chance["scale"].mean()
    assert info["test_errors"]["position"] == pytest.approx(float(real["position"].mean()), rel=1e-5)


# ----------------------------------------------------------------------------- sampling, evaluation, figure, table
def test_pipeline_on_tiny_models_and_a_perfect_generator_scores_as_the_real_images(params, data_dir, tmp_path):
    cfg = tiny(params)
    for a in ATTRIBUTES:
        train_attribute(cfg, a, data_dir, tmp_path / f"{a}.pt", log=lambda m: None)
    models = {a: load_attribute_model(tmp_path / f"{a}.pt", cfg, a, torch.device("cpu")) for a in ATTRIBUTES}
    arrays = sample_all(cfg, models, data_dir, torch.device("cpu"), log=lambda m: None)
    n = 2 * cfg.eval.n_per_set
    assert arrays["ground_truth"].shape == (n, 16, 16) and arrays["set"].tolist() == [0] * (n // 2) + [1] * (n // 2)
    assert all(arrays[f"row{i}"].shape == (n, 16, 16) for i in range(len(cfg.rows)))
    held = held_out_mask(arrays["classes"], cfg.held_out)
    assert held.tolist() == arrays["set"].astype(bool).tolist()
    regressor, info = train_regressor(cfg, data_dir, torch.device("cpu"), log=lambda m: None)
    meta = {"setting": "smoke", "rows": [list(r.models) for r in cfg.rows] + [["scale", "position"]]}
    arrays["row7"] = arrays["ground_truth"]                                   # a perfect generator
    meta["rows"][7] = ["scale", "position", "shape"]
    res = report.evaluate(arrays, meta, regressor)
    assert res["rows"][7]["errors"] == res["real"]
    text = report.table(res, cfg, meta, info)
    assert text.count("\n| ") == len(meta["rows"]) + 2 + 1                    # rows, 2 reference rows, header
    line = next(l for l in text.splitlines() if l.startswith("| scale + position + shape "))
    assert "—" in line.split("|")[5]                                          # rotation not conditioned: no cell
    report.figure(arrays, meta, cfg, tmp_path / "fig.png")
    assert (tmp_path / "fig.png").stat().st_size > 1000 and (tmp_path / "fig.pdf").is_file()


# ----------------------------------------------------------------------------- claims
def _results(joint_in=0.1, joint_out=0.1, shape_acc=0.4) -> dict:
    def e(v, acc=0.5):
        return {"scale": v, "position": v, "rotation": 100 * v, "shape": acc}
    rows = [{"name": a, "models": [a], "errors": {"in-distribution": e(0.1, shape_acc), "held-out": e(0.1)}}
            for a in ATTRIBUTES]
    rows.append({"name": "all", "models": list(ATTRIBUTES),
                 "errors": {"in-distribution": e(joint_in), "held-out": e(joint_out)}})
    return {"rows": rows, "real": {"in-distribution": e(0.01), "held-out": e(0.01)},
            "chance": {"in-distribution": e(0.4), "held-out": e(0.4)}, "n_per_set": 10}


def test_claims_are_judged_by_their_criteria(params):
    c = compose_config(params, "paper").claims                  # chance_frac 0.5, ratio 1.5, shape_unreliable 0.67
    ok = {v["key"].split("/")[-1]: v["held"] for v in judge(_results(), c)}
    assert ok == {"joint_preserves_factors": True, "no_quality_loss": True, "held_out_combinations": True,
                  "shape_not_definitive": True}
    worse = {v["key"].split("/")[-1]: v["held"] for v in judge(_results(joint_in=0.16, joint_out=0.25,
                                                                        shape_acc=0.9), c)}
    # 0.16 <= 0.5 x 0.4 but > 1.5 x 0.1; held-out 0.25 > 1.5 x 0.16; shape 90% is definitive
    assert worse == {"joint_preserves_factors": True, "no_quality_loss": False, "held_out_combinations": False,
                     "shape_not_definitive": False}
    missing = judge({**_results(), "rows": _results()["rows"][:4]}, c)
    assert [v["held"] for v in missing][:3] == [None] * 3 and "compose.rows" in missing[0]["missing"]
    # nothing learned: every error at chance. The joint is "no worse than the singles" and shape is at chance,
    # but neither claim holds, since the single models do not recover their attributes either
    flat = _results(joint_in=0.4, joint_out=0.4)
    for r in flat["rows"]:
        r["errors"]["in-distribution"].update(scale=0.4, position=0.4, rotation=40.0)
    none = {v["key"].split("/")[-1]: v["held"] for v in judge(flat, c)}
    assert none == {"joint_preserves_factors": False, "no_quality_loss": False, "held_out_combinations": False,
                    "shape_not_definitive": False}


def test_claims_read_the_summary_and_say_when_not_run(params, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rows = compose_claims(params, "smoke/")
    assert len(rows) == 4 and all(r.verdict.startswith("not run: no smoke/results/compose/summary.json") for r in rows)
    cfg = compose_config(params, "paper")
    for setting, verdicts in (("paper", {REPRODUCED, NOT_REPRODUCED}), ("smoke", {SMOKE})):
        path = tmp_path / ("" if setting == "paper" else "smoke/") / "results/compose/summary.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        summary = {"setting": setting, "claims": judge(_results(joint_out=0.3), cfg.claims)}
        path.write_text(json.dumps(summary))
        got = compose_claims({**params, "setting": setting}, "" if setting == "paper" else "smoke/")
        assert {r.verdict for r in got} == verdicts
        if setting == "paper":
            assert [r.verdict for r in got] == [REPRODUCED, REPRODUCED, NOT_REPRODUCED, REPRODUCED]
            assert got[2].output == "results/tables/compose.md" and "chance" in got[2].reproduced

