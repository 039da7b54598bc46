"""dSprites (Matthey et al. 2017): the real archive (checksummed download) and a procedural renderer of its latent grid.

Both become the usual uint8 splits of data.py: images (N, 64, 64, 1) in {0, 255}, labels = the image's index in the
dSprites latent grid (int64), from which every latent follows (`latent_classes`, `latent_values`).

- `dsprites`: dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz from deepmind/dsprites-dataset (737,280 images, all
  combinations of shape 3 x scale 6 x orientation 40 x posX 32 x posY 32, stored in grid order), split 90/10.
- `dsprites_gen`: the same grid drawn by `render` (our geometry, not LOVE's rasteriser: square, ellipse, heart; size
  proportional to scale, centre moving linearly with position, rotation by the orientation), a few thousand images
  at random grid points: the smoke setting's stand-in and the tests' data.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

SHAPES = ("square", "ellipse", "heart")                 # shape latent 1, 2, 3 (README order)
LATENTS = ("color", "shape", "scale", "orientation", "posX", "posY")
GRID = (1, 3, 6, 40, 32, 32)                            # values per latent, in the archive's (row-major) order
N_IMAGES = int(np.prod(GRID))                           # 737,280
VALUES = (np.array([1.0]), np.array([1.0, 2.0, 3.0]), np.linspace(0.5, 1.0, 6), np.linspace(0.0, 2 * np.pi, 40),
          np.linspace(0.0, 1.0, 32), np.linspace(0.0, 1.0, 32))   # the archive's metadata latents_possible_values

ARCHIVE = {
    "filename": "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz",
    # the file at the repository's last commit (fa310c6), then the IGEBM README's link (master)
    "urls": ("https://github.com/deepmind/dsprites-dataset/raw/fa310c66517cfc1939d77fe17c725154efc97127/"
             "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz",
             "https://github.com/deepmind/dsprites-dataset/blob/master/"
             "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz?raw=true"),
    # md5 as pinned by public dSprites loaders (e.g. the torchvision-style `DSprites` datasets and disentanglement
    # toolkits: 7da33b31...); git blob id of the file in deepmind/dsprites-dataset's own tree at fa310c6
    # (`git ls-tree`: sha1 of "blob <size>\0" + bytes). Both must match.
    "md5": "7da33b31b13a06f4b04a70402ce90c2e",
    "git_blob_sha1": "d98996d3f8ee1550e06b9d4ed78d0beb478910d5",
    "test_frac": 0.1,
}

# Renderer geometry (ours; the archive's sprites are LOVE-rasterised): the centre moves over the middle half of the
# frame, as the archive's pixel density shows (README notebook), and a scale-1 square is 0.3 of the frame wide.
POS_LO, POS_SPAN = 0.25, 0.5      # centre = size * (0.25 + 0.5 * pos)
HALF = 0.15                       # half-side of the scale-1 square, in frame widths
ELLIPSE_AXES = (1.25, 0.625)      # semi-axes in units of the square's half-side: a 2:1 ellipse
HEART_UNIT = 1 / 1.1              # heart curve (x^2 + y^2 - 1)^3 = x^2 y^3 spans x in +-1.14: ~ the square's width


# ----------------------------------------------------------------------------- the latent grid
def latent_classes(index: np.ndarray) -> np.ndarray:
    """Grid indices (N,) -> latent class indices (N, 6), the archive's `latents_classes`."""
    index = np.asarray(index, dtype=np.int64)
    if index.size and (index.min() < 0 or index.max() >= N_IMAGES):
        raise ValueError(f"dSprites grid indices must lie in [0, {N_IMAGES}), got {index.min()}..{index.max()}")
    return np.stack(np.unravel_index(index, GRID), axis=1).astype(np.int64)


def grid_index(classes: np.ndarray) -> np.ndarray:
    """Latent class indices (N, 6) -> grid indices (N,) (the image's row in the archive)."""
    classes = np.asarray(classes, dtype=np.int64)
    return np.ravel_multi_index(tuple(classes.T), GRID).astype(np.int64)


