"""E6 OOD detection: AUROC against hand counts, the sets, the energies, the OOD downloads and stand-ins, the report."""
from __future__ import annotations

import hashlib
import io
import itertools
import json
import pickle
import tarfile
import urllib.error
import urllib.request

import numpy as np
import pytest
import torch
from PIL import Image

from ebm_repro import claims as CL
from ebm_repro import datasets_ood as O
from ebm_repro.cli import main
from ebm_repro.data import DatasetError, load_split
from ebm_repro.energies import image_energies
from ebm_repro.experiments import ood
from tests.experiments.energy_helpers import VARIANTS, shapes_data, tiny_params, write_model


def hand_auroc(s_in, s_out) -> float:
    """Count every (in, out) pair: 1 when the in-distribution score is higher, 1/2 on a tie."""
    pairs = list(itertools.product(s_in, s_out))
    return sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in pairs) / len(pairs)


# ----------------------------------------------------------------------------- AUROC
def test_auroc_of_separable_sets_is_one_and_of_identical_sets_one_half():
    s_in, s_out = np.array([0.5, 0.9, 2.0]), np.array([-1.0, 0.1, 0.4, 0.45])
    assert hand_auroc(s_in, s_out) == 1.0 and ood.auroc(s_in, s_out) == 1.0
    assert ood.auroc(s_out, s_in) == 0.0                 # the OOD set scored higher everywhere
    same = np.array([0.3, -0.2, 0.7, 0.7, 1.1])
    assert hand_auroc(same, same) == 0.5 and ood.auroc(same, same) == 0.5


def test_auroc_with_ties_matches_a_small_hand_count():
    # pairs (3,2) (3,1) (2,2) (2,1) (2,2) (2,1) -> 1 + 1 + 1/2 + 1 + 1/2 + 1 = 5 of 6
    assert ood.auroc([3.0, 2.0, 2.0], [2.0, 1.0]) == pytest.approx(5 / 6)
    # one tie among 2 x 2 pairs: (1,0) (1,1) (0,0) (0,1) -> 1 + 1/2 + 1/2 + 0 = 2 of 4
    assert ood.auroc([1.0, 0.0], [0.0, 1.0]) == pytest.approx(0.5)


def test_auroc_matches_the_pair_count_on_random_scores_with_many_ties():
    rng = np.random.default_rng(3)
    for _ in range(5):
        s_in, s_out = rng.integers(0, 5, 23).astype(float), rng.integers(0, 6, 17).astype(float)
        assert ood.auroc(s_in, s_out) == pytest.approx(hand_auroc(s_in, s_out), abs=1e-12)


def test_auroc_refuses_empty_or_non_finite_scores():
    with pytest.raises(ValueError, match="non-empty"):
        ood.auroc([], [1.0])
    with pytest.raises(ValueError, match="non-finite"):
        ood.auroc([1.0, np.nan], [0.0])


# ----------------------------------------------------------------------------- sets
def test_sets_built_on_the_fly(tmp_path):
    rng = np.random.default_rng(0)
    in_images = rng.integers(0, 256, (9, 32, 32, 3), dtype=np.uint8)
    const = ood.build_set("constant", 50, in_images, {}, seed=0)
    assert const.shape == (50, 32, 32, 3) and const.dtype == np.float32
    assert np.all(const == const[:, :1, :1, :])               # one colour per image
    assert 0 <= const.min() and const.max() < 1 and len(np.unique(const[:, 0, 0, 0])) == 50
    uni = ood.build_set("uniform", 50, in_images, {}, seed=0)
    assert 0 <= uni.min() and uni.max() < 1 and abs(uni.mean() - 0.5) < 0.01
    assert len(np.unique(uni[0])) > 3000                      # every pixel and channel its own draw
    inter = ood.build_set("interpolation", 9, in_images, {}, seed=0)
    flat = in_images.reshape(9, -1).astype(np.float32)
    pair_means = {(i, j): (flat[i] + flat[j]) / 510 for i in range(9) for j in range(9)}
    for x in inter.reshape(9, -1):                            # each is the mean of two DIFFERENT test images
        hits = [ij for ij, m in pair_means.items() if np.allclose(x, m)]
        assert hits and all(i != j for i, j in hits)
    np.testing.assert_array_equal(ood.build_set("uniform", 50, in_images, {}, seed=0), uni)  # deterministic
    assert not np.array_equal(ood.build_set("uniform", 50, in_images, {}, seed=1), uni)


