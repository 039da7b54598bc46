"""Datasets as uint8 NHWC .npz splits: CIFAR-10 and MNIST (md5-checked downloads) and procedural smoke stand-ins.

    python -m ebm_repro.data --dataset mnist --out data/mnist     # what the workflow's prepare_dataset rule runs
"""
from __future__ import annotations

import argparse
import gzip
import http.client
import json
import os
import pickle
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from ebm_repro.checkpoint import atomic_write, file_digest
from ebm_repro.config import DATASET_SHAPES


class DatasetError(RuntimeError):
    """A dataset file is missing, corrupt or cannot be fetched; the message says what to do."""


SHAPE_CLASSES = ("disc", "square", "triangle", "cross", "ring",
                 "hstripes", "vstripes", "diamond", "checkerboard", "x")

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")

DATASETS: dict[str, dict] = {
    "cifar10": {
        "kind": "download",
        "url": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "md5": "c58f30108f718f92721af3b95e74349a",
        "filename": "cifar-10-python.tar.gz",
        "train_members": tuple(f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6)),  # 50,000 images
        "test_members": ("cifar-10-batches-py/test_batch",),  # 10,000 images
        "classes": CIFAR10_CLASSES,
    },
    "shapes": {
        "kind": "generated",
        "generator": "ebm_repro.data.make_shapes",
        "version": 1,  # bump when the generator changes, so old checksums are not mistaken for new data
        "n_train": 5000,
        "n_test": 1000,
        "classes": SHAPE_CLASSES,
    },
    "mnist": {  # ICD App. D.1 (E15); files, mirrors and md5s as torchvision.datasets.MNIST lists them
        "kind": "download",
        "mirrors": ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
        "files": {"train_images": ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
                  "train_labels": ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
                  "test_images": ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
                  "test_labels": ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c")},
        "classes": tuple(str(d) for d in range(10)),
    },
    "shapes_gray28": {  # smoke stand-in for MNIST: the shapes classes, light on dark, 28x28x1
        "kind": "generated",
        "generator": "ebm_repro.data.make_gray_shapes",
        "version": 1,
        "n_train": 5000,
        "n_test": 1000,
        "classes": SHAPE_CLASSES,
    },
    # E11 (IGEBM §6): labels are dSprites grid indices; splits deflate-compressed (binary images, 3 GB raw)
    "dsprites": {"kind": "download", "module": "ebm_repro.datasets_dsprites", "compress": True},
    "dsprites_gen": {"kind": "generated", "module": "ebm_repro.datasets_dsprites", "compress": True,
                     "generator": "ebm_repro.datasets_dsprites.render", "version": 1, "n_train": 4000, "n_test": 1000},
}

IMAGE_SHAPE = DATASET_SHAPES["cifar10"]
_CHUNK = 1 << 20


def _write_npz(path: Path, images: np.ndarray, labels: np.ndarray, compress: bool = False) -> None:
    """Atomically write an .npz (uncompressed, or deflated when `compress`) with fixed zip timestamps."""
    write_arrays(path, {"images": images, "labels": labels}, compress)


