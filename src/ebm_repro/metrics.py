"""IS / FID / KID through torch-fidelity: TF-faithful Inception-v3 (paper setting) or the smoke classifier."""
from __future__ import annotations

import contextlib
import http.client
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ebm_repro.checkpoint import file_digest
from ebm_repro.data import download


class MetricsError(RuntimeError):
    """Metrics cannot be computed as asked; the message says what is missing and how to fix it."""


# As torch-fidelity 0.4.0 defines them (feature_extractor_inceptionv3.URL_INCEPTION_V3). The 8 hex digits in
# the file name are the start of its sha256 (torch.hub naming convention); torch-fidelity itself never checks
# them (load_state_dict_from_url without check_hash) and unpickles the file with torch.load(weights_only=False),
# so we pin the whole sha256: 32 bits of prefix could be matched by a crafted file that runs code when loaded.
INCEPTION_WEIGHTS = {
    "name": "pt_inception-2015-12-05",
    "url": "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
           "weights-inception-2015-12-05-6726825d.pth",
    "filename": "weights-inception-2015-12-05-6726825d.pth",
    "sha256": "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2",
    "feature_extractor": "inception-v3-compat",
}

FEATURE_NETS = ("inception", "smoke_classifier")


def _check_inception_hash(path: Path, sha: str) -> None:
    """Raise MetricsError unless sha is the pinned sha256 of the Inception weights."""
    want = INCEPTION_WEIGHTS["sha256"]
    if sha != want:
        raise MetricsError(
            f"{path} has sha256 {sha}, expected {want} ({INCEPTION_WEIGHTS['name']}). "
            f"Fix: delete it and rerun to download {INCEPTION_WEIGHTS['url']} again, or put that file there.")


def download_inception_weights(dest: Path) -> dict:
    """Fetch torch-fidelity's Inception-v3 weights to dest (reused if present), verify; return path, sha256."""
    dest = Path(dest)
    url = INCEPTION_WEIGHTS["url"]
    if not dest.is_file():
        try:  # the hash is checked before the rename: no bad file at dest
            download(url, dest, verify=lambda tmp: _check_inception_hash(tmp, file_digest(tmp)))
        except (urllib.error.URLError, http.client.HTTPException, OSError) as err:
            raise MetricsError(
                f"could not download the Inception-v3 weights from {url} ({err!r}). Without network access, "
                f"fetch that file elsewhere and place it at exactly {dest.resolve()}, then rerun.") from err
    sha = file_digest(dest)
    _check_inception_hash(dest, sha)
    return {"path": str(dest), "sha256": sha}


class _UInt8Images(Dataset):
    """uint8 (N, H, W, 3 or 1) array -> uint8 (3, H, W) tensors, torch-fidelity's input convention."""

    def __init__(self, images: np.ndarray):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(self.images[i].transpose(2, 0, 1)))  # (C, H, W)
        # grayscale (MNIST, ICD App. D.1): the usual convention for Inception features, the channel copied to RGB
        return x.expand(3, -1, -1).contiguous() if x.shape[0] == 1 else x


def _check_images(name: str, a: np.ndarray, n_splits: int) -> None:
    if not isinstance(a, np.ndarray) or a.dtype != np.uint8 or a.ndim != 4 or a.shape[-1] not in (1, 3):
        got = f"{a.dtype} {a.shape}" if isinstance(a, np.ndarray) else type(a).__name__
        raise MetricsError(f"{name} must be a uint8 array (N, H, W, 3 or 1), got {got}")
    if len(a) < max(n_splits, 2):
        raise MetricsError(f"{name} has {len(a)} images; IS with {n_splits} splits and FID need at least "
                           f"{max(n_splits, 2)}")


def _missing_weights_message(feature_net: str, path: Path) -> str:
    if feature_net == "inception":
        return (f"Inception-v3 weights not found at {path}. Download {INCEPTION_WEIGHTS['url']} "
                f"({INCEPTION_WEIGHTS['name']}, sha256 {INCEPTION_WEIGHTS['sha256']}) and place it "
                f"at exactly {path.resolve()} (the prepare-feature-net step does this when online).")
    return (f"smoke feature classifier not found at {path}; create it there with the prepare-feature-net step "
            f"(ebm_repro.feature_net.train_feature_classifier on the shapes data).")


