"""Tiny stand-ins of the E17-E19 downloads in their real on-disk formats (pickled ImageNet32 batches, CelebAMask-HQ
JPEGs + attribute file, LSUN LMDB of WebP images), for tests; few images, small pixels."""
from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np

# the 40 CelebA attribute names, in the file's order
CELEBA_NAMES = ("5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose Black_Hair "
                "Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee Gray_Hair "
                "Heavy_Makeup High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard Oval_Face "
                "Pale_Skin Pointy_Nose Receding_Hairline Rosy_Cheeks Sideburns Smiling Straight_Hair Wavy_Hair "
                "Wearing_Earrings Wearing_Hat Wearing_Lipstick Wearing_Necklace Wearing_Necktie Young").split()


def imagenet32(path: Path, per_batch: int = 3, n_val: int = 4, seed: int = 0) -> dict:
    """train_data_batch_1..10 and val_data as the Downsampled ImageNet pickles: data (N, 3072) CHW rows, labels 1..1000."""
    rng = np.random.default_rng(seed)
    path.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, n in [(f"train_data_batch_{i}", per_batch) for i in range(1, 11)] + [("val_data", n_val)]:
        d = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
             "labels": [int(v) for v in rng.integers(1, 1001, n)], "mean": np.zeros(3072)}
        (path / name).write_bytes(pickle.dumps(d))
        out[name] = d
    return out


def celebahq(path: Path, n: int = 6, size: int = 32, seed: int = 0) -> np.ndarray:
    """CelebA-HQ-img/<i>.jpg and CelebAMask-HQ-attribute-anno.txt; returns the (n, 40) attribute matrix of 1/-1."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    (path / "CelebA-HQ-img").mkdir(parents=True, exist_ok=True)
    attrs = rng.choice([-1, 1], (n, 40))
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path / "CelebA-HQ-img" / f"{i}.jpg")
    lines = [str(n), " ".join(CELEBA_NAMES)] + [f"{i}.jpg " + " ".join(f"{v:2d}" for v in a) for i, a in enumerate(attrs)]
    (path / "CelebAMask-HQ-attribute-anno.txt").write_text("\n".join(lines) + "\n")
    return attrs


def lsun(path: Path, n_train: int = 5, n_val: int = 2, size: int = 40, seed: int = 0) -> None:
    """bedroom_train_lmdb / bedroom_val_lmdb: LMDB databases of WebP images keyed by hex ids, as LSUN ships them."""
    import lmdb
    from PIL import Image

    rng = np.random.default_rng(seed)
    path.mkdir(parents=True, exist_ok=True)
    for name, n in (("bedroom_train_lmdb", n_train), ("bedroom_val_lmdb", n_val)):
        with lmdb.open(str(path / name), map_size=1 << 26, subdir=True) as env, env.begin(write=True) as txn:
            for _ in range(n):
                buf = io.BytesIO()
                Image.fromarray(rng.integers(0, 256, (size, size + 8, 3), dtype=np.uint8)).save(buf, "WEBP")
                txn.put(rng.bytes(20).hex().encode(), buf.getvalue())


def write_all(root: Path) -> None:
    """All three at the default params.yaml paths under root (data/raw/...)."""
    imagenet32(root / "data/raw/imagenet32")
    celebahq(root / "data/raw/CelebAMask-HQ")
    lsun(root / "data/raw/lsun")


def standin_counts() -> dict:
    """params.yaml large_data counts matching write_all()."""
    return {"imagenet32": {"n_train": 30, "n_test": 4}, "celebahq128": {"n_train": 6, "n_test": 2},
            "lsun_bedroom128": {"n_train": 5, "n_test": 2}}
