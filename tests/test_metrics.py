"""IS/FID/KID through torch-fidelity with the smoke classifier; Inception weights handling without network."""
import hashlib
import io
import urllib.error
import urllib.request

import numpy as np
import pytest
import torch
import torch_fidelity
from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

from ebm_repro.data import load_split, prepare_dataset
from ebm_repro.feature_net import load_feature_classifier, train_feature_classifier
from ebm_repro.metrics import INCEPTION_WEIGHTS, MetricsError, compute_inception_metrics, download_inception_weights


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """Shapes splits, a classifier trained on them, and its softmax on the test split."""
    d = tmp_path_factory.mktemp("shapes")
    prepare_dataset("shapes", d, seed=0, n_train=3000, n_test=1000)
    clf = d / "clf.pt"
    train_feature_classifier(d / "train.npz", d / "test.npz", clf, epochs=3, seed=0)
    x, _ = load_split(d / "test.npz")  # (1000, 32, 32, 3) uint8
    ref = load_split(d / "train.npz")[0][:1000]
    model, _ = load_feature_classifier(clf)
    with torch.no_grad():
        p = model(torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255).softmax(1).numpy()  # (1000, 10)
    return x, ref, clf, p


def _most_confident(p: np.ndarray, k: int, m: int) -> np.ndarray:
    """Indices of the m test images the classifier assigns to class k most confidently."""
    cand = np.where(p.argmax(1) == k)[0]
    return cand[np.argsort(-p[cand, k])[:m]]


def test_is_near_10_for_confident_uniform_and_near_1_for_one_class(smoke):
    x, ref, clf, p = smoke
    per_class = np.stack([_most_confident(p, k, 10) for k in range(10)])  # (10 classes, 10)
    assert p[per_class.reshape(-1)].max(1).min() > 0.9  # precondition: confidently labelled
    interleaved = per_class.T.reshape(-1)  # 0, 1, ..., 9, 0, 1, ...: every split holds every class twice
    r = compute_inception_metrics(x[interleaved], ref, "smoke_classifier", clf, n_splits=5, kid=False)
    # Measured 9.69 / 9.71 (classifier seeds 0 / 1); the ideal is 10 (uniform marginal, one-hot p(y|x)).
    assert 9.0 < r["IS_mean"] <= 10.0
    # The same images sorted by class: with the papers' unshuffled splits each split is a single class,
    # so IS collapses to about 1. torch-fidelity's default (shuffle) would still give about 10 here.
    sorted_by_class = per_class.reshape(-1)
    r_sorted = compute_inception_metrics(x[sorted_by_class], ref, "smoke_classifier", clf, n_splits=10, kid=False)
    assert r_sorted["IS_mean"] < 1.2 and r_sorted["samples_shuffle"] is False
    # One class only: the most confidently recognised class, 20 images.
    best = max(range(10), key=lambda k: p[_most_confident(p, k, 20), k].min())
    one = _most_confident(p, best, 20)
    r_one = compute_inception_metrics(x[one], ref, "smoke_classifier", clf, n_splits=2, kid=False)
    assert 1.0 - 1e-6 <= r_one["IS_mean"] < 1.1  # measured 1.00-1.05 across classes


def test_fid_zero_for_identical_sets_and_growing_with_damage(smoke):
    x, ref, clf, _ = smoke
    rng = np.random.default_rng(0)
    same = compute_inception_metrics(ref, ref, "smoke_classifier", clf, n_splits=10, kid=False)
    assert abs(same["FID"]) < 1e-6

    def fid(images):
        return compute_inception_metrics(images, ref, "smoke_classifier", clf, n_splits=10, kid=False)["FID"]

    def noised(sigma):
        return np.clip(x + rng.normal(0, sigma, x.shape), 0, 255).astype(np.uint8)
    real, mild, strong = fid(x), fid(noised(20)), fid(noised(50))
    shifted = fid(np.clip(x.astype(int) + 80, 0, 255).astype(np.uint8))  # washed-out colours
    # Measured: real 0.32, noise sigma 20: 14.1, sigma 50: 112.6, shifted 3.24; identical sets 8e-12.
    assert real < mild < strong and real < shifted
    assert mild > 5 * real


def test_result_dict_is_plain_and_complete(smoke):
    x, ref, clf, _ = smoke
    r = compute_inception_metrics(x[:200], ref[:300], "smoke_classifier", clf, n_splits=4)
    assert {"IS_mean", "IS_std", "FID", "KID_mean", "KID_std", "n_samples", "n_reference", "n_splits",
            "feature_net", "weights_sha256", "samples_shuffle"} <= set(r)
    assert (r["n_samples"], r["n_reference"], r["n_splits"], r["kid_subset_size"]) == (200, 300, 4, 200)
    assert r["weights_sha256"] == hashlib.sha256(clf.read_bytes()).hexdigest()
    assert all(type(v) in (int, float, str, bool) for v in r.values())


