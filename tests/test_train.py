"""Trainer switches for paper-vs-code discrepancies: multiscale loss reduction, L_ent bank augmentation."""
from __future__ import annotations

from pathlib import Path

import pytest

from ebm_repro import config as C
from ebm_repro.data import prepare_dataset
from ebm_repro.train import Trainer

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("data")
    prepare_dataset("shapes", d, seed=0, n_train=64, n_test=16)
    return d


def icd_config(**loss) -> C.RunConfig:
    """The ICD recipe (multiscale, L_KL, augmentation) at width 8 with a tiny buffer, smoke setting."""
    p = C.load_params(ROOT / "params.yaml")
    p["settings"]["smoke"]["overrides"] = {
        "model": {"width": 8}, "sampler": {"n_steps": 2}, "buffer": {"size": 16},
        "loss": {"kl_opt_chains": 4, "ent_min_buffer": 4, "ent_n_neighbours": 4, **loss},
        "train": {"batch_size": 8, "n_iters": 4, "snapshot_every": 1, "n_snapshots": 2, "eval_n_samples": 8},
    }
    return C.resolve(p, "icd", setting="smoke", validated=False)


def test_code_preset_averages_the_scale_energies_and_paper_text_sums_them(tmp_path, data_dir):
    # Same seed, same data, same Langevin chains (the sampler follows the summed energy either way): the CD
    # term of the summed (paper) loss is exactly 3x the per-scale mean (code) with three scales.
    rows = {}
    for reduce in ("mean", "sum"):
        t = Trainer(icd_config(multiscale_reduce=reduce, kl_opt_coeff=0.0, kl_ent_coeff=0.0, l2_coeff=0.0),
                    data_dir, tmp_path / reduce, device="cpu")
        assert len(t.model.scales) == 3
        rows[reduce] = t.train_step()
    assert rows["sum"]["loss_main"] == pytest.approx(3 * rows["mean"]["loss_main"], rel=1e-4, abs=1e-6)
    assert rows["mean"]["loss_main"] != pytest.approx(rows["sum"]["loss_main"], rel=1e-3)


def test_ml_loss_with_per_scale_mean_is_refused_naming_the_fix():
    with pytest.raises(C.ConfigError, match="multiscale_reduce: sum"):
        icd_config(kind="ml", multiscale_reduce="mean")  # validated with every variant before anything runs


@pytest.mark.parametrize("bank_augment, calls_per_step", [(True, 2), (False, 1)])
def test_entropy_bank_is_augmented_only_when_configured(tmp_path, data_dir, bank_augment, calls_per_step):
    t = Trainer(icd_config(ent_bank_augment=bank_augment), data_dir, tmp_path, device="cpu")
    t.train_step()  # fills the buffer past ent_min_buffer, so L_ent is active from the next step on
    calls = []
    augment = t.augment
    t.augment = lambda x: (calls.append(x.shape[0]), augment(x))[1]
    row = t.train_step()
    assert "loss_ent" in row
    assert len(calls) == calls_per_step  # the chains' start (batch) and, for the code, the bank
    assert calls[0] == 8 and (calls_per_step == 1 or calls[1] == 4)