def write_arrays(path: Path, arrays: dict[str, np.ndarray], compress: bool = False) -> None:
    """Atomically write named arrays as an .npz with fixed zip timestamps (np.load reads it); deflated if `compress`."""
    # np.savez stamps each member with the current time, so equal arrays would get different
    # sha256s; fixed ZipInfo dates make checksums.json reproducible across runs and machines.
    def write(f):
        with zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED,
                             allowZip64=True) as z:
            for key, arr in arrays.items():
                info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = z.compression
                with z.open(info, "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, np.ascontiguousarray(arr), allow_pickle=False)
    atomic_write(path, write)


def load_split(path) -> tuple[np.ndarray, np.ndarray]:
    """Read a split written by prepare_dataset: images uint8 (N, H, W, C) with C = 3 or 1, labels int64 (N,)."""
    path = Path(path)
    fix = "rerun the prepare_dataset rule (python -m ebm_repro.data; it rewrites the split)"
    if not path.is_file():
        raise DatasetError(f"dataset split {path} does not exist; {fix}")
    try:
        with np.load(path, allow_pickle=False) as z:
            images, labels = z["images"], z["labels"]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as err:
        raise DatasetError(f"dataset split {path} is unreadable or corrupt ({err!r}); delete it and {fix}") from err
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise DatasetError(f"{path}: images must be uint8 (N, H, W, 3 or 1), got {images.dtype} {images.shape}; "
                           f"delete it and {fix}")
    if labels.dtype != np.int64 or labels.shape != (len(images),):
        raise DatasetError(f"{path}: labels must be int64 ({len(images)},), got {labels.dtype} {labels.shape}; "
                           f"delete it and {fix}")
    return images, labels


# FID reference sets (ScoreConfig.fid_reference): what each paper's code compared its samples against.
FID_REFERENCES = {
    "train": "all training images (the common convention; CIFAR-10: 50k)",
    "train_10k": "10k training images drawn at random, seed 0 (ICD test_inception.py: 10k from a shuffled loader)",
    "train_test": "training and test images together (IGEBM test_inception.py Cifar10(full=True): all 60k)",
}


def reference_images(data_dir: Path, name: str, seed: int = 0) -> np.ndarray:
    """The FID reference images (N, H, W, C) uint8 of a prepared dataset folder."""
    if name not in FID_REFERENCES:
        raise DatasetError(f"metrics.fid_reference: unknown {name!r}; choose one of {sorted(FID_REFERENCES)}")
    train, _ = load_split(Path(data_dir) / "train.npz")
    if name == "train":
        return train
    if name == "train_10k":
        idx = np.random.default_rng(seed).permutation(len(train))[:10000]
        return train[np.sort(idx)]
    test, _ = load_split(Path(data_dir) / "test.npz")
    return np.concatenate([train, test])


# ---------------------------------------------------------------- archives
def _unsafe_member(m: tarfile.TarInfo) -> str | None:
    """Why extracting tar member m could write outside the target folder (or make a non-file); None if safe."""
    if m.name.startswith(("/", "\\")) or (len(m.name) > 1 and m.name[1] == ":"):  # /x, \x or C:x
        return "an absolute path"
    if ".." in Path(m.name.replace("\\", "/")).parts:
        return "a '..' component"
    if not (m.isfile() or m.isdir()):  # links could point anywhere; devices and fifos are never data
        return "a link" if (m.issym() or m.islnk()) else "a special file"
    return None


def safe_extract(archive: Path, dest: Path) -> Path:
    """Extract a (verified) tar archive to dest, which must not exist yet; return dest.

    Every member is checked before anything is written: an absolute path, a '..' component, a link or a
    special file refuses the whole archive. The files land in a temp folder renamed to dest at the end.
    """
    archive, dest = Path(archive), Path(dest)
    if dest.exists():
        raise DatasetError(f"{dest} already exists; delete it to extract {archive} again")
    try:
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            for m in members:
                why = _unsafe_member(m)
                if why:
                    raise DatasetError(f"{archive}: member {m.name!r} is {why}, which could write outside {dest}; "
                                       f"nothing was extracted. Delete the archive and fetch the official one.")
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp"))
            try:
                root = tmp.resolve()
                for m in members:  # belt and braces: the resolved target must lie under the temp folder
                    if not (root / m.name).resolve().is_relative_to(root):
                        raise DatasetError(f"{archive}: member {m.name!r} resolves outside {dest}; nothing extracted")
                kw = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}  # Python >= 3.11.4
                tar.extractall(tmp, members=members, **kw)
                os.replace(tmp, dest)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
    except (tarfile.TarError, OSError, EOFError) as err:
        raise DatasetError(f"{archive} cannot be extracted ({err!r}); delete it and fetch it again") from err
    return dest


# ---------------------------------------------------------------- CIFAR-10
def download(url: str, dest: Path, verify: Callable[[Path], None] | None = None) -> None:
    """Fetch url into dest atomically; `verify(tmp)` checks the bytes first, so a bad transfer leaves no dest.

    Network and I/O failures (HTTPException: a cut transfer) raise OSError-like errors for the caller to word.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)  # exists even offline: the error says to put the file there
    with urllib.request.urlopen(url, timeout=60) as resp:
        atomic_write(dest, lambda f: shutil.copyfileobj(resp, f, _CHUNK), verify)


def _download(url: str, dest: Path) -> None:
    """download(), with a DatasetError naming the url and where to put the file by hand."""
    try:
        download(url, dest)
    except (urllib.error.URLError, http.client.HTTPException, OSError) as err:
        raise DatasetError(
            f"could not download {url} ({err!r}). Without network access, fetch that file elsewhere "
            f"and place it by hand at exactly {dest.resolve()}, then rerun.") from err


def _verify_md5(path: Path, expected: str, url: str) -> None:
    """Raise DatasetError unless the archive's md5 matches (a truncated download fails here too)."""
    actual = file_digest(path, "md5")
    if actual != expected:
        raise DatasetError(
            f"{path.resolve()} has md5 {actual}, expected {expected} ({path.stat().st_size} bytes; a truncated or "
            f"corrupted download looks like this). Fix: delete {path} and rerun to download it again, or place the "
            f"official archive from {url} at that path.")


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, bytes and numpy arrays only: any other global (a function to call) is refused."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"),
               ("_codecs", "encode")}  # how Python 3 writes bytes at protocol 2 (str -> bytes, nothing else)

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name} (only numpy arrays are data)")
        return super().find_class(module, name)