def test_downloaded_set_is_subsampled_to_n_or_kept_whole(tmp_path):
    O.prepare_ood_set("digits", tmp_path / "digits", n=30)
    files = {"svhn": tmp_path / "digits" / "test.npz"}
    in_images = np.zeros((4, 32, 32, 3), np.uint8)
    all_, _ = load_split(files["svhn"])
    assert len(ood.build_set("svhn", 100, in_images, files, 0)) == 30                 # fewer than n: all
    part = ood.build_set("svhn", 7, in_images, files, 0)
    assert len(part) == 7 and len({x.tobytes() for x in part}) == 7                   # without replacement
    assert all(any(np.array_equal(x, a / np.float32(255)) for a in all_) for x in part)
    with pytest.raises(ValueError, match="--set-files"):
        ood.build_set("cifar100", 7, in_images, files, 0)


# ----------------------------------------------------------------------------- energies
class QuadraticEnergy(torch.nn.Module):
    """E(x, y) = (mean(x) - y / 10)^2 (conditional, 10 classes) or mean(x) (unconditional): closed forms."""

    def __init__(self, n_classes):
        super().__init__()
        self.cfg = type("Cfg", (), {"n_classes": n_classes})()
        self.calls = 0

    def forward(self, x, y):
        self.calls += 1
        m = x.mean(dim=(1, 2, 3))
        return m if y is None else (m - y.float() / 10) ** 2


def test_conditional_energy_is_the_min_over_classes_and_batching_changes_nothing():
    x = np.random.default_rng(0).random((7, 32, 32, 3), dtype=np.float32)
    m = x.reshape(7, -1).mean(1).astype(np.float64)
    e = image_energies(QuadraticEnergy(10), x, None, batch_size=3)
    np.testing.assert_allclose(e, (m - np.round(m * 10) / 10) ** 2, atol=1e-7)    # nearest class wins
    y = np.arange(7)
    np.testing.assert_allclose(image_energies(QuadraticEnergy(10), x, y, batch_size=3), (m - y / 10) ** 2, atol=1e-7)
    np.testing.assert_allclose(image_energies(QuadraticEnergy(0), x, None, batch_size=2), m, atol=1e-7)
    np.testing.assert_array_equal(image_energies(QuadraticEnergy(0), x, None, batch_size=7),
                                  image_energies(QuadraticEnergy(0), x, None, batch_size=2))
    with pytest.raises(ValueError, match="labels"):
        image_energies(QuadraticEnergy(0), x, y)


# ----------------------------------------------------------------------------- OOD downloads
def _md5(path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _no_network(monkeypatch):
    def refuse(*a, **k):
        raise urllib.error.URLError("network is unreachable")
    monkeypatch.setattr(urllib.request, "urlopen", refuse)


def _svhn_mat(path, n=5, seed=0):
    import scipy.io

    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)        # SVHN's layout: (H, W, C, N)
    y = np.array([[10], [1], [9], [10], [5]][:n], dtype=np.uint8)    # 10 = digit 0
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(path, {"X": x, "y": y})
    return x, y


def test_svhn_test_mat_converts_to_nhwc_with_digit_zero_as_label_zero(tmp_path, monkeypatch):
    x, _ = _svhn_mat(tmp_path / "svhn" / "raw" / "test_32x32.mat")
    monkeypatch.setitem(O.OOD_DATASETS["svhn"], "md5", _md5(tmp_path / "svhn" / "raw" / "test_32x32.mat"))
    _no_network(monkeypatch)  # present and verified: never downloaded again
    info = O.prepare_ood_set("svhn", tmp_path / "svhn")
    images, labels = load_split(tmp_path / "svhn" / "test.npz")
    assert images.shape == (5, 32, 32, 3) and labels.tolist() == [0, 1, 9, 0, 5]
    for i in range(5):
        np.testing.assert_array_equal(images[i], x[:, :, :, i])
    assert info["source"]["archive"] == "test_32x32.mat" and info["source"]["n_test"] == 5


def test_ood_specs_are_torchvisions_files_and_md5s():
    from torchvision.datasets import CIFAR100, DTD, SVHN

    assert SVHN.split_list["test"] == [O.OOD_DATASETS["svhn"][k] for k in ("url", "filename", "md5")]
    assert (DTD._URL, DTD._MD5) == (O.OOD_DATASETS["dtd"]["url"], O.OOD_DATASETS["dtd"]["md5"])
    assert (CIFAR100.url, CIFAR100.filename, CIFAR100.tgz_md5) == tuple(
        O.OOD_DATASETS["cifar100"][k] for k in ("url", "filename", "md5"))
    assert O.OOD_DATASETS["cifar100"]["member"] == f"{CIFAR100.base_folder}/{CIFAR100.test_list[0][0]}"