def compute_inception_metrics(samples: np.ndarray, reference: np.ndarray, feature_net: str, weights_path: Path,
                              n_splits: int = 10, batch_size: int = 100, device: str = "cpu",
                              kid: bool = True, shuffle: bool = False) -> dict:
    """IS of samples; FID (and KID) of samples vs reference; all in feature_net's feature space."""
    if feature_net not in FEATURE_NETS:
        raise MetricsError(f"feature_net must be one of {FEATURE_NETS}, got {feature_net!r}")
    weights_path = Path(weights_path)
    if not weights_path.is_file():  # checked before any array or network work
        raise MetricsError(_missing_weights_message(feature_net, weights_path))
    _check_images("samples", samples, n_splits)
    _check_images("reference", reference, n_splits)
    sha = file_digest(weights_path)
    if feature_net == "inception":
        _check_inception_hash(weights_path, sha)
        extractor = INCEPTION_WEIGHTS["feature_extractor"]
    else:
        from ebm_repro.feature_net import register_smoke_classifier
        extractor = register_smoke_classifier()

    import torch_fidelity

    dev = torch.device(device)
    kwargs = dict(
        input1=_UInt8Images(samples), input2=_UInt8Images(reference),
        feature_extractor=extractor, feature_extractor_weights_path=str(weights_path),
        isc=True, fid=True, kid=kid, isc_splits=n_splits,
        # IGEBM test_inception.py scores the images in generation order; ICD's shuffles them first
        samples_shuffle=shuffle, rng_seed=2020,
        cache=False, verbose=False, batch_size=batch_size,
        cuda=dev.type == "cuda",  # torch-fidelity defaults to cuda=True; only cpu/cuda exist for it
        save_cpu_ram=True,  # num_workers=0: the arrays are in memory, worker processes would only cost
    )
    if kid:  # torch-fidelity's default subset size (1000) must not exceed either set
        kwargs["kid_subset_size"] = min(1000, len(samples), len(reference))
    # torch-fidelity moves tensors with .cuda(), i.e. to the current device; make that the asked one.
    ctx = torch.cuda.device(dev) if dev.type == "cuda" else contextlib.nullcontext()
    with ctx:
        raw = torch_fidelity.calculate_metrics(**kwargs)
    out = {
        "IS_mean": raw[torch_fidelity.KEY_METRIC_ISC_MEAN],
        "IS_std": raw[torch_fidelity.KEY_METRIC_ISC_STD],
        "FID": raw[torch_fidelity.KEY_METRIC_FID],
    }
    if kid:
        out.update(KID_mean=raw[torch_fidelity.KEY_METRIC_KID_MEAN], KID_std=raw[torch_fidelity.KEY_METRIC_KID_STD],
                   kid_subset_size=kwargs["kid_subset_size"])
    out.update(n_samples=len(samples), n_reference=len(reference), n_splits=n_splits, feature_net=feature_net,
               feature_extractor=extractor, weights_sha256=sha, samples_shuffle=shuffle)
    return {k: (float(v) if isinstance(v, (np.floating, float)) else v) for k, v in out.items()}


def pool_features(images: np.ndarray, feature_net: str, weights_path: Path, batch_size: int = 100,
                  device: str = "cpu") -> torch.Tensor:
    """uint8 (N, H, W, C) -> float32 (N, D): the features FID compares (Inception pool3, D = 2048; smoke: pool)."""
    if feature_net not in FEATURE_NETS:
        raise MetricsError(f"feature_net must be one of {FEATURE_NETS}, got {feature_net!r}")
    weights_path = Path(weights_path)
    if not weights_path.is_file():
        raise MetricsError(_missing_weights_message(feature_net, weights_path))
    _check_images("images", images, 1)
    if feature_net == "inception":
        _check_inception_hash(weights_path, file_digest(weights_path))
        extractor, layer = INCEPTION_WEIGHTS["feature_extractor"], "2048"
    else:
        from ebm_repro.feature_net import register_smoke_classifier
        extractor, layer = register_smoke_classifier(), "pool"

    from torch_fidelity.utils import create_feature_extractor, get_featuresdict_from_dataset

    dev = torch.device(device)
    cuda = dev.type == "cuda"
    ctx = torch.cuda.device(dev) if cuda else contextlib.nullcontext()
    with ctx:  # torch-fidelity moves nets and batches with .cuda(): the current device
        net = create_feature_extractor(extractor, [layer], cuda=cuda, verbose=False,
                                       feature_extractor_weights_path=str(weights_path))
        feats = get_featuresdict_from_dataset(_UInt8Images(images), net, batch_size, cuda, save_cpu_ram=True,
                                              verbose=False)
    return feats[layer].float()
