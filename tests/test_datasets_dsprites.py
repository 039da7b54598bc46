"""dSprites: the latent grid, the procedural renderer against the latent definitions, the checksummed archive path."""
from __future__ import annotations

import hashlib
import subprocess
import zipfile

import numpy as np
import pytest

from ebm_repro import datasets_dsprites as D
from ebm_repro.data import DatasetError, load_split, prepare_dataset


def values(shape: int, scale: float, theta: float, px: float, py: float) -> np.ndarray:
    return np.array([[1.0, shape, scale, theta, px, py]])


def area(v: np.ndarray) -> int:
    return int(D.render(v).sum())


def centroid(img: np.ndarray) -> tuple[float, float]:
    rows, cols = np.nonzero(img)
    return cols.mean() + 0.5, rows.mean() + 0.5      # pixel centres, (x across, y down)


# ----------------------------------------------------------------------------- the grid
def test_grid_indices_and_latents_round_trip():
    assert D.N_IMAGES == 737280 and D.GRID == (1, 3, 6, 40, 32, 32)
    idx = np.array([0, 1, 32, 1024, D.N_IMAGES - 1])
    c = D.latent_classes(idx)
    assert c[0].tolist() == [0] * 6 and c[1].tolist() == [0, 0, 0, 0, 0, 1] and c[2].tolist() == [0, 0, 0, 0, 1, 0]
    assert c[3].tolist() == [0, 0, 0, 1, 0, 0] and c[4].tolist() == [0, 2, 5, 39, 31, 31]
    np.testing.assert_array_equal(D.grid_index(c), idx)
    v = D.latent_values(c[4:])[0]
    np.testing.assert_allclose(v, [1.0, 3.0, 1.0, 2 * np.pi, 1.0, 1.0])
    assert D.VALUES[2][1] == pytest.approx(0.6) and D.VALUES[3][1] == pytest.approx(0.16110732)  # archive metadata
    with pytest.raises(ValueError, match="grid indices"):
        D.latent_classes(np.array([D.N_IMAGES]))


# ----------------------------------------------------------------------------- renderer vs the latent definitions
@pytest.mark.parametrize("shape", [1, 2, 3])
def test_area_grows_with_scale_squared(shape):
    areas = [area(values(shape, s, 0.0, 0.5, 0.5)) for s in D.VALUES[2]]
    assert all(a < b for a, b in zip(areas, areas[1:]))
    assert areas[-1] / areas[0] == pytest.approx(4.0, rel=0.12)        # (1.0 / 0.5)^2 up to pixelation
    side = D.HALF * 64 * 2                                              # scale-1 square: 19.2 px wide
    if shape == 1:
        assert areas[-1] == pytest.approx(side ** 2, rel=0.1)


def test_centroid_follows_position_linearly_across_the_middle_half():
    for j, p in enumerate(D.VALUES[4]):
        cx, cy = centroid(D.render(values(1, 0.7, 0.0, p, 0.5))[0])
        assert cx == pytest.approx(64 * (0.25 + 0.5 * p), abs=0.6), j      # square: centroid = centre
        assert cy == pytest.approx(32.0, abs=0.6)
        cx, cy = centroid(D.render(values(1, 0.7, 0.0, 0.5, p))[0])
        assert cy == pytest.approx(64 * (0.25 + 0.5 * p), abs=0.6) and cx == pytest.approx(32.0, abs=0.6)
    hx = [centroid(D.render(values(3, 1.0, 1.0, p, 0.3))[0])[0] for p in D.VALUES[4]]
    assert np.polyfit(D.VALUES[4], hx, 1)[0] == pytest.approx(32.0, rel=0.03)   # any shape: 32 px per unit


def test_every_sprite_stays_inside_the_frame():
    corners = np.array([[1.0, s, 1.0, t, p, q] for s in (1, 2, 3) for t in np.linspace(0, 2 * np.pi, 16)
                        for p in (0.0, 1.0) for q in (0.0, 1.0)])              # the largest sprites in the corners
    imgs = D.render(corners)
    assert imgs[:, 0].sum() == imgs[:, -1].sum() == imgs[:, :, 0].sum() == imgs[:, :, -1].sum() == 0


def test_orientation_turns_the_ellipse_counter_clockwise():
    for theta in D.VALUES[3][:20]:
        img = D.render(values(2, 1.0, theta, 0.5, 0.5))[0]
        rows, cols = np.nonzero(img)
        x, y = cols - cols.mean(), -(rows - rows.mean())               # y up on screen
        cov = np.cov(np.stack([x, y]))
        w, v = np.linalg.eigh(cov)
        major = np.arctan2(v[1, 1], v[0, 1])                            # eigenvector of the larger eigenvalue
        diff = (major - theta + np.pi / 2) % np.pi - np.pi / 2          # axis: mod pi
        assert abs(np.degrees(diff)) < 4, np.degrees(theta)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_symmetries_square_quarter_turn_ellipse_half_turn_heart_none():
    for theta in (0.3, 1.1, 2.0):
        sq = D.render(np.vstack([values(1, 1.0, theta, 0.5, 0.5), values(1, 1.0, theta + np.pi / 2, 0.5, 0.5)]))
        el = D.render(np.vstack([values(2, 1.0, theta, 0.5, 0.5), values(2, 1.0, theta + np.pi, 0.5, 0.5)]))
        he = D.render(np.vstack([values(3, 1.0, theta, 0.5, 0.5), values(3, 1.0, theta + np.pi, 0.5, 0.5)]))
        assert _iou(*sq) > 0.9 and _iou(*el) > 0.9 and _iou(*he) < 0.75
    quarter = D.render(np.vstack([values(2, 1.0, 0.0, 0.5, 0.5), values(2, 1.0, np.pi / 2, 0.5, 0.5)]))
    assert _iou(*quarter) < 0.6                                          # an ellipse is not quarter-turn symmetric


