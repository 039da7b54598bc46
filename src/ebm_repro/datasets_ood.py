"""Out-of-distribution test sets (E6): SVHN, DTD Textures, CIFAR-100 (md5-checked downloads) and smoke stand-ins.

Each set is one split, written as `<out>/test.npz` (uint8 (N, 32, 32, 3), labels int64) + checksums.json, the
format of data.py. The paper setting downloads the files torchvision's dataset classes name, with their md5s;
the smoke setting generates a stand-in of the same shape for each (STAND_INS).

    python -m ebm_repro.datasets_ood --set svhn --out data/svhn     # what the workflow's prepare_ood_set runs
"""
from __future__ import annotations

import argparse
import io
import json
import tarfile
from pathlib import Path

import numpy as np

from ebm_repro.checkpoint import atomic_write, file_digest
from ebm_repro.data import (SHAPE_CLASSES, DatasetError, _colour_pair, _download, _read_cifar_batches, _shape_mask,
                            _verify_md5, _write_npz)

SHAPE = (32, 32, 3)
DIGITS = tuple(str(d) for d in range(10))
TEXTURE_FAMILIES = ("blotches", "grain", "rings", "stripes", "grating", "crosshatch", "blocks", "speckle")

OOD_DATASETS: dict[str, dict] = {
    "svhn": {  # torchvision.datasets.SVHN split="test" (the IGEBM code loaded split "train" by default)
        "kind": "download",
        "url": "http://ufldl.stanford.edu/housenumbers/test_32x32.mat",
        "md5": "eb5a983be6a315427106f1b164d9cef3",
        "filename": "test_32x32.mat",
        "what": "SVHN cropped digits, test split (26,032 images)",
        "classes": DIGITS,
    },
    "dtd": {  # torchvision.datasets.DTD archive; every image of all splits, as the authors' ImageFolder read it
        "kind": "download",
        "url": "https://www.robots.ox.ac.uk/~vgg/data/dtd/download/dtd-r1.0.1.tar.gz",
        "md5": "fff73e5086ae6bdbea199a49dfb8a4c1",
        "filename": "dtd-r1.0.1.tar.gz",
        "what": "DTD Textures, all 5,640 images, each cropped to its top-left 32x32 pixels at full resolution "
                "(both authors' data.py Textures: np.array(im)[:32, :32]; no resizing)",
    },
    "cifar100": {  # torchvision.datasets.CIFAR100 archive, test batch (fine labels)
        "kind": "download",
        "url": "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        "md5": "eb9058c3a382ffc7106e4002c42a8d85",
        "filename": "cifar-100-python.tar.gz",
        "member": "cifar-100-python/test",
        "what": "CIFAR-100 test split (10,000 images, each once)",
    },
    # smoke stand-ins: generated, same shape, version bumped when a generator changes
    "digits": {"kind": "generated", "version": 1, "n": 500, "classes": DIGITS,
               "what": "stand-in for SVHN: house-number-like rendered digits (5x7 font, neighbours cut at the edges)"},
    "noise_textures": {"kind": "generated", "version": 1, "n": 500, "classes": TEXTURE_FAMILIES,
                       "what": "stand-in for DTD: textures made by filtering noise (8 families)"},
    "shapes100": {"kind": "generated", "version": 1, "n": 500,
                  "what": "stand-in for CIFAR-100: 100 classes of one shape inside another (the shapes classes)"},
}

STAND_INS = {"svhn": "digits", "dtd": "noise_textures", "cifar100": "shapes100"}  # smoke setting


def data_name(name: str, setting: str) -> str:
    """The dataset folder a set reads in a setting: the download (paper) or its generated stand-in (smoke)."""
    if name not in STAND_INS:
        raise DatasetError(f"unknown OOD dataset {name!r}; choose one of {sorted(STAND_INS)}")
    return STAND_INS[name] if setting == "smoke" else name


# ---------------------------------------------------------------- downloads
def _fetch(spec: dict, raw_dir: Path) -> Path:
    """The verified raw file: reused when present, else downloaded (offline: the error names file and folder)."""
    path = raw_dir / spec["filename"]
    if not path.is_file():
        _download(spec["url"], path)
    _verify_md5(path, spec["md5"], spec["url"])
    return path


