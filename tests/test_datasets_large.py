"""E17-E19 manual downloads: each real on-disk format is read, checked (layout, counts, checksums) and converted."""
from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from ebm_repro import datasets_large as DL
from tests import large_standins as S


def test_missing_folder_is_a_status_naming_what_to_download_and_where(tmp_path):
    s = DL.check("imagenet32", tmp_path / "nope", {"train": 1, "test": 1})
    assert s["status"] == "missing"
    assert "Imagenet32_train.zip" in s["message"] and str(tmp_path / "nope") in s["message"]
    assert "every other target runs" in s["message"]


def test_imagenet32_pickles_convert_to_nhwc_with_zero_based_labels(tmp_path):
    raw = S.imagenet32(tmp_path / "raw", per_batch=3, n_val=4)
    s = DL.check("imagenet32", tmp_path / "raw", {"train": 30, "test": 4})
    assert s["status"] == "present" and s["counts"] == {"train": 30, "test": 4}
    assert len(s["manifest"].splitlines()) == 11  # 10 train batches + val_data
    info = DL.prepare("imagenet32", tmp_path / "raw", tmp_path / "out", s)
    with np.load(tmp_path / "out/train.npz") as z:
        x, y = z["images"], z["labels"]
    assert x.shape == (30, 32, 32, 3) and x.dtype == np.uint8 and y.dtype == np.int64
    d = raw["train_data_batch_1"]
    # pixel (row 0, col 1) of image 0: R at data[1], G at data[1024 + 1], B at data[2048 + 1]
    assert tuple(x[0, 0, 1]) == (d["data"][0, 1], d["data"][0, 1025], d["data"][0, 2049])
    assert y[0] == d["labels"][0] - 1 and info["source"]["n_test"] == 4


def test_imagenet32_batch_with_code_inside_is_refused(tmp_path):
    S.imagenet32(tmp_path)
    (tmp_path / "val_data").write_bytes(pickle.dumps({"data": print}))  # a global other than numpy arrays
    with pytest.raises(DL.LargeDatasetError, match="refusing to load global"):
        DL.read_imagenet_batch(tmp_path / "val_data")


def test_wrong_counts_stop_with_the_counts_and_the_fix(tmp_path):
    S.imagenet32(tmp_path)
    with pytest.raises(DL.LargeDatasetError, match="incomplete, or set the counts"):
        DL.check("imagenet32", tmp_path, {"train": 1281167, "test": 50000})


def test_sha256sums_in_the_folder_is_verified(tmp_path):
    S.imagenet32(tmp_path)
    good = DL.check("imagenet32", tmp_path, {"train": 30, "test": 4})["manifest"]
    (tmp_path / "SHA256SUMS").write_text(good)
    assert DL.check("imagenet32", tmp_path, {"train": 30, "test": 4})["status"] == "present"
    (tmp_path / "SHA256SUMS").write_text(good.replace(good[:8], "00000000", 1))
    with pytest.raises(DL.LargeDatasetError, match="differs from"):
        DL.check("imagenet32", tmp_path, {"train": 30, "test": 4})


def test_celebahq_jpegs_resize_to_128_with_attributes_and_a_held_out_tail(tmp_path):
    attrs = S.celebahq(tmp_path / "raw", n=6)
    s = DL.check("celebahq128", tmp_path / "raw", {"images": 6})
    assert s["counts"] == {"images": 6} and len(s["manifest"].splitlines()) == 7
    DL.prepare("celebahq128", tmp_path / "raw", tmp_path / "out", s, n_test=2)
    with np.load(tmp_path / "out/train.npz") as tr, np.load(tmp_path / "out/test.npz") as te:
        assert tr["images"].shape == (4, 128, 128, 3) and te["images"].shape == (2, 128, 128, 3)
        names = list(tr["attribute_names"])
        assert names == S.CELEBA_NAMES and (te["attributes"] == (attrs[4:] > 0)).all()
    DL.prepare_attribute(tmp_path / "out", tmp_path / "female", "female")
    with np.load(tmp_path / "female/train.npz") as z:  # female = the Male column at -1
        assert (z["labels"] == (attrs[:4, names.index("Male")] < 0)).all() and z["labels"].dtype == np.int64


def test_celebahq_missing_image_is_named(tmp_path):
    S.celebahq(tmp_path, n=4)
    (tmp_path / "CelebA-HQ-img/2.jpg").unlink()
    with pytest.raises(DL.LargeDatasetError, match="1 of them are missing"):
        DL.check("celebahq128", tmp_path, {"images": 4})


def test_lsun_lmdb_of_webp_images_converts_with_a_training_cap(tmp_path):
    S.lsun(tmp_path / "raw", n_train=5, n_val=2)
    s = DL.check("lsun_bedroom128", tmp_path / "raw", {"train": 5, "test": 2})
    info = DL.prepare("lsun_bedroom128", tmp_path / "raw", tmp_path / "out", s, max_train=3)
    with np.load(tmp_path / "out/train.npz") as z:
        assert z["images"].shape == (3, 128, 128, 3)
    assert info["source"]["n_test"] == 2 and json.loads((tmp_path / "out/checksums.json").read_text())["train.npz"]


def test_verbs_check_prepare_and_label_by_attribute_from_the_command_line(tmp_path, monkeypatch):
    """The three verbs the rules call, on a CelebA-HQ stand-in at the smoke setting's path."""
    import yaml

    from ebm_repro import cli
    from ebm_repro.config import PARAMS_PATH

    monkeypatch.chdir(tmp_path)
    params = yaml.safe_load(PARAMS_PATH.read_text())
    params["large_data"]["celebahq128"].update(n_train=6, n_test=2)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    S.celebahq(tmp_path / "smoke/data/raw/CelebAMask-HQ", n=6)
    common = ["--setting", "smoke"]
    cli.main(["check-large-dataset", *common, "--name", "celebahq128", "--out", "st.json", "--manifest", "m.sha256"])
    assert json.loads((tmp_path / "st.json").read_text())["counts"] == {"images": 6}
    assert len((tmp_path / "m.sha256").read_text().splitlines()) == 7
    cli.main(["prepare-large-dataset", *common, "--name", "celebahq128", "--status", "st.json", "--out", "c"])
    cli.main(["prepare-attribute-dataset", *common, "--attribute", "wavy", "--data", "c", "--out", "w"])
    with np.load(tmp_path / "w/train.npz") as z:
        assert z["images"].shape == (4, 128, 128, 3) and set(np.unique(z["labels"])) <= {0, 1}