def _read_cifar_batches(tar: tarfile.TarFile, members, archive: Path,
                        label_key: bytes = b"labels") -> tuple[np.ndarray, np.ndarray]:
    """Concatenate CIFAR python pickles into images (N, 32, 32, 3) uint8 and labels (N,) int64.

    label_key: b"labels" (CIFAR-10) or b"fine_labels" (CIFAR-100, 100 classes).
    """
    images, labels = [], []
    for name in members:
        try:
            # The archive's md5 was verified first; the restricted unpickler also refuses anything but arrays.
            d = _ArrayUnpickler(tar.extractfile(name), encoding="bytes").load()
        except (KeyError, AttributeError, pickle.UnpicklingError, EOFError, tarfile.TarError) as err:
            raise DatasetError(f"{archive}: member {name} is missing or unreadable ({err!r}); "
                               f"delete the archive and rerun") from err
        rows = np.asarray(d[b"data"], dtype=np.uint8)  # (n, 3072): 1024 R, then 1024 G, then 1024 B
        lab = np.asarray(d[label_key], dtype=np.int64)
        if rows.ndim != 2 or rows.shape[1] != 3072 or len(lab) != len(rows):
            raise DatasetError(f"{archive}: {name} holds data {rows.shape} and {len(lab)} labels, "
                               f"expected (n, 3072) and n; delete the archive and rerun")
        images.append(rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))  # CHW -> HWC
        labels.append(lab)
    return np.ascontiguousarray(np.concatenate(images)), np.concatenate(labels)


def _cifar10(out_dir: Path, n_train: int | None, n_test: int | None):
    """Verified archive -> (train, test, source) with train/test as (images, labels)."""
    spec = DATASETS["cifar10"]
    archive = out_dir / "raw" / spec["filename"]
    if not archive.is_file():
        _download(spec["url"], archive)
    _verify_md5(archive, spec["md5"], spec["url"])
    try:
        with tarfile.open(archive, "r:gz") as tar:
            train = _read_cifar_batches(tar, spec["train_members"], archive)
            test = _read_cifar_batches(tar, spec["test_members"], archive)
    except (tarfile.TarError, OSError, EOFError) as err:
        raise DatasetError(f"{archive} passed its md5 check but cannot be read as tar.gz ({err!r}); "
                           f"delete it and rerun") from err
    # Optional leading subsets (debugging only); the full splits are 50,000 / 10,000.
    train = tuple(a[:n_train] for a in train) if n_train is not None else train
    test = tuple(a[:n_test] for a in test) if n_test is not None else test
    source = {"name": "cifar10", "url": spec["url"], "archive": spec["filename"], "md5": spec["md5"],
              "n_train": len(train[0]), "n_test": len(test[0]), "classes": list(spec["classes"])}
    return train, test, source


# ---------------------------------------------------------------- MNIST
IDX_UBYTE = 0x08  # idx type code of unsigned bytes, the only one MNIST uses


