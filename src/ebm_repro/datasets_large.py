"""E17-E19 datasets that need a manual download: read from a local path, checked, converted to our .npz splits.

    imagenet32       Downsampled ImageNet 32x32 (Chrabaszcz et al. 2017): the pickled batches the IGEBM code reads
                     (data.py Imagenet: train_data_batch_1..10, val_data; dict of `data` (N, 3072) uint8, `labels` 1..1000)
    celebahq128      CelebA-HQ as the CelebAMask-HQ release ships it: CelebA-HQ-img/<i>.jpg at 1024x1024 and
                     CelebAMask-HQ-attribute-anno.txt (the 40 CelebA attributes of each image), resized to 128
    lsun_bedroom128  LSUN bedroom, the official LMDB databases (bedroom_train_lmdb, bedroom_val_lmdb), resized to 128

check() looks at a folder (layout, counts, a sha256 manifest of the raw files, verified against a SHA256SUMS file
there if the user has one) and returns a status record; prepare() writes {train,test}.npz + checksums.json.
A missing folder is a status ("missing", with the message naming what to download and where), not an error:
the workflow builds every other target and the tables say "not run: dataset missing".
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

# light at import (Snakemake imports this module to see which folders are there): checkpoint (torch) is
# imported inside the functions that write

SIZE = {"imagenet32": 32, "celebahq128": 128, "lsun_bedroom128": 128}
IMAGENET_TRAIN = tuple(f"train_data_batch_{i}" for i in range(1, 11))
IMAGENET_VAL = "val_data"
CELEBA_IMAGES = "CelebA-HQ-img"
CELEBA_ATTRS = "CelebAMask-HQ-attribute-anno.txt"
LSUN_TRAIN, LSUN_VAL = "bedroom_train_lmdb", "bedroom_val_lmdb"
# E19 (ICD Tab. 3): the attribute each conditional model learns, as (CelebA column, value that means "has it")
ATTRIBUTES = {"young": ("Young", 1), "female": ("Male", 0), "smiling": ("Smiling", 1), "wavy": ("Wavy_Hair", 1)}


def file_digest(path: Path) -> str:
    from ebm_repro.checkpoint import file_digest as digest

    return digest(path)


def atomic_write_text(path: Path, text: str) -> None:
    from ebm_repro.checkpoint import atomic_write_text as write

    write(path, text)


class LargeDatasetError(RuntimeError):
    """The folder is there but wrong (layout, counts, checksums); the message says what is wrong and the fix."""


@dataclass(frozen=True)
class Spec:
    title: str          # what the tables call it
    short: str          # the files, in a few words (table cells)
    download: str       # where it comes from (the user needs an account or a manual download)
    layout: str         # what the folder must hold, with {path}


SPECS = {
    "imagenet32": Spec(
        "ImageNet 32x32", "Imagenet32_train.zip + Imagenet32_val.zip, unzipped",
        "Imagenet32_train.zip and Imagenet32_val.zip ('Downsampled ImageNet 32x32', "
        "https://image-net.org/download-images.php, needs an ImageNet account)",
        "unzip both into {path}, so that {path}/train_data_batch_1 ... train_data_batch_10 and {path}/val_data "
        "exist (files inside Imagenet32_train/ and Imagenet32_val/ subfolders are found too)"),
    "celebahq128": Spec(
        "CelebA-HQ 128x128", "CelebAMask-HQ.zip, unzipped",
        "CelebAMask-HQ.zip (https://github.com/switchablenorms/CelebAMask-HQ; accept the CelebA terms)",
        f"unzip it so that {{path}}/{CELEBA_IMAGES}/0.jpg ... and {{path}}/{CELEBA_ATTRS} exist"),
    "lsun_bedroom128": Spec(
        "LSUN bedroom 128x128", "bedroom_train_lmdb + bedroom_val_lmdb",
        "bedroom_train_lmdb.zip and bedroom_val_lmdb.zip (LSUN scenes, download.py of https://github.com/fyu/lsun)",
        f"unzip both into {{path}}, so that {{path}}/{LSUN_TRAIN}/data.mdb and {{path}}/{LSUN_VAL}/data.mdb exist"),
}


LOCAL = (*SPECS, *(f"celebahq128_{a}" for a in ATTRIBUTES))  # every dataset made from a local download


def base_of(dataset: str) -> str | None:
    """The local download a dataset is made from (celebahq128_young -> celebahq128), None for the others."""
    if dataset in SPECS:
        return dataset
    return "celebahq128" if dataset in LOCAL else None


def missing_cell(name: str, path: Path) -> str:
    """A table cell for a row whose dataset is absent."""
    return f"not run: dataset missing (put {SPECS[name].short} at `{path}`)"


def missing_message(name: str, path: Path) -> str:
    """One message naming what to download and where to put it."""
    s = SPECS[name]
    return (f"{s.title}: not found at {path}. Download {s.download}; {s.layout.format(path=path)}. Until then its "
            f"rows read 'not run: dataset missing' and every other target runs.")


# ----------------------------------------------------------------------------- layout
def _imagenet_file(path: Path, fname: str) -> Path:
    for sub in ("", "Imagenet32_train", "Imagenet32_val"):
        if (path / sub / fname).is_file():
            return path / sub / fname
    return path / fname


def key_files(name: str, path: Path) -> list[Path]:
    """Files whose presence means the user has put the dataset there (checked as Snakemake builds the DAG)."""
    path = Path(path)
    if name == "imagenet32":
        return [_imagenet_file(path, f) for f in (*IMAGENET_TRAIN, IMAGENET_VAL)]
    if name == "celebahq128":
        return [path / CELEBA_ATTRS, path / CELEBA_IMAGES / "0.jpg"]
    return [path / LSUN_TRAIN / "data.mdb", path / LSUN_VAL / "data.mdb"]


def present(name: str, path: Path) -> bool:
    return all(p.is_file() for p in key_files(name, path))


def raw_files(name: str, path: Path) -> list[Path]:
    """Every raw file the conversion reads (the manifest covers these)."""
    path = Path(path)
    if name == "celebahq128":
        n = len(read_celeba_attributes(path / CELEBA_ATTRS)[0])
        return [path / CELEBA_ATTRS] + [path / CELEBA_IMAGES / f"{i}.jpg" for i in range(n)]
    return key_files(name, path)


# ----------------------------------------------------------------------------- readers
class _BatchUnpickler(pickle.Unpickler):
    """ImageNet32 batches hold a dict of numpy arrays and int lists: any other global is refused (no code runs)."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name} (only arrays are data)")
        return super().find_class(module, name)