@pytest.mark.parametrize("net", ["inception", "smoke_classifier"])
def test_missing_weights_named_before_any_computation(tmp_path, monkeypatch, net):
    monkeypatch.setattr(torch_fidelity, "calculate_metrics", lambda **k: pytest.fail("computed without weights"))
    path = tmp_path / "feature_net" / "weights.pth"
    with pytest.raises(MetricsError) as e:
        compute_inception_metrics(None, None, net, path)  # weights are checked before the inputs
    assert str(path.resolve()) in str(e.value) or str(path) in str(e.value)
    if net == "inception":
        assert INCEPTION_WEIGHTS["url"] in str(e.value)


def test_inception_call_follows_the_paper_conventions(tmp_path, monkeypatch):
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"stand-in weights")
    sha = hashlib.sha256(weights.read_bytes()).hexdigest()
    monkeypatch.setitem(INCEPTION_WEIGHTS, "sha256", sha)
    seen = {}

    def fake(**kw):
        seen.update(kw)
        return {torch_fidelity.KEY_METRIC_ISC_MEAN: 1.5, torch_fidelity.KEY_METRIC_ISC_STD: 0.1,
                torch_fidelity.KEY_METRIC_FID: 2.0, torch_fidelity.KEY_METRIC_KID_MEAN: 0.3,
                torch_fidelity.KEY_METRIC_KID_STD: 0.01}
    monkeypatch.setattr(torch_fidelity, "calculate_metrics", fake)
    imgs = np.zeros((40, 32, 32, 3), np.uint8)
    r = compute_inception_metrics(imgs, imgs[:30], "inception", weights, n_splits=10, batch_size=7)
    assert seen["feature_extractor"] == "inception-v3-compat"
    assert seen["feature_extractor_weights_path"] == str(weights)
    assert (seen["isc"], seen["fid"], seen["kid"], seen["isc_splits"]) == (True, True, True, 10)
    assert seen["kid_subset_size"] == 30 and seen["batch_size"] == 7
    assert (seen["samples_shuffle"], seen["cache"], seen["verbose"], seen["cuda"]) == (False, False, False, False)
    item = seen["input1"][3]
    assert item.dtype == torch.uint8 and item.shape == (3, 32, 32) and len(seen["input2"]) == 30
    assert (r["IS_mean"], r["FID"], r["KID_mean"], r["weights_sha256"]) == (1.5, 2.0, 0.3, sha)


def test_wrong_inception_file_and_bad_inputs_fail(tmp_path):
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"not the inception weights")
    imgs = np.zeros((20, 32, 32, 3), np.uint8)
    with pytest.raises(MetricsError, match="sha256 .* expected 6726825d0af5f729"):
        compute_inception_metrics(imgs, imgs, "inception", weights)
    with pytest.raises(MetricsError, match="uint8"):
        compute_inception_metrics(imgs.astype(np.float32), imgs, "smoke_classifier", weights)
    with pytest.raises(MetricsError, match="feature_net"):
        compute_inception_metrics(imgs, imgs, "vgg", weights)


def test_inception_spec_matches_installed_torch_fidelity():
    assert INCEPTION_WEIGHTS["url"] == URL_INCEPTION_V3
    assert URL_INCEPTION_V3.endswith("/" + INCEPTION_WEIGHTS["filename"])
    assert INCEPTION_WEIGHTS["filename"].endswith(f"-{INCEPTION_WEIGHTS['sha256'][:8]}.pth")


def _serve(monkeypatch, payload: bytes, asked: list):
    def urlopen(url, timeout=None):
        asked.append(url)
        return io.BytesIO(payload)
    monkeypatch.setattr(urllib.request, "urlopen", urlopen)


def test_download_inception_weights_verifies_the_hash(tmp_path, monkeypatch):
    payload, asked = b"pretend inception weights", []
    monkeypatch.setitem(INCEPTION_WEIGHTS, "sha256", hashlib.sha256(payload).hexdigest())
    _serve(monkeypatch, payload, asked)
    dest = tmp_path / "fn" / "inception.pth"
    info = download_inception_weights(dest)
    assert dest.read_bytes() == payload and asked == [INCEPTION_WEIGHTS["url"]]
    assert info["sha256"] == hashlib.sha256(payload).hexdigest()
    assert download_inception_weights(dest) == info and len(asked) == 1  # present and valid: reused

    _serve(monkeypatch, b"an error page", asked)
    bad = tmp_path / "fn" / "other.pth"
    with pytest.raises(MetricsError, match="delete it and rerun"):
        download_inception_weights(bad)
    assert sorted(p.name for p in dest.parent.iterdir()) == ["inception.pth"]  # no bad file, no temp file


def test_download_inception_weights_offline(tmp_path, monkeypatch):
    def refuse(*a, **k):
        raise urllib.error.URLError("network is unreachable")
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    dest = tmp_path / "inception.pth"
    with pytest.raises(MetricsError) as e:
        download_inception_weights(dest)
    assert INCEPTION_WEIGHTS["url"] in str(e.value) and str(dest.resolve()) in str(e.value)
    assert list(tmp_path.iterdir()) == []