def read_svhn_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """SVHN *_32x32.mat (MATLAB v5): X (32, 32, 3, N) uint8, y (N, 1) in 1..10 with 10 = digit 0."""
    import scipy.io  # as torchvision.datasets.SVHN reads it

    try:
        mat = scipy.io.loadmat(path)
    except (ValueError, OSError, TypeError) as err:
        raise DatasetError(f"{path} passed its md5 check but is not a MATLAB file ({err!r}); "
                           f"delete it and rerun") from err
    x, y = mat.get("X"), mat.get("y")
    if x is None or y is None or x.ndim != 4 or x.shape[:3] != SHAPE or y.size != x.shape[3]:
        raise DatasetError(f"{path}: expected X (32, 32, 3, N) and y (N, 1), got "
                           f"{getattr(x, 'shape', None)} and {getattr(y, 'shape', None)}; delete it and rerun")
    images = np.ascontiguousarray(np.transpose(x, (3, 0, 1, 2)).astype(np.uint8))  # (N, 32, 32, 3)
    labels = y.reshape(-1).astype(np.int64)
    labels[labels == 10] = 0  # SVHN writes digit 0 as class 10
    return images, labels


def read_dtd_tar(path: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Every dtd/images/<class>/*.jpg of the archive, top-left 32x32 crop, in file-name order; class index labels.

    Read from the archive stream (nothing is extracted to disk), each image converted to RGB as ImageFolder does.
    """
    from PIL import Image

    found = []  # (member name, class, (32, 32, 3) uint8)
    try:
        with tarfile.open(path, "r:gz") as tar:
            for m in tar:
                parts = m.name.split("/")
                if not (m.isfile() and len(parts) == 4 and parts[:2] == ["dtd", "images"]
                        and parts[3].lower().endswith(".jpg")):
                    continue
                with Image.open(io.BytesIO(tar.extractfile(m).read())) as im:
                    a = np.asarray(im.convert("RGB"))  # (H, W, 3)
                if a.shape[0] < 32 or a.shape[1] < 32:
                    raise DatasetError(f"{path}: {m.name} is {a.shape[1]}x{a.shape[0]}, smaller than 32x32")
                found.append((m.name, parts[2], np.ascontiguousarray(a[:32, :32])))
    except (tarfile.TarError, OSError, EOFError) as err:
        raise DatasetError(f"{path} passed its md5 check but cannot be read as tar.gz of JPEGs ({err!r}); "
                           f"delete it and rerun") from err
    if not found:
        raise DatasetError(f"{path} holds no dtd/images/<class>/*.jpg; delete it and fetch the official archive")
    found.sort(key=lambda t: t[0])
    classes = sorted({c for _, c, _ in found})
    images = np.stack([a for _, _, a in found])
    labels = np.array([classes.index(c) for _, c, _ in found], dtype=np.int64)
    return images, labels, classes


def read_cifar100_test(path: Path, member: str) -> tuple[np.ndarray, np.ndarray]:
    """The CIFAR-100 test batch: images (10000, 32, 32, 3) uint8, fine labels (10000,) in 0..99."""
    try:
        with tarfile.open(path, "r:gz") as tar:
            return _read_cifar_batches(tar, (member,), path, label_key=b"fine_labels")
    except (tarfile.TarError, OSError, EOFError) as err:
        raise DatasetError(f"{path} passed its md5 check but cannot be read as tar.gz ({err!r}); "
                           f"delete it and rerun") from err


# ---------------------------------------------------------------- smoke stand-ins
# 5x7 bitmap digits ('#' = ink); rows top to bottom
_FONT = {
    0: (".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###."),
    1: ("..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."),
    2: (".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"),
    3: ("#####", "...#.", "..#..", "...#.", "....#", "#...#", ".###."),
    4: ("...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."),
    5: ("#####", "#....", "####.", "....#", "....#", "#...#", ".###."),
    6: ("..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###."),
    7: ("#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."),
    8: (".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###."),
    9: (".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##.."),
}
GLYPHS = {d: np.array([[c == "#" for c in row] for row in rows]) for d, rows in _FONT.items()}  # (7, 5) bool


def _stamp(mask: np.ndarray, glyph: np.ndarray, top: int, left: int) -> None:
    """OR a scaled glyph into mask (32, 32) at (top, left); parts outside the frame are cut."""
    h, w = glyph.shape
    t0, l0 = max(top, 0), max(left, 0)
    t1, l1 = min(top + h, 32), min(left + w, 32)
    if t1 > t0 and l1 > l0:
        mask[t0:t1, l0:l1] |= glyph[t0 - top:t1 - top, l0 - left:l1 - left]


def make_digits(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """SVHN stand-in: a centred digit (the label) between neighbouring digits, coloured, noisy; (n, 32, 32, 3)."""
    labels = rng.permutation(np.arange(n) % 10).astype(np.int64)
    images = np.empty((n, *SHAPE), np.uint8)
    for i, d in enumerate(labels):
        sy, sx = int(rng.integers(2, 4)), int(rng.integers(2, 4))   # glyph 14 or 21 px high, 10 or 15 wide
        glyph = np.kron(GLYPHS[int(d)], np.ones((sy, sx), bool))
        h, w = glyph.shape
        top = 16 - h // 2 + int(rng.integers(-2, 3))
        left = 16 - w // 2 + int(rng.integers(-2, 3))
        gap = w + int(rng.integers(1, 4)) * sx                       # house numbers: neighbours on both sides
        mask = np.zeros((32, 32), bool)
        _stamp(mask, glyph, top, left)
        for side in (-1, 1):
            if rng.random() < 0.8:
                other = np.kron(GLYPHS[int(rng.integers(0, 10))], np.ones((sy, sx), bool))
                _stamp(mask, other, top, left + side * gap)
        fg, bg = _colour_pair(rng)
        img = np.where(mask[..., None], fg, bg) + rng.normal(0.0, 10.0, SHAPE)
        images[i] = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return images, labels


def _texture(family: int, rng: np.random.Generator) -> np.ndarray:
    """One (32, 32) texture in [0, 1] of a family, by band-limiting white noise in the Fourier domain."""
    fy, fx = np.meshgrid(np.fft.fftfreq(32), np.fft.fftfreq(32), indexing="ij")  # cycles per pixel
    r, theta = np.hypot(fx, fy), np.arctan2(fy, fx)
    name = TEXTURE_FAMILIES[family]

    def oriented(angle: float, f0: float) -> np.ndarray:  # a band around f0 within +-15 degrees of angle (mod pi)
        d = np.abs((theta - angle + np.pi / 2) % np.pi - np.pi / 2)
        return (np.abs(r - f0) < 0.05) & (d < np.pi / 12)

    if name in ("blocks", "speckle", "grating"):
        yy, xx = np.mgrid[0:32, 0:32]
        if name == "blocks":  # coarse random grid, nearest-neighbour upsampled
            b = int(rng.integers(2, 9))
            t = np.kron(rng.random((32 // b + 1, 32 // b + 1)), np.ones((b, b)))[:32, :32]
        elif name == "speckle":  # sparse dots
            t = (rng.random((32, 32)) < rng.uniform(0.03, 0.15)).astype(float)
        else:  # one sinusoid
            a, f = rng.uniform(0, np.pi), rng.uniform(0.08, 0.3)
            t = np.sin(2 * np.pi * f * (xx * np.cos(a) + yy * np.sin(a)) + rng.uniform(0, 2 * np.pi))
        t = t + rng.normal(0, 0.05, t.shape)
    else:
        if name == "blotches":
            keep = r < rng.uniform(0.04, 0.1)
        elif name == "grain":
            keep = r > 0.25
        elif name == "rings":
            keep = np.abs(r - rng.uniform(0.1, 0.3)) < 0.03
        elif name == "stripes":
            keep = oriented(rng.uniform(0, np.pi), rng.uniform(0.1, 0.3))
        else:  # crosshatch: two orientations
            a = rng.uniform(0, np.pi)
            keep = oriented(a, 0.2) | oriented(a + rng.uniform(np.pi / 4, np.pi / 2), 0.2)
        keep[0, 0] = False  # no DC: zero-mean pattern
        t = np.fft.ifft2(np.fft.fft2(rng.normal(size=(32, 32))) * keep).real
    return (t - t.min()) / max(t.max() - t.min(), 1e-8)


def make_noise_textures(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """DTD stand-in: filtered-noise textures between two random colours; labels = family (0..7)."""
    labels = rng.permutation(np.arange(n) % len(TEXTURE_FAMILIES)).astype(np.int64)
    images = np.empty((n, *SHAPE), np.uint8)
    for i, k in enumerate(labels):
        t = _texture(int(k), rng)[..., None]                       # (32, 32, 1) in [0, 1]
        fg, bg = _colour_pair(rng)
        img = bg + t * (fg - bg) + rng.normal(0.0, 6.0, SHAPE)
        images[i] = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return images, labels


def make_shapes100(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-100 stand-in: shape a (large) with shape b (small) inside it, class 10 a + b; (n, 32, 32, 3)."""
    k = len(SHAPE_CLASSES)
    labels = rng.permutation(np.arange(n) % (k * k)).astype(np.int64)
    yy, xx = np.mgrid[0:32, 0:32].astype(np.float64) + 0.5
    images = np.empty((n, *SHAPE), np.uint8)
    for i, c in enumerate(labels):
        outer, inner = divmod(int(c), k)
        s = rng.uniform(9.0, 13.0)
        cx, cy = rng.uniform(s * 0.8, 32 - s * 0.8, 2)
        period = int(rng.integers(2, 5))
        fg, bg = _colour_pair(rng)
        inner_fg, _ = _colour_pair(rng)
        img = np.where(_shape_mask(outer, xx - cx, yy - cy, s, period)[..., None], fg, bg)
        img = np.where(_shape_mask(inner, xx - cx, yy - cy, s * rng.uniform(0.35, 0.5), period)[..., None],
                       inner_fg, img)
        img = img + rng.normal(0.0, 12.0, SHAPE)
        images[i] = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return images, labels


GENERATORS = {"digits": make_digits, "noise_textures": make_noise_textures, "shapes100": make_shapes100}


# ---------------------------------------------------------------- entry point
def prepare_ood_set(name: str, out_dir: Path, seed: int = 0, n: int | None = None) -> dict:
    """Write out_dir/test.npz and checksums.json for one OOD set; return the checksums and the source."""
    if name not in OOD_DATASETS:
        raise DatasetError(f"unknown OOD dataset {name!r}; choose one of {sorted(OOD_DATASETS)}")
    spec, out_dir = OOD_DATASETS[name], Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    source = {"name": name, "what": spec["what"]}
    if spec["kind"] == "generated":
        n = spec["n"] if n is None else n
        images, labels = GENERATORS[name](n, np.random.default_rng([seed, 2]))
        source.update(generator=f"ebm_repro.datasets_ood.{GENERATORS[name].__name__}", version=spec["version"],
                      seed=seed)
    else:
        raw = _fetch(spec, out_dir / "raw")
        if name == "svhn":
            images, labels = read_svhn_mat(raw)
        elif name == "dtd":
            images, labels, classes = read_dtd_tar(raw)
            source["classes"] = classes
        else:
            images, labels = read_cifar100_test(raw, spec["member"])
        images, labels = (images[:n], labels[:n]) if n is not None else (images, labels)  # debugging subsets only
        source.update(url=spec["url"], archive=spec["filename"], md5=spec["md5"])
    if images.dtype != np.uint8 or images.shape[1:] != SHAPE:
        raise DatasetError(f"{name}: got images {images.dtype} {images.shape}, expected uint8 (N, 32, 32, 3)")
    source["n_test"] = len(images)
    _write_npz(out_dir / "test.npz", images, labels.astype(np.int64))
    info = {"test.npz": file_digest(out_dir / "test.npz"), "source": source}
    atomic_write(out_dir / "checksums.json", lambda f: f.write((json.dumps(info, indent=1) + "\n").encode()))
    return info


def main(argv: list[str] | None = None) -> None:
    """Prepare one OOD test set by name (the workflow's prepare_ood_set rule)."""
    ap = argparse.ArgumentParser(prog="python -m ebm_repro.datasets_ood", description=main.__doc__)
    ap.add_argument("--set", required=True, choices=sorted(OOD_DATASETS))
    ap.add_argument("--out", required=True, help="folder for test.npz and checksums.json")
    ap.add_argument("--seed", type=int, default=0, help="seed of the generated stand-ins")
    a = ap.parse_args(argv)
    try:
        info = prepare_ood_set(a.set, Path(a.out), seed=a.seed)
    except DatasetError as err:
        raise SystemExit(f"error: {err}")
    print(json.dumps(info, indent=1))


if __name__ == "__main__":
    main()