def read_imagenet_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One pickled batch -> images (N, 32, 32, 3) uint8, labels (N,) int64 in 0..999 (the file's are 1..1000)."""
    try:
        with open(path, "rb") as f:
            d = _BatchUnpickler(f, encoding="bytes").load()
    except (OSError, EOFError, pickle.UnpicklingError, ValueError) as err:
        raise LargeDatasetError(f"{path} is not a readable ImageNet32 batch ({err!r}); unzip the official archive "
                                f"again") from err
    d = {k.decode() if isinstance(k, bytes) else k: v for k, v in d.items()}
    data, labels = np.asarray(d.get("data"), np.uint8), np.asarray(d.get("labels"), np.int64)
    if data.ndim != 2 or data.shape[1] != 3072 or labels.shape != (len(data),):
        raise LargeDatasetError(f"{path}: data {data.shape} / labels {labels.shape}, expected (N, 3072) and (N,)")
    if len(labels) and (labels.min() < 1 or labels.max() > 1000):
        raise LargeDatasetError(f"{path}: labels must lie in 1..1000, got {labels.min()}..{labels.max()}")
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # rows are R, G, B planes (CHW) -> NHWC
    return np.ascontiguousarray(images), labels - 1


def read_celeba_attributes(path: Path) -> tuple[list[str], list[str], np.ndarray]:
    """CelebAMask-HQ-attribute-anno.txt -> (file names, 40 attribute names, (N, 40) uint8 with 1 = has it)."""
    try:
        lines = Path(path).read_text().split("\n")
        n, names = int(lines[0]), lines[1].split()
        rows = [line.split() for line in lines[2:2 + n]]
        files = [r[0] for r in rows]
        values = np.array([[int(v) for v in r[1:]] for r in rows], np.int64)  # (N, 40) in {-1, 1}
    except (OSError, ValueError, IndexError) as err:
        raise LargeDatasetError(f"{path} is not the CelebAMask-HQ attribute file ({err!r}): first line the image "
                                f"count, second line the 40 attribute names, then '<i>.jpg' and 40 values of 1/-1") from err
    if len(rows) != n or values.shape != (n, len(names)) or not np.isin(values, (-1, 1)).all():
        raise LargeDatasetError(f"{path}: header says {n} images x {len(names)} attributes of 1/-1, the file holds "
                                f"{values.shape}")
    return files, names, (values > 0).astype(np.uint8)


def _resize(img, size: int) -> np.ndarray:
    """PIL image -> (size, size, 3) uint8, bilinear (ICD data.py: scipy imresize, whose default is PIL bilinear)."""
    from PIL import Image

    return np.asarray(img.convert("RGB").resize((size, size), Image.BILINEAR), np.uint8)


def lsun_entries(db: Path) -> int:
    import lmdb

    with lmdb.open(str(db), readonly=True, lock=False, readahead=False, subdir=True) as env:
        return env.stat()["entries"]


def iter_lsun(db: Path, limit: int = 0) -> Iterator[tuple[bytes, bytes]]:
    """(key, encoded image) in key order; limit > 0 stops after that many."""
    import lmdb

    with lmdb.open(str(db), readonly=True, lock=False, readahead=False, subdir=True) as env:
        with env.begin(write=False) as txn:
            for i, (k, v) in enumerate(txn.cursor()):
                if limit and i >= limit:
                    break
                yield k, v


# ----------------------------------------------------------------------------- check
def counts(name: str, path: Path) -> dict[str, int]:
    """Images in each part of the raw data."""
    path = Path(path)
    if name == "imagenet32":
        n_train = sum(len(read_imagenet_batch(_imagenet_file(path, f))[1]) for f in IMAGENET_TRAIN)
        return {"train": n_train, "test": len(read_imagenet_batch(_imagenet_file(path, IMAGENET_VAL))[1])}
    if name == "celebahq128":
        files, _, _ = read_celeba_attributes(path / CELEBA_ATTRS)
        absent = [f for f in files if not (path / CELEBA_IMAGES / f).is_file()]
        if absent or files != [f"{i}.jpg" for i in range(len(files))]:
            raise LargeDatasetError(f"{path / CELEBA_IMAGES}: the attribute file lists {len(files)} images 0.jpg .., "
                                    f"{len(absent)} of them are missing (first: {absent[:3]}); unzip the archive again")
        return {"images": len(files)}
    return {"train": lsun_entries(path / LSUN_TRAIN), "test": lsun_entries(path / LSUN_VAL)}


def manifest(files: list[Path], root: Path) -> str:
    """sha256sum-format lines ('<digest>  <path relative to root>') of the raw files."""
    return "".join(f"{file_digest(f)}  {f.relative_to(root)}\n" for f in files)


def verify_sums(path: Path, text: str) -> None:
    """If the folder holds a SHA256SUMS (e.g. from the lab that shared the data), every line must match."""
    sums = Path(path) / "SHA256SUMS"
    if not sums.is_file():
        return
    have = dict(line.split("  ", 1)[::-1] for line in text.splitlines())
    for line in sums.read_text().splitlines():
        if not line.strip():
            continue
        digest, rel = line.split(maxsplit=1)
        rel = rel.lstrip("*")
        if have.get(rel) != digest:
            raise LargeDatasetError(f"{path / rel}: sha256 {have.get(rel, 'file not found')} differs from "
                                    f"{sums} ({digest}); fetch that file again, or fix SHA256SUMS")


def check(name: str, path: Path, expected: dict[str, int]) -> dict:
    """Status record of the folder: missing (with the message), or present with counts and its manifest.

    Raises LargeDatasetError when the folder is there but its layout, counts or checksums are wrong.
    """
    path = Path(path)
    if not present(name, path):
        return {"dataset": name, "title": SPECS[name].title, "status": "missing", "path": str(path),
                "message": missing_message(name, path)}
    got = counts(name, path)
    wrong = {k: (v, expected[k]) for k, v in got.items() if k in expected and v != expected[k]}
    if wrong:
        raise LargeDatasetError(f"{SPECS[name].title} at {path}: image counts {got} differ from params.yaml "
                                f"large_data.{name} {expected} ({', '.join(f'{k}: {a} != {b}' for k, (a, b) in wrong.items())}); "
                                f"the download is incomplete, or set the counts of your copy in params.yaml")
    text = manifest(raw_files(name, path), path)
    verify_sums(path, text)
    return {"dataset": name, "title": SPECS[name].title, "status": "present", "path": str(path), "counts": got,
            "manifest": text, "manifest_sha256": hashlib.sha256(text.encode()).hexdigest()}


# ----------------------------------------------------------------------------- convert
def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Uncompressed .npz with fixed member dates (same bytes on every machine), written atomically."""
    import zipfile

    from ebm_repro.checkpoint import atomic_write

    def write(f):
        with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as z:
            for key, arr in arrays.items():
                with z.open(zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0)), "w",
                            force_zip64=True) as member:
                    np.lib.format.write_array(member, np.ascontiguousarray(arr), allow_pickle=False)
    atomic_write(path, write)


def _splits(name: str, path: Path, max_train: int, n_test: int) -> tuple[dict, dict]:
    """(train arrays, test arrays): images (N, S, S, 3) uint8, labels (N,) int64 (+ CelebA attributes)."""
    from PIL import Image

    size = SIZE[name]
    if name == "imagenet32":
        parts = [read_imagenet_batch(_imagenet_file(path, f)) for f in IMAGENET_TRAIN]
        train = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
        test = read_imagenet_batch(_imagenet_file(path, IMAGENET_VAL))
        if max_train:
            train = (train[0][:max_train], train[1][:max_train])
        return dict(images=train[0], labels=train[1]), dict(images=test[0], labels=test[1])
    if name == "celebahq128":
        files, names, attrs = read_celeba_attributes(path / CELEBA_ATTRS)
        images = np.stack([_resize(Image.open(path / CELEBA_IMAGES / f), size) for f in files])
        # CelebA-HQ has no official split (the ICD code trained on all 30,000): we hold out the last n_test
        cut = len(files) - n_test
        cut = min(cut, max_train) if max_train else cut
        names_arr = np.array(names)
        part = lambda a, b: dict(images=images[a:b], labels=np.zeros(b - a, np.int64),  # noqa: E731
                                 attributes=attrs[a:b], attribute_names=names_arr)
        return part(0, cut), part(len(files) - n_test, len(files))
    out = []
    for db, limit in ((path / LSUN_TRAIN, max_train), (path / LSUN_VAL, 0)):
        ims = [_resize(Image.open(io.BytesIO(v)), size) for _, v in iter_lsun(db, limit)]
        out.append(dict(images=np.stack(ims), labels=np.zeros(len(ims), np.int64)))
    return out[0], out[1]


def prepare(name: str, path: Path, out_dir: Path, status: dict, max_train: int = 0, n_test: int = 0) -> dict:
    """Write out_dir/{train,test}.npz and checksums.json from a checked folder; return the checksums."""
    if status.get("status") != "present":
        raise LargeDatasetError(status.get("message") or f"{name}: run the check first")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    train, test = _splits(name, Path(path), max_train, n_test)
    info = {}
    for split, arrays in (("train.npz", train), ("test.npz", test)):
        assert arrays["images"].shape[1:] == (SIZE[name], SIZE[name], 3), arrays["images"].shape
        write_npz(out_dir / split, arrays)
        info[split] = file_digest(out_dir / split)
    info["source"] = {"name": name, "path": str(path), "raw_manifest_sha256": status["manifest_sha256"],
                      "raw_counts": status["counts"], "n_train": len(train["labels"]), "n_test": len(test["labels"]),
                      "max_train": max_train, "resize": "PIL bilinear" if name != "imagenet32" else "none"}
    atomic_write_text(out_dir / "checksums.json", json.dumps(info, indent=1) + "\n")
    return info


def prepare_attribute(data_dir: Path, out_dir: Path, attribute: str) -> dict:
    """A copy of the celebahq128 splits whose labels are one attribute (1 = the face has it): E19's conditional data."""
    column, value = ATTRIBUTES[attribute]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    info = {}
    for split in ("train.npz", "test.npz"):
        with np.load(Path(data_dir) / split, allow_pickle=False) as z:
            names = [str(n) for n in z["attribute_names"]]
            if column not in names:
                raise LargeDatasetError(f"{data_dir / split} has no attribute {column!r}; rerun prepare_large_dataset")
            labels = (z["attributes"][:, names.index(column)] == value).astype(np.int64)  # (N,) in {0, 1}
            write_npz(out_dir / split, dict(images=z["images"], labels=labels))
        info[split] = file_digest(out_dir / split)
    info["source"] = {"name": f"celebahq128_{attribute}", "from": str(data_dir), "attribute": column,
                      "label_1_means": f"{column} == {'1' if value else '-1'}"}
    atomic_write_text(out_dir / "checksums.json", json.dumps(info, indent=1) + "\n")
    return info


def resolve_path(path: str, prefix: str) -> Path:
    """A params.yaml path: absolute as given, else relative to the setting's prefix (smoke/ for smoke)."""
    return Path(path) if os.path.isabs(path) else Path(f"{prefix}{path}")