def test_grayscale_images_are_scored_as_their_rgb_copies(smoke):
    """MNIST (ICD App. D.1): 1-channel images go to the feature net as the channel copied to R, G and B."""
    x, ref, clf, _ = smoke
    gray = x[:100].mean(-1, keepdims=True).round().astype(np.uint8)  # (100, 32, 32, 1)
    rgb = np.repeat(gray, 3, axis=-1)
    a = compute_inception_metrics(gray, ref, "smoke_classifier", clf, n_splits=5, kid=False)
    b = compute_inception_metrics(rgb, ref, "smoke_classifier", clf, n_splits=5, kid=False)
    assert (a["IS_mean"], a["FID"]) == (b["IS_mean"], b["FID"])
    with pytest.raises(MetricsError, match="3 or 1"):
        compute_inception_metrics(x[:20, :, :, :2].copy(), ref, "smoke_classifier", clf, n_splits=2, kid=False)


# ----------------------------------------------------------------------------- closed forms through our call
class _PixelFeatures(torch_fidelity.FeatureExtractorBase):
    """Test extractor: 'pool' = the 12 pixel values of a 2x2x3 image; 'logits' = its first two values - 128."""

    def __init__(self, name, features_list, **kwargs):
        super().__init__(name, features_list)

    @staticmethod
    def get_provided_features_list():
        return "pool", "logits"

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return {"isc": "logits", "fid": "pool", "kid": "pool"}[metric]

    @staticmethod
    def can_be_compiled():
        return False

    @staticmethod
    def get_dummy_input_for_compile():
        return torch.zeros(1, 3, 2, 2, dtype=torch.uint8)

    def forward(self, x):
        f = x.flatten(1).double()                                          # (B, 12)
        feats = {"pool": f, "logits": f[:, :2] - 128.0}
        return tuple(feats[k] for k in self.features_list)


@pytest.fixture
def pixel_features(tmp_path, monkeypatch):
    """compute_inception_metrics with the smoke path routed to _PixelFeatures (features we can write by hand)."""
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

    import ebm_repro.feature_net as fn

    name = "ebm-repro-test-pixels"
    if name not in FEATURE_EXTRACTORS_REGISTRY:
        torch_fidelity.register_feature_extractor(name, _PixelFeatures)
    monkeypatch.setattr(fn, "register_smoke_classifier", lambda: name)
    weights = tmp_path / "unused.pt"
    weights.write_bytes(b"the pixel extractor has no weights")
    return lambda a, b, **kw: compute_inception_metrics(a, b, "smoke_classifier", weights, kid=False, **kw)


def _factorial(levels: tuple[int, int]) -> np.ndarray:
    """All 2^12 images whose 12 pixels each take one of two levels: exactly independent, equal-variance features."""
    bits = (np.arange(4096)[:, None] >> np.arange(12)) & 1                 # (4096, 12)
    return np.where(bits, levels[1], levels[0]).astype(np.uint8).reshape(4096, 2, 2, 3)


def test_fid_of_two_gaussians_matches_the_closed_form(pixel_features):
    # FID = |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)); with diagonal covariances s1 I, s2 I over d = 12 features:
    # d (dmu^2 + s1 + s2 - 2 sqrt(s1 s2)). Levels {100, 140}: mean 120, var 400; {110, 170}: mean 140, var 900;
    # np.cov's n - 1 makes s = var * n / (n - 1). Without the covariance term it would be d * 400 = 4800.
    n, d = 4096, 12
    s1, s2 = 400 * n / (n - 1), 900 * n / (n - 1)
    want = d * (20 ** 2 + s1 + s2 - 2 * (s1 * s2) ** 0.5)                # = 6000.4...
    got = pixel_features(_factorial((100, 140)), _factorial((110, 170)), n_splits=2)["FID"]
    assert got == pytest.approx(want, rel=1e-6)


def test_is_mean_and_std_over_splits_match_a_hand_count(pixel_features):
    # logits (+100 / -100) make p(y|x) one-hot. Split 1: classes 0 and 1 equally -> IS = exp(log 2) = 2;
    # split 2: class 0 only -> IS = 1. Mean 1.5, std (population, as torch-fidelity) 0.5.
    one_hot = []
    for c in [0, 1] * 10 + [0] * 20:
        im = np.full((2, 2, 3), 28, np.uint8)                              # (H, W, C): logits from red at (0, 0), (0, 1)
        im[0, c, 0] = 228
        one_hot.append(im)
    x = np.stack(one_hot)                                                  # (40, 2, 2, 3): split 1 mixed, split 2 not
    r = pixel_features(x, x, n_splits=2)
    assert r["IS_mean"] == pytest.approx(1.5, abs=1e-9) and r["IS_std"] == pytest.approx(0.5, abs=1e-9)
    # ICD's order: shuffled before splitting, the two splits mix and the std collapses
    r = pixel_features(x, x, n_splits=2, shuffle=True)
    assert r["samples_shuffle"] is True and r["IS_std"] < 0.2