def latent_values(classes: np.ndarray) -> np.ndarray:
    """Latent class indices (N, 6) -> latent values (N, 6), the archive's `latents_values`."""
    classes = np.asarray(classes, dtype=np.int64)
    return np.stack([VALUES[j][classes[:, j]] for j in range(len(GRID))], axis=1)


# ----------------------------------------------------------------------------- renderer
def _inside(shape: int, u: np.ndarray, v: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Boolean masks (N, S, S): is the point (u, v) of the sprite's own frame inside a sprite of half-size r?"""
    if shape == 0:                                                  # square
        return np.maximum(np.abs(u), np.abs(v)) <= r
    if shape == 1:                                                  # ellipse, long axis along u
        return (u / (ELLIPSE_AXES[0] * r)) ** 2 + (v / (ELLIPSE_AXES[1] * r)) ** 2 <= 1
    x, y = u / (HEART_UNIT * r), v / (HEART_UNIT * r) + 0.118     # + 0.118: the curve's box (y in -1..1.24) centred
    return (x * x + y * y - 1) ** 3 - x * x * y ** 3 <= 0          # heart, the tip pointing down at orientation 0


def render(values: np.ndarray, size: int = 64, chunk: int = 512) -> np.ndarray:
    """Binary images (N, size, size) uint8 in {0, 1} of latent value rows (N, 6) (columns as LATENTS).

    Pixel (i, j) is on when its centre (j + 0.5, i + 0.5) lies in the sprite: centre size * (0.25 + 0.5 * posX)
    across and size * (0.25 + 0.5 * posY) down, half-size HALF * size * scale, turned counter-clockwise on screen
    by the orientation.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or values.shape[1] != len(LATENTS):
        raise ValueError(f"render expects latent values (N, {len(LATENTS)}), got {values.shape}")
    out = np.empty((len(values), size, size), np.uint8)
    c = (np.arange(size) + 0.5).astype(np.float32)                            # (S,) pixel centres
    for k in range(len(SHAPES)):
        rows = np.flatnonzero(values[:, 1] == k + 1)
        for s in range(0, len(rows), chunk):
            idx = rows[s:s + chunk]
            v = values[idx].astype(np.float32)
            cx, cy = size * (POS_LO + POS_SPAN * v[:, 4]), size * (POS_LO + POS_SPAN * v[:, 5])
            dx = c[None, None, :] - cx[:, None, None]                         # (n, 1, S) rightwards
            up = cy[:, None, None] - c[None, :, None]                         # (n, S, 1) upwards on screen
            cos, sin = np.cos(v[:, 3])[:, None, None], np.sin(v[:, 3])[:, None, None]
            u, w = cos * dx + sin * up, cos * up - sin * dx                    # (n, S, S): rotated by -theta
            out[idx] = _inside(k, u, w, (HALF * size * v[:, 2])[:, None, None])
    return out


# ----------------------------------------------------------------------------- the archive
def archive_digests(path: Path) -> dict[str, str]:
    """md5 and git blob sha1 of a file, in one pass."""
    md5, blob = hashlib.md5(), hashlib.sha1(f"blob {os.path.getsize(path)}\0".encode())
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            md5.update(chunk)
            blob.update(chunk)
    return {"md5": md5.hexdigest(), "git_blob_sha1": blob.hexdigest()}


def verify_archive(path: Path, spec: dict = ARCHIVE) -> None:
    """Raise DatasetError unless both pinned digests match (a truncated download fails here)."""
    from ebm_repro.data import DatasetError

    got = archive_digests(path)
    bad = [f"{k} {got[k]} (expected {spec[k]})" for k in ("md5", "git_blob_sha1") if got[k] != spec[k]]
    if bad:
        raise DatasetError(f"{Path(path).resolve()} ({Path(path).stat().st_size} bytes) has {'; '.join(bad)}: a "
                           f"truncated or different file. Delete it and rerun to download it again, or place the "
                           f"official file from {spec['urls'][0]} at that path.")


def fetch_archive(raw_dir: Path, spec: dict = ARCHIVE) -> Path:
    """raw_dir/<filename> with the pinned digests: reused when present, else downloaded (first working URL)."""
    from ebm_repro.data import DatasetError, download

    dest = Path(raw_dir) / spec["filename"]
    if not dest.is_file():
        errors = []
        for url in spec["urls"]:
            try:
                download(url, dest, verify=lambda p: verify_archive(p, spec))
                break
            except (OSError, DatasetError) as err:  # URLError, HTTPException and a failed check alike
                errors.append(f"{url}: {err!r}")
        else:
            raise DatasetError(f"could not download {spec['filename']} ({'; '.join(errors)}). Without network access, "
                               f"fetch it elsewhere (md5 {spec['md5']}) and place it at exactly {dest.resolve()}, "
                               f"then rerun.")
    verify_archive(dest, spec)
    return dest


def read_archive(path: Path) -> np.ndarray:
    """The archive's images (737280, 64, 64) uint8 in {0, 1}, checked to be stored in latent-grid order.

    Only the plain arrays are read (`metadata` is a pickled dict and is never unpickled).
    """
    from ebm_repro.data import DatasetError

    try:
        with np.load(path, allow_pickle=False) as z:
            images, classes = z["imgs"], z["latents_classes"]
    except (OSError, ValueError, KeyError, EOFError) as err:
        raise DatasetError(f"{path} passed its checksums but cannot be read as the dSprites npz ({err!r})") from err
    if images.shape != (N_IMAGES, 64, 64) or images.dtype != np.uint8 or images.max() > 1:
        raise DatasetError(f"{path}: imgs must be (737280, 64, 64) uint8 in {{0, 1}}, got {images.dtype} "
                           f"{images.shape}")
    if classes.shape != (N_IMAGES, len(GRID)) or not np.array_equal(classes, latent_classes(np.arange(N_IMAGES))):
        raise DatasetError(f"{path}: latents_classes are not the grid in row-major order; the labels (grid "
                           f"indices) would be wrong")
    return images


# ----------------------------------------------------------------------------- splits for data.py
def _images(binary: np.ndarray) -> np.ndarray:
    """{0, 1} (N, 64, 64) -> the split format (N, 64, 64, 1) in {0, 255} (uint8 images as every other dataset)."""
    return (binary * np.uint8(255))[..., None]


def splits(name: str, out_dir: Path, seed: int, n_train: int | None, n_test: int | None, spec: dict):
    """(train, test, source) for data.prepare_dataset; train/test = (images, grid indices)."""
    rng = np.random.default_rng([seed, 11])
    if name == "dsprites":
        images = read_archive(fetch_archive(Path(out_dir) / "raw", ARCHIVE))
        perm = rng.permutation(N_IMAGES)
        n_te = int(round(ARCHIVE["test_frac"] * N_IMAGES)) if n_test is None else n_test
        test_idx = perm[:n_te]
        train_idx = perm[n_te:] if n_train is None else perm[n_te:n_te + n_train]
        train, test = (( _images(images[i]), i.astype(np.int64)) for i in (train_idx, test_idx))
        source = {"name": name, "file": ARCHIVE["filename"], "urls": list(ARCHIVE["urls"]), "md5": ARCHIVE["md5"],
                  "git_blob_sha1": ARCHIVE["git_blob_sha1"], "split_seed": seed}
    else:
        n_train = spec["n_train"] if n_train is None else n_train
        n_test = spec["n_test"] if n_test is None else n_test
        if n_train + n_test > N_IMAGES:
            raise ValueError(f"{name}: {n_train} + {n_test} images exceed the {N_IMAGES} grid points")
        perm = rng.permutation(N_IMAGES)[: n_train + n_test]   # distinct grid points, test first
        test_idx, train_idx = perm[:n_test], perm[n_test:]
        train, test = ((_images(render(latent_values(latent_classes(i)))), i.astype(np.int64))
                       for i in (train_idx, test_idx))
        source = {"name": name, "generator": spec["generator"], "version": spec["version"], "seed": seed}
    source.update(n_train=len(train[1]), n_test=len(test[1]), classes=list(SHAPES), labels="dSprites grid index",
                  grid=dict(zip(LATENTS, GRID)))
    return train, test, source
