"""Datasets: CIFAR-10 archive handling on a tiny fake in the real format, the shapes generator, ImageDataset."""
import hashlib
import http.client
import io
import json
import pickle
import tarfile
import urllib.error
import urllib.request

import numpy as np
import pytest
import torch

from ebm_repro import data as D
from ebm_repro.data import DATASETS, DatasetError, ImageDataset, load_split, prepare_dataset

CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"


def _batch_bytes(rows: np.ndarray, labels: list[int], name: bytes) -> bytes:
    """One CIFAR python batch: a pickled dict with bytes keys (as Python 2 wrote them), rows (n, 3072) uint8."""
    d = {b"batch_label": name, b"labels": labels, b"data": rows,
         b"filenames": [b"img_%d.png" % i for i in range(len(labels))]}
    return pickle.dumps(d, protocol=2)


def _make_fake_cifar(path, n: int = 3, seed: int = 0):
    """Write a cifar-10-python.tar.gz with n images per batch; return train rows, labels, test rows, labels."""
    rng = np.random.default_rng(seed)
    members, rows_all, labels_all = {}, [], []
    for i in range(1, 6):
        rows, labels = rng.integers(0, 256, (n, 3072), dtype=np.uint8), rng.integers(0, 10, n).tolist()
        members[f"data_batch_{i}"] = _batch_bytes(rows, labels, b"training batch %d of 5" % i)
        rows_all.append(rows)
        labels_all += labels
    test_rows, test_labels = rng.integers(0, 256, (n, 3072), dtype=np.uint8), rng.integers(0, 10, n).tolist()
    members["test_batch"] = _batch_bytes(test_rows, test_labels, b"testing batch 1 of 1")
    members["batches.meta"] = pickle.dumps({b"label_names": [c.encode() for c in D.CIFAR10_CLASSES]}, protocol=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return np.concatenate(rows_all), np.array(labels_all), test_rows, np.array(test_labels)


def _md5(path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _no_network(monkeypatch):
    def refuse(*a, **k):
        raise urllib.error.URLError("network is unreachable")
    monkeypatch.setattr(urllib.request, "urlopen", refuse)


def test_cifar_spec_is_the_official_archive():
    spec = DATASETS["cifar10"]
    assert (spec["url"], spec["md5"], spec["filename"]) == (
        CIFAR_URL, "c58f30108f718f92721af3b95e74349a", "cifar-10-python.tar.gz")


def test_fake_cifar_archive_converts_to_nhwc(tmp_path, monkeypatch):
    archive = tmp_path / "raw" / "cifar-10-python.tar.gz"
    tr_rows, tr_labels, te_rows, te_labels = _make_fake_cifar(archive)
    monkeypatch.setitem(DATASETS["cifar10"], "md5", _md5(archive))
    _no_network(monkeypatch)  # a present archive must be reused, never downloaded again
    info = prepare_dataset("cifar10", tmp_path)
    x, y = load_split(tmp_path / "train.npz")
    assert x.dtype == np.uint8 and x.shape == (15, 32, 32, 3) and y.dtype == np.int64
    np.testing.assert_array_equal(y, tr_labels)
    # Row layout: 1024 red, 1024 green, 1024 blue values, each row-major over (y, x).
    for c, (i, r, col) in enumerate([(0, 0, 0), (7, 5, 31), (14, 31, 2)]):
        assert x[i, r, col, c] == tr_rows[i, c * 1024 + r * 32 + col]
    np.testing.assert_array_equal(x, tr_rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    xt, yt = load_split(tmp_path / "test.npz")
    np.testing.assert_array_equal(xt, te_rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    np.testing.assert_array_equal(yt, te_labels)
    assert info["train.npz"] == hashlib.sha256((tmp_path / "train.npz").read_bytes()).hexdigest()
    assert json.loads((tmp_path / "checksums.json").read_text()) == info
    assert info["source"]["md5"] == _md5(archive) and info["source"]["n_test"] == 3
    assert prepare_dataset("cifar10", tmp_path) == info  # byte-identical rewrite: checksums are reproducible


def test_cifar_download_goes_through_urlopen(tmp_path, monkeypatch):
    fake = tmp_path / "elsewhere.tar.gz"
    _make_fake_cifar(fake, n=2)
    monkeypatch.setitem(DATASETS["cifar10"], "md5", _md5(fake))
    asked = []

    def serve(url, timeout=None):
        asked.append(url)
        return io.BytesIO(fake.read_bytes())
    monkeypatch.setattr(urllib.request, "urlopen", serve)
    out = tmp_path / "out"
    prepare_dataset("cifar10", out)
    assert asked == [CIFAR_URL]
    assert (out / "raw" / "cifar-10-python.tar.gz").read_bytes() == fake.read_bytes()
    assert load_split(out / "train.npz")[0].shape == (10, 32, 32, 3)
    assert sorted(p.name for p in (out / "raw").iterdir()) == ["cifar-10-python.tar.gz"]  # no temp left


@pytest.mark.parametrize("damage", ["corrupt", "truncated"])
def test_bad_archive_fails_on_md5_before_extracting(tmp_path, monkeypatch, damage):
    archive = tmp_path / "raw" / "cifar-10-python.tar.gz"
    _make_fake_cifar(archive)
    monkeypatch.setitem(DATASETS["cifar10"], "md5", _md5(archive))
    blob = archive.read_bytes()
    if damage == "corrupt":
        archive.write_bytes(blob[:100] + bytes(b ^ 0xFF for b in blob[100:200]) + blob[200:])
    else:
        archive.write_bytes(blob[: len(blob) // 2])
    monkeypatch.setattr(tarfile, "open", lambda *a, **k: pytest.fail("extracted an unverified archive"))
    with pytest.raises(DatasetError) as e:
        prepare_dataset("cifar10", tmp_path)
    msg = str(e.value)
    assert str(archive.resolve()) in msg and _md5(archive) in msg and DATASETS["cifar10"]["md5"] in msg
    assert "delete" in msg and CIFAR_URL in msg
    assert not (tmp_path / "train.npz").exists() and not (tmp_path / "checksums.json").exists()


class _CutTransfer(io.BytesIO):
    """A response whose connection drops after the first block."""

    def read(self, n=-1):
        if self.tell():
            raise http.client.IncompleteRead(b"", 1000)
        return super().read(n)


@pytest.mark.parametrize("failure", ["offline", "cut"])
def test_failed_download_names_url_and_manual_path(tmp_path, monkeypatch, failure):
    if failure == "offline":
        _no_network(monkeypatch)
    else:
        monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout=None: _CutTransfer(b"x" * (3 << 20)))
    with pytest.raises(DatasetError) as e:
        prepare_dataset("cifar10", tmp_path)
    target = (tmp_path / "raw" / "cifar-10-python.tar.gz").resolve()
    assert CIFAR_URL in str(e.value) and str(target) in str(e.value)
    assert list((tmp_path / "raw").iterdir()) == []  # the partial download was removed
    assert not (tmp_path / "train.npz").exists()


def test_interrupted_write_leaves_no_half_file(tmp_path, monkeypatch):
    def crash(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(np.lib.format, "write_array", crash)
    with pytest.raises(KeyboardInterrupt):
        prepare_dataset("shapes", tmp_path, n_train=20, n_test=10)
    assert list(tmp_path.iterdir()) == []


def test_shapes_deterministic_balanced_and_split_independent(tmp_path):
    a = prepare_dataset("shapes", tmp_path / "a", seed=3, n_train=200, n_test=50)
    b = prepare_dataset("shapes", tmp_path / "b", seed=3, n_train=200, n_test=50)
    c = prepare_dataset("shapes", tmp_path / "c", seed=4, n_train=200, n_test=50)
    d = prepare_dataset("shapes", tmp_path / "d", seed=3, n_train=100, n_test=50)
    assert a == b
    assert a["train.npz"] != c["train.npz"] and a["test.npz"] != c["test.npz"]
    assert d["test.npz"] == a["test.npz"]  # the test split does not depend on n_train
    x, y = load_split(tmp_path / "a" / "train.npz")
    assert x.shape == (200, 32, 32, 3) and x.dtype == np.uint8 and y.dtype == np.int64
    assert np.bincount(y, minlength=10).tolist() == [20] * 10
    assert a["source"]["classes"] == list(D.SHAPE_CLASSES) and a["source"]["seed"] == 3


def test_shape_classes_are_distinct():
    yy, xx = np.mgrid[0:32, 0:32] + 0.5
    masks = [D._shape_mask(k, xx - 16, yy - 16, 10.0, 3) for k in range(10)]  # same centre, size, period
    assert all(m.sum() >= 20 for m in masks)  # every class draws a visible shape
    for i in range(10):
        for j in range(i + 1, 10):
            iou = (masks[i] & masks[j]).sum() / (masks[i] | masks[j]).sum()
            assert iou < 0.8, (D.SHAPE_CLASSES[i], D.SHAPE_CLASSES[j], iou)


def test_shapes_default_sizes(monkeypatch):
    calls = []
    monkeypatch.setattr(D, "make_shapes", lambda n, rng: calls.append(n) or (
        np.zeros((n, 32, 32, 3), np.uint8), np.zeros(n, np.int64)))
    D._shapes(0, None, None)
    assert calls == [5000, 1000]


def test_load_split_errors_name_file_and_fix(tmp_path):
    with pytest.raises(DatasetError, match="does not exist.*prepare_dataset rule"):
        load_split(tmp_path / "train.npz")
    (tmp_path / "train.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DatasetError, match="corrupt.*delete it"):
        load_split(tmp_path / "train.npz")


def test_image_dataset_dequantisation(tmp_path):
    prepare_dataset("shapes", tmp_path, n_train=30, n_test=10)
    k = torch.from_numpy(load_split(tmp_path / "train.npz")[0]).permute(0, 3, 1, 2).float()  # (N, 3, 32, 32)
    plain, deq = ImageDataset(tmp_path / "train.npz"), ImageDataset(tmp_path / "train.npz", dequantize=True)
    x, label = plain[5]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and isinstance(label, int)
    assert torch.equal(x, k[5] / 255)
    xs = torch.stack([deq[i][0] for i in range(len(deq))])
    assert xs.min() >= 0 and xs.max() < 1
    assert torch.equal(torch.floor(xs * 256), k)  # (k + u) / 256 stays inside bin k
    u = xs * 256 - k
    assert 0.45 < u.mean() < 0.55 and u.std() > 0.25  # U(0, 1): mean 1/2, std 0.289
    assert not torch.equal(deq[0][0], deq[0][0])  # fresh noise on every access


# ---------------------------------------------------------------- MNIST (ICD App. D.1) and its smoke stand-in
def _idx(arr: np.ndarray) -> bytes:
    """LeCun's idx format written independently of the reader: 0, 0, type 0x08, ndim, big-endian sizes, bytes."""
    return bytes([0, 0, 0x08, arr.ndim]) + np.asarray(arr.shape, ">u4").tobytes() + arr.astype(np.uint8).tobytes()


def _make_fake_mnist(raw_dir, n_train: int = 12, n_test: int = 5, seed: int = 0) -> dict:
    """Write the four gzipped idx files under their real names; return arrays and their md5s."""
    import gzip
    rng = np.random.default_rng(seed)
    arrays = {"train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
              "train_labels": rng.integers(0, 10, n_train).astype(np.uint8),
              "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
              "test_labels": rng.integers(0, 10, n_test).astype(np.uint8)}
    raw_dir.mkdir(parents=True, exist_ok=True)
    md5s = {}
    for key, (name, _) in DATASETS["mnist"]["files"].items():
        (raw_dir / name).write_bytes(gzip.compress(_idx(arrays[key]), mtime=0))
        md5s[key] = (name, _md5(raw_dir / name))
    return {"arrays": arrays, "files": md5s}


def test_mnist_spec_matches_installed_torchvision():
    from torchvision.datasets import MNIST
    assert dict(DATASETS["mnist"]["files"].values()) == dict(MNIST.resources)
    assert list(DATASETS["mnist"]["mirrors"]) == list(MNIST.mirrors)


def test_fake_mnist_archives_convert_to_nhwc_gray(tmp_path, monkeypatch):
    fake = _make_fake_mnist(tmp_path / "raw")
    monkeypatch.setitem(DATASETS["mnist"], "files", fake["files"])
    _no_network(monkeypatch)  # the files are present: nothing is downloaded
    info = prepare_dataset("mnist", tmp_path)
    x, y = load_split(tmp_path / "train.npz")
    assert x.shape == (12, 28, 28, 1) and x.dtype == np.uint8 and y.dtype == np.int64
    np.testing.assert_array_equal(x[..., 0], fake["arrays"]["train_images"])
    np.testing.assert_array_equal(y, fake["arrays"]["train_labels"])
    assert load_split(tmp_path / "test.npz")[0].shape == (5, 28, 28, 1)
    assert info["source"]["n_train"] == 12 and set(info) == {"train.npz", "test.npz", "source"}


def test_mnist_download_falls_back_to_the_next_mirror(tmp_path, monkeypatch):
    fake = _make_fake_mnist(tmp_path / "src")
    monkeypatch.setitem(DATASETS["mnist"], "files", fake["files"])
    tried = []

    def urlopen(url, timeout=None):
        tried.append(url)
        if url.startswith(DATASETS["mnist"]["mirrors"][0]):
            raise urllib.error.URLError("mirror down")
        return io.BytesIO((tmp_path / "src" / url.rsplit("/", 1)[1]).read_bytes())
    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    prepare_dataset("mnist", tmp_path / "out")
    assert len(tried) == 8 and load_split(tmp_path / "out" / "train.npz")[0].shape == (12, 28, 28, 1)


def test_mnist_bad_md5_and_bad_idx_are_refused(tmp_path, monkeypatch):
    fake = _make_fake_mnist(tmp_path / "raw")
    files = dict(fake["files"], train_labels=(fake["files"]["train_labels"][0], "0" * 32))
    monkeypatch.setitem(DATASETS["mnist"], "files", files)
    with pytest.raises(DatasetError, match="md5"):
        prepare_dataset("mnist", tmp_path)
    with pytest.raises(DatasetError, match="not an idx file"):
        D.read_idx(b"\x00\x00\x0d\x01" + b"\x00" * 8, "x")  # type 0x0d = float, not MNIST's bytes
    good = _idx(np.zeros((2, 3), np.uint8))
    with pytest.raises(DatasetError, match="header says"):
        D.read_idx(good[:-1], "x")  # one byte short


def test_gray_shapes_stand_in_is_mnist_shaped_balanced_and_deterministic(tmp_path):
    a = prepare_dataset("shapes_gray28", tmp_path / "a", n_train=100, n_test=20)
    b = prepare_dataset("shapes_gray28", tmp_path / "b", n_train=100, n_test=20)
    assert a == b
    x, y = load_split(tmp_path / "a" / "train.npz")
    assert x.shape == (100, 28, 28, 1) and np.bincount(y).tolist() == [10] * 10
    assert x.mean() < 128  # light shapes on a dark background, like MNIST digits