def read_idx(raw: bytes, what: str) -> np.ndarray:
    """Parse an idx file (LeCun's MNIST format): 2 zero bytes, type code, ndim, ndim big-endian uint32 sizes, data."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != IDX_UBYTE:
        raise DatasetError(f"{what} is not an idx file of unsigned bytes (header {raw[:4].hex()}); delete it and rerun")
    ndim = raw[3]
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    data = np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise DatasetError(f"{what}: header says {dims} = {int(np.prod(dims))} bytes, file holds {data.size}; "
                           f"delete it and rerun")
    return data.reshape(dims)


def _fetch_verified(name: str, md5: str, mirrors, raw_dir: Path) -> Path:
    """The file raw_dir/name with the expected md5: reused if present, else downloaded from the first working mirror."""
    dest = raw_dir / name
    if not dest.is_file():
        errors = []
        for base in mirrors:
            try:
                _download(base + name, dest)
                break
            except DatasetError as err:
                errors.append(str(err))
        else:
            raise DatasetError(f"could not download {name} from any mirror ({'; '.join(mirrors)}). Without network "
                               f"access, fetch it elsewhere and place it at exactly {dest.resolve()}, then rerun.\n"
                               + "\n".join(errors))
    _verify_md5(dest, md5, mirrors[0] + name)
    return dest


def _mnist(out_dir: Path, n_train: int | None, n_test: int | None):
    """Verified idx archives -> (train, test, source); images (N, 28, 28, 1) uint8, labels (N,) int64."""
    spec = DATASETS["mnist"]
    arrays = {}
    for key, (name, md5) in spec["files"].items():
        path = _fetch_verified(name, md5, spec["mirrors"], out_dir / "raw")
        try:
            raw = gzip.decompress(path.read_bytes())
        except (OSError, EOFError) as err:
            raise DatasetError(f"{path} passed its md5 check but is not gzip ({err!r}); delete it and rerun") from err
        arrays[key] = read_idx(raw, str(path))
    splits = []
    for split, n in (("train", n_train), ("test", n_test)):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DatasetError(f"MNIST {split}: images {images.shape} and labels {labels.shape} do not pair up")
        images, labels = images[:n, :, :, None], labels[:n].astype(np.int64)  # (N, 28, 28, 1); n=None keeps all
        splits.append((np.ascontiguousarray(images), labels))
    source = {"name": "mnist", "mirrors": list(spec["mirrors"]),
              "files": {name: md5 for name, md5 in spec["files"].values()},
              "n_train": len(splits[0][0]), "n_test": len(splits[1][0]), "classes": list(spec["classes"])}
    return splits[0], splits[1], source


# ---------------------------------------------------------------- shapes (smoke data)
def _shape_mask(kind: int, dx: np.ndarray, dy: np.ndarray, s: float, period: int) -> np.ndarray:
    """Boolean (32, 32) mask of one shape; dx, dy are pixel offsets from its centre, s its half-size."""
    ax, ay, r = np.abs(dx), np.abs(dy), np.hypot(dx, dy)
    box = np.maximum(ax, ay) <= s
    name = SHAPE_CLASSES[kind]
    if name == "disc":
        return r <= s
    if name == "square":
        return np.maximum(ax, ay) <= 0.8 * s  # 0.8: same area scale as the disc
    if name == "triangle":  # apex up: the half-width grows linearly from the top edge
        return (dy >= -s) & (dy <= 0.8 * s) & (ax <= 0.6 * (dy + s))
    if name == "cross":
        arm = max(1.0, s / 3)
        return box & ((ax <= arm) | (ay <= arm))
    if name == "ring":
        return (r <= s) & (r >= 0.55 * s)
    if name == "hstripes":
        return box & (np.floor((dy + s) / period) % 2 == 0)
    if name == "vstripes":
        return box & (np.floor((dx + s) / period) % 2 == 0)
    if name == "diamond":
        return ax + ay <= s
    if name == "checkerboard":
        return box & ((np.floor((dx + s) / period) + np.floor((dy + s) / period)) % 2 == 0)
    if name == "x":
        return box & (np.abs(ax - ay) <= max(1.0, s / 4))
    raise ValueError(f"unknown shape class {kind}")


def _colour_pair(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Foreground and background RGB in [0, 255], at least 100 apart so the shape stays visible."""
    while True:
        fg, bg = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        if np.linalg.norm(fg - bg) >= 100:
            return fg, bg


