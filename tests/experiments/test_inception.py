"""The inception table: every paper cell is its paper_numbers.yaml entry with its source, every row names its protocol."""
from __future__ import annotations

from pathlib import Path

import pytest

from ebm_repro import config as C
from ebm_repro.experiments.inception import inception_table
from ebm_repro.report import paper_lookup, paper_source, sampling_text
from ebm_repro.params import load_params

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def params():
    return load_params(ROOT / "params.yaml")


def metrics_for(params: dict, row: dict, i: int, **extra) -> dict:
    """A metrics dict as cmd_metrics writes it, with made-up but distinct scores (IS 1.1 + i, FID 100 + i)."""
    cfg = C.resolve(params, row["variant"], setting="paper")
    return {"variant": row["variant"], "mode": row["mode"], "setting": "paper", "preset": cfg.preset,
            "train_step": 1000, "diverged": None, "scored": None,
            "test_sampling": C.dataclasses.asdict(cfg.hp.test_sampling), "feature_net": "inception",
            "n_splits": 10, "fid_reference": cfg.hp.metrics.fid_reference, "IS_mean": 1.1 + i, "IS_std": 0.01,
            "FID": 100.0 + i, "KID_mean": 0.01, "KID_std": 0.001, "n_samples": 50000,
            "n_reference": 60000 if cfg.hp.metrics.fid_reference == "train_test" else 10000,
            "samples_shuffle": cfg.hp.metrics.is_shuffle, "weights_sha256": "ab" * 32, **extra}


def table_rows(md: str) -> dict[str, list[str]]:
    """Body rows of the first Markdown table, keyed by the Model cell."""
    lines = [l for l in md.split("## Metric conventions")[0].splitlines() if l.startswith("|")][2:]
    return {cells[0]: cells for cells in ([c.strip() for c in l.strip("|").split("|")] for l in lines)}


def test_each_paper_cell_is_its_yaml_entry_with_the_place_that_printed_it(params):
    rows = params["inception"]["rows"]
    md = inception_table([metrics_for(params, r, i) for i, r in enumerate(rows)], rows)
    got = table_rows(md)
    for i, row in enumerate(rows):
        cells = got[row["row"]]
        assert cells[1].startswith(f"{1.1 + i:.2f} ± 0.01") and cells[2] == f"{100.0 + i:.2f}"  # this run
        want = {}
        for path in row["paper"]:
            for k, v in paper_lookup(path).items():
                if v is not None and k not in want:
                    want[k] = f"{v:.{2 if k == 'IS' else 1}f} ({paper_source(path)})"
        assert cells[4] == want.get("IS", "—") and cells[5] == want.get("FID", "—"), row["row"]
    # the ensemble row quotes IS from IGEBM (6.79) and FID from ICD (38.2, where ICD prints IS 6.78)
    ens = got["IGEBM unconditional (10 historical ensemble)"]
    assert ens[4] == "6.79 (IGEBM Tab. 4b)" and ens[5] == "38.2 (ICD Fig. 3)"
    assert got["ICD unconditional"][4:6] == ["7.85 (ICD Fig. 3)", "25.1 (ICD Fig. 3)"]


def test_rows_name_preset_protocol_and_fid_reference(params):
    rows = params["inception"]["rows"]
    got = table_rows(inception_table([metrics_for(params, r, i) for i, r in enumerate(rows)], rows))
    icd, igebm = got["ICD unconditional"], got["IGEBM unconditional (single)"]
    assert icd[8] == "`code`" and "persistent_buffer" in icd[10] and "ONE buffer" in icd[10]
    assert "`train_10k`" in icd[9] and "shuffled" in icd[9]
    assert "chunk_buffer" in igebm[10] and "1000 of 1024 chains" in igebm[10] and "reset 1%" in igebm[10]
    assert "`train_test`" in igebm[9] and "generation order" in igebm[9]


def test_a_diverged_row_is_scored_from_the_checkpoint_its_trainer_kept(params):
    rows = params["inception"]["rows"][-1:]
    div = {"step": 700, "reason": "x", "last_good_step": 600}
    md = inception_table([metrics_for(params, rows[0], 0, diverged=div, scored="last good checkpoint, step 600")],
                         rows)
    cells = table_rows(md)["ICD unconditional"]
    assert cells[1] == "1.10 ± 0.01 (diverged at step 700; scored: last good checkpoint, step 600)"
    nothing = {k: v for k, v in metrics_for(params, rows[0], 0, diverged=div).items()
               if k not in ("IS_mean", "IS_std", "FID", "KID_mean", "KID_std")}
    assert table_rows(inception_table([nothing], rows))["ICD unconditional"][1] == \
        "diverged at step 700 (nothing to score)"


def test_sampling_text_of_the_fresh_chains_protocol(params):
    ts = C.dataclasses.asdict(C.resolve(params, "icd", setting="paper").hp.test_sampling)
    ts.update(protocol="fresh_chains")
    assert sampling_text(ts).startswith("fresh_chains: 1000 new chains per chunk")


def test_reference_points_of_real_images_and_noise_are_shown(params):
    rows = params["inception"]["rows"][:1]
    b = {"real_test": {"what": "the first 200 test images", "IS_mean": 8.1, "IS_std": 0.2, "FID": 3.0},
         "uniform_noise": {"what": "200 images of uniform noise (seed 0)", "IS_mean": 1.02, "IS_std": 0.01,
                           "FID": 250.0}, "fid_reference": "train"}
    md = inception_table([metrics_for(params, rows[0], 0)], rows, b)
    part = md.split("## Reference points computed by this run")[1].split("## Metric conventions")[0]
    cells = {c[0]: c[1:] for c in ([x.strip() for x in l.strip("|").split("|")]
                                    for l in part.splitlines() if l.startswith("|"))}
    assert cells["real test images"] == ["the first 200 test images", "8.10 ± 0.20", "3.00"]
    assert cells["uniform noise"] == ["200 images of uniform noise (seed 0)", "1.02 ± 0.01", "250.00"]