@pytest.mark.parametrize("name,filename", [("svhn", "test_32x32.mat"), ("dtd", "dtd-r1.0.1.tar.gz"),
                                           ("cifar100", "cifar-100-python.tar.gz")])
def test_checksum_mismatch_is_refused_and_offline_error_names_file_and_folder(tmp_path, name, filename,
                                                                             monkeypatch):
    _no_network(monkeypatch)
    with pytest.raises(DatasetError) as err:                      # offline, no file: says where to put it
        O.prepare_ood_set(name, tmp_path / name)
    assert str((tmp_path / name / "raw" / filename).resolve()) in str(err.value)
    assert O.OOD_DATASETS[name]["url"] in str(err.value)
    raw = tmp_path / name / "raw" / filename
    raw.write_bytes(b"not the official file")
    with pytest.raises(DatasetError, match="md5"):
        O.prepare_ood_set(name, tmp_path / name)
    assert not (tmp_path / name / "test.npz").exists()


def _jpeg(array) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def test_dtd_archive_gives_top_left_crops_of_every_image_with_class_labels(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    files = {}
    for cls, name in (("zigzagged", "zigzagged_0001.jpg"), ("banded", "banded_0002.jpg"),
                      ("banded", "banded_0001.jpg")):
        a = np.zeros((48, 60, 3), np.uint8)
        a[:32, :32] = rng.integers(0, 256, 3)           # the top-left 32x32 block has its own flat colour
        a[32:, :] = 255 - a[0, 0]
        a[:, 32:] = 255 - a[0, 0]
        files[f"dtd/images/{cls}/{name}"] = _jpeg(a)
    files["dtd/labels/train1.txt"] = b"banded/banded_0001.jpg\n"        # not an image: skipped
    archive = tmp_path / "dtd" / "raw" / "dtd-r1.0.1.tar.gz"
    archive.parent.mkdir(parents=True)
    with tarfile.open(archive, "w:gz") as tar:
        for name, payload in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    monkeypatch.setitem(O.OOD_DATASETS["dtd"], "md5", _md5(archive))
    _no_network(monkeypatch)
    info = O.prepare_ood_set("dtd", tmp_path / "dtd")
    images, labels = load_split(tmp_path / "dtd" / "test.npz")
    names = sorted(k for k in files if k.endswith(".jpg"))             # file-name order
    assert images.shape == (3, 32, 32, 3) and labels.tolist() == [0, 0, 1]
    assert info["source"]["classes"] == ["banded", "zigzagged"]
    for img, name in zip(images, names):
        decoded = np.asarray(Image.open(io.BytesIO(files[name])).convert("RGB"))
        np.testing.assert_array_equal(img, decoded[:32, :32])          # the crop, not a resize
        assert np.abs(img[4:28, 4:28].astype(int) - decoded[2, 2].astype(int)).max() <= 12  # a flat block


def test_cifar100_test_batch_uses_fine_labels(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    rows, fine = rng.integers(0, 256, (4, 3072), dtype=np.uint8), [99, 0, 57, 3]
    payload = pickle.dumps({b"data": rows, b"fine_labels": fine, b"coarse_labels": [19, 4, 2, 3]}, protocol=2)
    archive = tmp_path / "c100" / "raw" / "cifar-100-python.tar.gz"
    archive.parent.mkdir(parents=True)
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("cifar-100-python/test")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    monkeypatch.setitem(O.OOD_DATASETS["cifar100"], "md5", _md5(archive))
    _no_network(monkeypatch)
    O.prepare_ood_set("cifar100", tmp_path / "c100")
    images, labels = load_split(tmp_path / "c100" / "test.npz")
    assert labels.tolist() == fine
    np.testing.assert_array_equal(images, rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))


def test_stand_ins_are_deterministic_32x32_sets_with_their_classes(tmp_path):
    for name, n_classes in (("digits", 10), ("noise_textures", 8), ("shapes100", 100)):
        a = O.prepare_ood_set(name, tmp_path / "a" / name, n=200)
        b = O.prepare_ood_set(name, tmp_path / "b" / name, n=200)
        assert a["test.npz"] == b["test.npz"]                     # same seed, same bytes
        images, labels = load_split(tmp_path / "a" / name / "test.npz")
        assert images.shape == (200, 32, 32, 3) and set(labels.tolist()) <= set(range(n_classes))
        assert len(set(labels.tolist())) == min(n_classes, 200) and images.std() > 20
    assert O.data_name("svhn", "smoke") == "digits" and O.data_name("svhn", "paper") == "svhn"


# ----------------------------------------------------------------------------- end to end + claims
def test_score_and_report_ood_end_to_end_and_claims(tmp_path):
    params, ppath = tiny_params(tmp_path)
    data = shapes_data(tmp_path / "data")
    set_files = []
    for key, src in (("svhn", "svhn"), ("textures", "dtd"), ("cifar100", "cifar100")):
        name = O.data_name(src, "smoke")
        O.prepare_ood_set(name, tmp_path / "data" / name, n=20)
        set_files.append(f"{key}={tmp_path / 'data' / name / 'test.npz'}")
    models = [str(write_model(tmp_path / "train", params, v, seed=i)) for i, v in enumerate(VARIANTS)]
    common = ["--params", str(ppath), "--setting", "smoke"]
    scores = tmp_path / "results" / "ood" / "scores.npz"
    main(["score-ood", *common, "--models", *models, "--in-test", str(data / "test.npz"),
          "--set-files", *set_files, "--out", str(scores)])
    table, fig = tmp_path / "results" / "tables" / "ood.md", tmp_path / "results" / "figures" / "ood_hist.png"
    auroc_json = tmp_path / "results" / "ood" / "auroc.json"
    main(["report-ood", *common, "--scores", str(scores), "--table", str(table), "--auroc", str(auroc_json),
          "--figure", str(fig)])
    z = np.load(scores)
    assert len(z["igebm_uncond/in"]) == 6 and len(z["icd/cifar100"]) == 6
    got = json.loads(auroc_json.read_text())["auroc"]
    md = table.read_text()
    for v in VARIANTS:
        for key in params["ood"]["sets"]:
            assert got[v][key] == pytest.approx(hand_auroc(z[f"{v}/in"], z[f"{v}/{key}"]))
        line = next(l for l in md.splitlines() if f"`{v}`" in l)
        assert f"{got[v]['svhn']:.3f}" in line and f"{got[v]['average']:.3f}" in line
        assert got[v]["average"] == pytest.approx(np.mean([got[v][k] for k in ood.TAB2_SETS]))
    assert "stand-in: digits" in md and "not comparable" in md and "test split" in md
    assert "| 0.63 " in md and "0.91" in md                    # IGEBM Tab. 2 / ICD Tab. 1 beside
    assert fig.stat().st_size > 10000 and fig.with_suffix(".pdf").exists()
    assert json.loads((table.parent / "ood.md.provenance.json").read_text())["setting"] == "smoke"
    cl = ood.claims(params, f"{tmp_path}/")
    assert len(cl) == 6 + 4 + 4                                # Tab. 2 (5 sets + average), Tab. 1 IGEBM, Tab. 1 ICD
    assert {c.verdict for c in cl} == {CL.SMOKE}
    svhn = next(c for c in cl if c.key == "improved_cd_2021/ood_table_1/SVHN/ICD")
    assert svhn.paper == 0.91 and svhn.reproduced == got["icd"]["svhn"] and svhn.place == "ICD Tab. 1"


def test_claims_judge_each_printed_auroc_within_its_tolerance(tmp_path, monkeypatch):
    from ebm_repro.params import load_params
    from tests.experiments.run_helpers import ROOT

    params = load_params(ROOT / "params.yaml")
    missing = ood.claims(params, f"{tmp_path}/")
    assert all(c.verdict.startswith("not run: no ") and c.reproduced is None for c in missing)
    vals = {"svhn": 0.655, "textures": 0.40, "constant": 0.30, "uniform": 1.0, "interpolation": 0.70,
            "cifar100": 0.5, "average": 0.611}
    out = tmp_path / "results" / "ood" / "auroc.json"
    out.parent.mkdir(parents=True)
    out.write_text(json.dumps({"setting": "paper", "auroc": {"igebm_uncond": vals, "igebm_cond": vals,
                                                             "icd": None}}))
    cl = {c.key: c for c in ood.claims(params, f"{tmp_path}/")}
    assert cl["igebm_2019/ood_table_2/EBM (IGEBM)/SVHN"].verdict == CL.REPRODUCED          # 0.655 vs 0.63
    assert cl["igebm_2019/ood_table_2/EBM (IGEBM)/Textures"].verdict == CL.NOT_REPRODUCED  # 0.40 vs 0.48
    assert cl["igebm_2019/ood_table_2/EBM (IGEBM)/Average"].verdict == CL.REPRODUCED       # 0.611 vs 0.62
    assert cl["improved_cd_2021/ood_table_1/CIFAR100/IGEBM"].verdict == CL.REPRODUCED     # 0.5 vs 0.50
    assert cl["improved_cd_2021/ood_table_1/SVHN/ICD"].verdict.startswith("not run: icd diverged")