def make_shapes(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """n balanced shape images (n, 32, 32, 3) uint8 and labels (n,) int64, in shuffled order."""
    labels = rng.permutation(np.arange(n) % len(SHAPE_CLASSES)).astype(np.int64)  # class counts differ by <= 1
    yy, xx = np.mgrid[0:32, 0:32].astype(np.float64) + 0.5  # (32, 32) pixel centres
    images = np.empty((n, 32, 32, 3), np.uint8)
    for i, k in enumerate(labels):
        s = rng.uniform(4.0, 12.0)  # half-size in pixels; small shapes are hard to tell apart, on purpose
        cx, cy = rng.uniform(s * 0.7, 32 - s * 0.7, 2)  # up to ~30% of a shape may leave the frame
        period = int(rng.integers(2, 5))  # stripe/check width in pixels
        fg, bg = _colour_pair(rng)
        mask = _shape_mask(int(k), xx - cx, yy - cy, s, period)[..., None]  # (32, 32, 1)
        img = np.where(mask, fg, bg) + rng.normal(0.0, 12.0, (32, 32, 3))  # pixel noise: not trivially clean
        images[i] = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return images, labels


def make_gray_shapes(n: int, rng: np.random.Generator, size: int = 28) -> tuple[np.ndarray, np.ndarray]:
    """MNIST-shaped stand-in: n balanced shapes (n, size, size, 1) uint8, light on a dark background, labels (n,)."""
    labels = rng.permutation(np.arange(n) % len(SHAPE_CLASSES)).astype(np.int64)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5  # (size, size) pixel centres
    scale = size / 32  # same shapes relative to the frame as the 32x32 set
    images = np.empty((n, size, size, 1), np.uint8)
    for i, k in enumerate(labels):
        s = rng.uniform(4.0, 12.0) * scale
        cx, cy = rng.uniform(s * 0.7, size - s * 0.7, 2)
        period = int(rng.integers(2, 5))
        fg, bg = rng.uniform(170, 255), rng.uniform(0, 60)  # like MNIST's white strokes on black
        mask = _shape_mask(int(k), xx - cx, yy - cy, s, period)
        img = np.where(mask, fg, bg) + rng.normal(0.0, 12.0, (size, size))
        images[i, :, :, 0] = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return images, labels


def _shapes(seed: int, n_train: int | None, n_test: int | None, name: str = "shapes"):
    """Deterministic train/test splits of a generated set from independent streams of one seed."""
    spec = DATASETS[name]
    n_train = spec["n_train"] if n_train is None else n_train
    n_test = spec["n_test"] if n_test is None else n_test
    # Separate streams: the test split does not change when n_train does, and vice versa.
    if name == "shapes":
        train = make_shapes(n_train, np.random.default_rng([seed, 0]))
        test = make_shapes(n_test, np.random.default_rng([seed, 1]))
    else:
        train = make_gray_shapes(n_train, np.random.default_rng([seed, 0]))
        test = make_gray_shapes(n_test, np.random.default_rng([seed, 1]))
    source = {"name": name, "generator": spec["generator"], "version": spec["version"], "seed": seed,
              "n_train": n_train, "n_test": n_test, "classes": list(spec["classes"])}
    return train, test, source


# ---------------------------------------------------------------- entry point
def prepare_dataset(name: str, out_dir: Path, seed: int = 0, n_train: int | None = None,
                    n_test: int | None = None) -> dict:
    """Write out_dir/{train,test}.npz and checksums.json; return the checksums and the source."""
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; choose one of {sorted(DATASETS)} in params.yaml")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if name == "cifar10":
        train, test, source = _cifar10(out_dir, n_train, n_test)
    elif name == "mnist":
        train, test, source = _mnist(out_dir, n_train, n_test)
    elif DATASETS[name].get("module") == "ebm_repro.datasets_dsprites":
        from ebm_repro import datasets_dsprites  # it imports this module's download helpers
        train, test, source = datasets_dsprites.splits(name, out_dir, seed, n_train, n_test, DATASETS[name])
    else:
        train, test, source = _shapes(seed, n_train, n_test, name)
    info = {}
    for split, (images, labels) in (("train.npz", train), ("test.npz", test)):
        assert images.dtype == np.uint8 and images.shape[1:] == DATASET_SHAPES[name], images.shape
        _write_npz(out_dir / split, images, labels.astype(np.int64), DATASETS[name].get("compress", False))
        info[split] = file_digest(out_dir / split)
    info["source"] = source
    atomic_write(out_dir / "checksums.json", lambda f: f.write((json.dumps(info, indent=1) + "\n").encode()))
    return info


class ImageDataset(Dataset):
    """Images of a split as float (C, H, W) in [0, 1] with int labels; optional uniform dequantisation."""

    def __init__(self, path, dequantize: bool = False):
        images, labels = load_split(path)
        self.images = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()  # (N, C, H, W) uint8
        self.labels = torch.from_numpy(labels)
        self.dequantize = dequantize

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        k = self.images[i].float()
        # (k + u) / 256 with u ~ U(0, 1) fills each 8-bit bin continuously (methods.md); plain k / 255 otherwise.
        x = (k + torch.rand_like(k)) / 256.0 if self.dequantize else k / 255.0
        return x, int(self.labels[i])


def main(argv: list[str] | None = None) -> None:
    """Prepare one dataset by name (the workflow's prepare_dataset rule; any dataset a variant names)."""
    ap = argparse.ArgumentParser(prog="python -m ebm_repro.data", description=main.__doc__)
    ap.add_argument("--dataset", required=True, choices=sorted(DATASETS))
    ap.add_argument("--out", required=True, help="folder for train.npz, test.npz, checksums.json")
    ap.add_argument("--seed", type=int, default=0, help="seed of the generated sets")
    a = ap.parse_args(argv)
    try:
        info = prepare_dataset(a.dataset, Path(a.out), seed=a.seed)
    except DatasetError as err:
        raise SystemExit(f"error: {err}")
    print(json.dumps(info, indent=1))


if __name__ == "__main__":
    main()
