"""E16 (IGEBM Fig. 13, ICD Fig. 14): chunked nearest-neighbour search, copy statistics, figure and claims."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from ebm_repro import cli
from ebm_repro.claims import NOT_REPRODUCED, REPRODUCED, SMOKE
from ebm_repro.config import ConfigError
from ebm_repro.experiments import neighbours as NB
from ebm_repro.feature_net import load_feature_classifier
from ebm_repro.metrics import pool_features
from ebm_repro.report import tile_images
from ebm_repro.params import load_params
from tests.experiments.run_helpers import ROOT
from tests.experiments.tiny_runs import tiny_world


@pytest.fixture(scope="module")
def params():
    return load_params(ROOT / "params.yaml")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return tiny_world(tmp_path_factory.mktemp("world"))


# ----------------------------------------------------------------------------- search
def test_planted_duplicate_is_found_at_distance_zero_and_the_rest_match_a_hand_count():
    keys = torch.tensor([[0.0, 0.0], [3.0, 4.0], [1.0, 0.0], [0.0, 2.0]])
    queries = torch.tensor([[0.0, 0.0], [3.0, 0.0]])      # the first is a copy of key 0
    d, i = NB.nearest(queries, keys, k=3, query_chunk=1, key_chunk=3)
    assert i.tolist() == [[0, 2, 3], [2, 0, 3]]
    # query (0, 0): itself 0, (1, 0) at 1, (0, 2) at 2; query (3, 0): (1, 0) at 2, (0, 0) at 3, (0, 2) at
    # sqrt(9 + 4) (before (3, 4) at 4)
    assert d[0].tolist() == [0.0, 1.0, 2.0]
    assert d[1].tolist() == pytest.approx([2.0, 3.0, math.sqrt(13)], abs=1e-6)


def test_chunked_search_equals_brute_force_with_a_planted_copy():
    g = torch.Generator().manual_seed(0)
    keys = torch.rand(103, 48, generator=g)                 # 103: the last key chunk is partial
    queries = torch.rand(9, 48, generator=g)
    queries[4] = keys[37]
    d, i = NB.nearest(queries, keys, k=4, query_chunk=2, key_chunk=10)
    assert i[4, 0] == 37 and d[4, 0] == 0.0                 # exact zero: the distances are recomputed directly
    brute = np.linalg.norm(queries.double().numpy()[:, None] - keys.double().numpy()[None], axis=2)  # (9, 103)
    order = np.argsort(brute, axis=1)[:, :4]
    assert (i.numpy() == order).all()
    assert d[4, 1] == pytest.approx(brute[4, order[4, 1]], rel=1e-6)  # the second nearest, by hand
    assert np.allclose(d.numpy(), np.take_along_axis(brute, order, 1), rtol=1e-6)


def test_search_refuses_more_neighbours_than_keys():
    with pytest.raises(ValueError, match="k = 5 neighbours asked from only 3 keys"):
        NB.nearest(torch.zeros(2, 4), torch.zeros(3, 4), 5, 8, 8)


def test_copy_stats_follow_the_reference_quantile():
    ref = torch.arange(1.0, 101.0)                          # real test NN distances 1..100
    st = NB.copy_stats(torch.tensor([0.0, 1.5, 5.0, 10.0]), ref, 0.01)
    assert st["threshold"] == pytest.approx(1.99)           # 1 + 0.01 * 99 (linear interpolation)
    assert st["share_below"] == 0.5                         # 0 and 1.5 lie below
    assert st["median"] == 3.25 and st["ref_median"] == 50.5 and st["min"] == 0.0


def test_config_queries_at_most_the_samples_there_are(params):
    # the queries are single.npz's samples: a larger n_queries is capped at settings.<s>.metrics.n_samples
    p = json.loads(json.dumps(params))
    n = p["settings"]["smoke"]["metrics"]["n_samples"]
    p["neighbours"]["smoke"]["n_queries"] = n + 1
    cfg = NB.neighbours_config(p, "smoke")
    assert cfg.n_queries == n and cfg.n_show <= n
    p["neighbours"]["smoke"].update(n_queries=5, n_show=6)
    with pytest.raises(ConfigError, match="n_show"):
        NB.check(p)


# ----------------------------------------------------------------------------- command and claims
def test_smoke_feature_space_is_the_classifier_pool(world):
    images = np.load(world["data"] / "test.npz")["images"][:7]
    f = pool_features(images, "smoke_classifier", world["feature_net"], batch_size=3)
    net, _ = load_feature_classifier(world["feature_net"])
    with torch.no_grad():
        want = net.features(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255)[0]
    assert f.shape == (7, want.shape[1]) and torch.allclose(f, want, atol=1e-5)


def test_tiles_sit_where_the_captions_are_placed():
    grid = np.arange(2 * 3 * 4 * 5 * 3).reshape(2, 3, 4, 5, 3).astype(np.uint8)
    canvas = tile_images(grid, pad=2, below=6)
    assert canvas.shape == (2 * (4 + 2 + 6), 3 * (5 + 2), 3)
    y, x = 1 * 12 + 1, 2 * 7 + 1                            # image (1, 2)
    assert (canvas[y:y + 4, x:x + 5] == grid[1, 2]).all() and (canvas[y + 4:y + 11, x] == 255).all()


def test_command_finds_a_planted_training_image_and_writes_figure_and_summary(tmp_path, world):
    w = world
    train = np.load(w["data"] / "train.npz")["images"]
    with np.load(w["samples"]["igebm_uncond"]) as z:
        images = z["images"].copy()
    images[0] = train[123]                                  # a sample that copies training image 123
    np.savez(w["samples"]["igebm_uncond"], images=images, labels=np.full(40, -1), info=json.dumps({}))
    out, summary = tmp_path / "nn.png", tmp_path / "nn.json"
    cli.main(["plot-neighbours", "--params", str(w["params"]), "--samples", str(w["samples"]["icd"]),
              str(w["samples"]["igebm_uncond"]), "--data", str(w["data"]), "--feature-net", str(w["feature_net"]),
              "--out", str(out), "--summary", str(summary)])
    s = json.loads(summary.read_text())
    for space in NB.SPACES:
        assert s["stats"]["igebm_uncond"][space]["min"] == pytest.approx(0.0, abs=1e-5)
        assert s["stats"]["igebm_uncond"][space]["share_below"] >= 1 / 40   # the copy counts
        assert s["stats"]["icd"][space]["n"] == 40 and s["stats"]["icd"][space]["n_ref"] == 50
    assert out.stat().st_size > 10_000 and out.with_suffix(".pdf").exists()
    assert (tmp_path / "nn.png.provenance.json").exists()


def _summary(root, setting, shares):
    d = root / "results" / "neighbours"
    d.mkdir(parents=True)
    stats = {v: {sp: {"share_below": shares[v], "n": 100, "threshold": 5.0, "median": 9.0, "ref_median": 8.0}
                 for sp in NB.SPACES} for v in shares}
    (d / "summary.json").write_text(json.dumps({"setting": setting, "stats": stats}))


def test_claims_judge_the_copy_share_against_the_quantile_plus_tolerance(tmp_path, params):
    p = {**params, "setting": "paper"}
    assert all(c.verdict.startswith("not run:") for c in NB.claims(p, f"{tmp_path}/"))
    _summary(tmp_path, "paper", {"icd": 0.06, "igebm_uncond": 0.0601})  # limit: 1% + 5 points
    verdicts = {c.key: c.verdict for c in NB.claims(p, f"{tmp_path}/")}
    assert verdicts["qualitative/neighbours/icd/pixel"] == REPRODUCED
    assert verdicts["qualitative/neighbours/igebm_uncond/feature"] == NOT_REPRODUCED
    assert math.isclose(p["neighbours"]["paper"]["copy_quantile"], 0.01)


def test_claims_of_a_smoke_run_are_not_comparable(tmp_path, params):
    _summary(tmp_path, "smoke", {"icd": 0.0, "igebm_uncond": 0.0})
    assert {c.verdict for c in NB.claims({**params, "setting": "smoke"}, f"{tmp_path}/")} == {SMOKE}