def test_mean_pixel_is_close_to_the_archives():
    # disentanglement loaders quote the archive's mean pixel value 0.0425; ours over a random grid sample:
    rng = np.random.default_rng(0)
    imgs = D.render(D.latent_values(D.latent_classes(rng.choice(D.N_IMAGES, 3000, replace=False))))
    assert imgs.mean() == pytest.approx(0.0425, rel=0.05)


# ----------------------------------------------------------------------------- generated splits
def test_generated_splits_hold_rendered_grid_points(tmp_path):
    info = prepare_dataset("dsprites_gen", tmp_path / "a", seed=3, n_train=40, n_test=10)
    images, labels = load_split(tmp_path / "a" / "train.npz")
    t_images, t_labels = load_split(tmp_path / "a" / "test.npz")
    assert images.shape == (40, 64, 64, 1) and set(np.unique(images)) <= {0, 255}
    assert len(set(labels) | set(t_labels)) == 50                       # distinct grid points, disjoint splits
    np.testing.assert_array_equal(images[..., 0] // 255, D.render(D.latent_values(D.latent_classes(labels))))
    with zipfile.ZipFile(tmp_path / "a" / "train.npz") as z:
        assert all(i.compress_type == zipfile.ZIP_DEFLATED for i in z.infolist())
    again = prepare_dataset("dsprites_gen", tmp_path / "b", seed=3, n_train=40, n_test=10)
    assert again["train.npz"] == info["train.npz"] and info["source"]["labels"] == "dSprites grid index"


# ----------------------------------------------------------------------------- the archive path (a small fake)
SMALL = (1, 3, 2, 2, 2, 2)


@pytest.fixture
def fake_archive(tmp_path, monkeypatch):
    """An npz in the archive's layout over a 48-point grid (plain arrays + a pickled metadata dict)."""
    monkeypatch.setattr(D, "GRID", SMALL)
    monkeypatch.setattr(D, "N_IMAGES", int(np.prod(SMALL)))
    classes = D.latent_classes(np.arange(D.N_IMAGES))
    imgs = D.render(D.latent_values(classes))
    path = tmp_path / "src" / "dsprites.npz"
    path.parent.mkdir()
    meta = np.empty((), dtype=object)
    meta[()] = {"title": "dSprites dataset"}
    np.savez_compressed(path, imgs=imgs, latents_classes=classes, latents_values=D.latent_values(classes),
                        metadata=meta)
    spec = {**D.ARCHIVE, "urls": (f"file://{tmp_path}/missing.npz", f"file://{path}"), "test_frac": 0.25,
            **D.archive_digests(path)}
    monkeypatch.setattr(D, "ARCHIVE", spec)
    return path, imgs, classes, spec


def test_git_blob_digest_is_gits_own(fake_archive):
    path, *_ = fake_archive
    out = subprocess.run(["git", "hash-object", str(path)], capture_output=True, text=True, check=True).stdout.strip()
    assert D.archive_digests(path)["git_blob_sha1"] == out
    assert D.archive_digests(path)["md5"] == hashlib.md5(path.read_bytes()).hexdigest()


def test_archive_is_fetched_from_the_first_working_url_verified_and_split(fake_archive, tmp_path):
    path, imgs, classes, spec = fake_archive
    info = prepare_dataset("dsprites", tmp_path / "out", seed=0)
    assert (tmp_path / "out" / "raw" / spec["filename"]).read_bytes() == path.read_bytes()
    train, train_idx = load_split(tmp_path / "out" / "train.npz")
    test, test_idx = load_split(tmp_path / "out" / "test.npz")
    assert len(test_idx) == 12 and len(train_idx) == 36 and not set(train_idx) & set(test_idx)
    np.testing.assert_array_equal(train[..., 0], imgs[train_idx] * 255)   # label = the image's row in the archive
    assert info["source"]["md5"] == spec["md5"]


def test_a_corrupt_archive_is_refused_naming_both_digests(fake_archive, tmp_path):
    path, *_ = fake_archive
    bad = tmp_path / "bad.npz"
    raw = bytearray(path.read_bytes())
    raw[100] ^= 0xFF
    bad.write_bytes(bytes(raw))
    with pytest.raises(DatasetError, match="md5 .* git_blob_sha1"):
        D.verify_archive(bad, D.ARCHIVE)


def test_an_archive_out_of_grid_order_is_refused(fake_archive, tmp_path):
    path, imgs, classes, spec = fake_archive
    shuffled = tmp_path / "shuffled.npz"
    np.savez(shuffled, imgs=imgs, latents_classes=classes[::-1])
    with pytest.raises(DatasetError, match="grid"):
        D.read_archive(shuffled)
    D.read_archive(path)   # the pickled metadata is never unpickled: allow_pickle=False suffices


def test_no_url_works_gives_a_message_naming_where_to_put_the_file(fake_archive, tmp_path, monkeypatch):
    *_, spec = fake_archive
    monkeypatch.setattr(D, "ARCHIVE", {**spec, "urls": (f"file://{tmp_path}/nope.npz",)})
    with pytest.raises(DatasetError, match="place it at exactly .*raw"):
        prepare_dataset("dsprites", tmp_path / "out2", seed=0)
