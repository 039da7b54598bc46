"""IGEBM authors' TF checkpoints: a checkpoint with their variable names and shapes (tiny widths), written here,
converts strictly, and our converted layers and whole nets give the outputs of TF ops on the same inputs.

The variable layout and the reference forward below are our own reading of openai/ebm_code_release @051850e
(utils.py get_weight / spectral_normed_weight / init_*_weight / conv_block / smart_res_block, models.py ResNet32
and ResNet32Large), written with TF ops; no code of theirs is copied. Needs the [tf] extra (CI: pip install -e .[tf]).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

tf = pytest.importorskip("tensorflow")

from ebm_repro import checkpoint as ck  # noqa: E402
from ebm_repro.authors import AuthorsCheckpointError, import_checkpoint  # noqa: E402
from ebm_repro.config import RunConfig, resolve  # noqa: E402
from ebm_repro.generate import load_models  # noqa: E402
from ebm_repro.models import make_model  # noqa: E402
from ebm_repro.models.igebm import COND_BLOCKS, LARGE_BLOCKS  # noqa: E402
from ebm_repro.params import load_params

torch.set_num_threads(1)
S = "context_0/"
SCOPES = {"igebm_resnet32_large": ["res_optim"] + [f"res_{i}" for i in range(1, 9)],
          "igebm_resnet32": ["res_optim"] + [f"res_{i}" for i in range(1, 6)]}
BLOCKS = {"igebm_resnet32_large": LARGE_BLOCKS, "igebm_resnet32": COND_BLOCKS}


def variant_cfg(variant: str, width: int, **model) -> RunConfig:
    cfg = resolve(load_params(), variant, setting="smoke")
    return dataclasses.replace(cfg, hp=dataclasses.replace(
        cfg.hp, model=dataclasses.replace(cfg.hp.model, width=width, **model)))


# ----------------------------------------------------------------------------- their layout, written here
def conv_vars(v: dict, scope: str, c_in: int, c_out: int, classes: int, rng, sn: bool = True,
              used: tuple[str, ...] = (), kernel_scale: float = 1.0) -> None:
    """init_conv_weight: cweight HWIO, c_u (1, O), b (O), g, gb (classes rows or flat), cb (I).

    Variables the forward reads (`used`) get random values; the rest keep their initial values, as in training.
    """
    rows = (lambda d: (classes, d)) if classes > 1 else (lambda d: (d,))
    v[f"{S}{scope}/cweight"] = rng.normal(size=(3, 3, c_in, c_out)) * kernel_scale
    if sn:
        v[f"{S}{scope}/c_u"] = rng.normal(size=(1, c_out))
    init = {"b": np.zeros(c_out), "g": np.ones(rows(c_out)), "gb": np.zeros(rows(c_in)), "cb": np.zeros(c_in)}
    for name, val in init.items():
        v[f"{S}{scope}/{name}"] = rng.normal(size=val.shape) if name in used else val


def authors_variables(arch: str, f: int, classes: int, seed: int = 0, sn: bool = True,
                      zero_conv_scale: float = 1.0) -> dict[str, np.ndarray]:
    """Every variable their train.py saves for ResNet32Large / ResNet32 (+ Adam slots), float32."""
    rng = np.random.default_rng(seed)
    v: dict[str, np.ndarray] = {}
    conv_vars(v, "c1_pre", 3, f, 1, rng, sn)  # c1_pre is built without `classes` (models.py:207/283)
    for scope, (a, b, _) in zip(SCOPES[arch], BLOCKS[arch]):
        conv_vars(v, f"{scope}_res_c1", a * f, b * f, classes, rng, sn, used=("gb",))
        conv_vars(v, f"{scope}_res_c2", b * f, b * f, classes, rng, sn,
                  used=("gb", "g", "cb") if classes > 1 else ("gb", "g"), kernel_scale=zero_conv_scale)
        if a != b:
            conv_vars(v, f"{scope}_res_adaptive", a * f, b * f, classes, rng, sn)
    c_last = BLOCKS[arch][-1][1] * f
    v[f"{S}fc5/wweight"], v[f"{S}fc5/b"] = rng.normal(size=(c_last, 1)) * 0.1, rng.normal(size=(1,))
    k = f // 2 if arch == "igebm_resnet32" else f
    for part, width in (("q", k), ("k", k), ("v", 2 * f)):
        v[f"{S}atten/atten_{part}weight"] = rng.normal(size=(1, 1, 2 * f, width))
        if sn:
            v[f"{S}atten/atten_{part}_u"] = rng.normal(size=(1, width))
        v[f"{S}atten/atten_{part}_b1"] = np.zeros(width)
    v[f"{S}atten/gamma"] = np.zeros(1)
    if arch == "igebm_resnet32":
        v[f"{S}fc_dense/wweight"] = rng.normal(size=(4 * 4 * 2 * f, 4 * f))
        if sn:
            v[f"{S}fc_dense/w_u"] = rng.normal(size=(1, 4 * f))
        v[f"{S}fc_dense/b"] = np.zeros(4 * f)
    for name in [n for n in v if not n.endswith("_u")]:  # Adam moments of the trainable variables
        v[name + "/Adam"], v[name + "/Adam_1"] = np.abs(rng.normal(size=v[name].shape)), rng.normal(size=v[name].shape)
    v["beta1_power"], v["beta2_power"] = np.zeros(()), np.array(0.5)
    return {k: np.asarray(a, np.float32) for k, a in v.items()}


def save_tf(prefix: Path, v: dict[str, np.ndarray]) -> Path:
    """A TF checkpoint (prefix.index + prefix.data-*) holding exactly these names, as tf.train.Saver writes."""
    names = sorted(v)
    tf.raw_ops.SaveV2(prefix=str(prefix), tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=[tf.constant(v[n]) for n in names])
    return prefix


# ----------------------------------------------------------------------------- their forward, in TF ops
def tf_sn(w, u, lower_bound: bool):
    """The code's spectral normalisation, re-derived: one power step from u, sigma, W / sigma (lower bound: capped)."""
    shape = w.shape
    wm = tf.reshape(w, [-1, shape[-1]])
    v_hat = tf.nn.l2_normalize(tf.matmul(u, tf.transpose(wm)))
    u_hat = tf.nn.l2_normalize(tf.matmul(v_hat, wm))
    sigma = tf.matmul(tf.matmul(v_hat, wm), tf.transpose(u_hat))
    if lower_bound:
        sigma = sigma + 1e-6
        wn = wm / sigma * tf.minimum(sigma, 1.0)
    else:
        wn = wm / sigma
    return tf.reshape(wn, shape)


def tf_conv(x, v, scope, lower_bound=False, sn=True):
    w = tf.constant(v[f"{S}{scope}/cweight"])
    if sn:
        w = tf_sn(w, tf.constant(v[f"{S}{scope}/c_u"]), lower_bound)
    return tf.nn.conv2d(x, w, strides=1, padding="SAME")


def tf_class_vec(v, name, label, classes):
    t = tf.constant(v[name])
    if classes == 1:
        return t                                                 # (C,), broadcast over the batch
    return tf.reshape(tf.matmul(label, t), (-1, 1, 1, t.shape[-1]))


def tf_block(x, v, scope, label, classes, down, adaptive, sn=True):
    c1, c2 = f"{scope}_res_c1", f"{scope}_res_c2"
    h = tf_conv(x + tf_class_vec(v, f"{S}{c1}/gb", label, classes), v, c1, sn=sn)
    h = tf.nn.leaky_relu(h)
    h = tf_conv(h + tf_class_vec(v, f"{S}{c2}/gb", label, classes), v, c2, lower_bound=True, sn=sn)
    if classes == 1:
        scale = tf.constant(v[f"{S}{c2}/g"])
    else:
        scale = tf.reshape(tf.matmul(label, tf.constant(v[f"{S}{c2}/g"])) + v[f"{S}{c2}/cb"],
                           (-1, 1, 1, v[f"{S}{c2}/g"].shape[-1]))
    h = h * scale
    res = h + (tf_conv(x, v, f"{scope}_res_adaptive", sn=sn) if adaptive else x)
    if down:
        res = tf.nn.avg_pool(res, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
    return tf.nn.leaky_relu(res)


def tf_energy(v, arch, x_nchw: torch.Tensor, y: torch.Tensor | None, classes: int, sn=True) -> np.ndarray:
    x = tf.constant(x_nchw.permute(0, 2, 3, 1).numpy())
    label = None if y is None else tf.constant(np.eye(classes, dtype=np.float32)[y.numpy()])
    h = tf.nn.leaky_relu(tf_conv(x, v, "c1_pre", sn=sn))
    for scope, (a, b, down) in zip(SCOPES[arch], BLOCKS[arch]):
        h = tf_block(h, v, scope, label, classes, down, adaptive=a != b, sn=sn)
    h = tf.reduce_sum(tf.nn.relu(h), [1, 2])
    return (tf.matmul(h, tf.constant(v[f"{S}fc5/wweight"])) + v[f"{S}fc5/b"]).numpy()[:, 0]


def imported_net(cfg: RunConfig, prefix: Path, out: Path) -> torch.nn.Module:
    import_checkpoint("igebm_tf", cfg, prefix, out)
    net = make_model(cfg.hp.model)
    ck.load_state_strict(net, torch.load(out, weights_only=True)["model"], str(out))
    return net.eval()


# ----------------------------------------------------------------------------- layer parity
@pytest.mark.parametrize("zero_conv_scale", [1.0, 1e-3])  # sigma of the zero-init conv above / below 1
def test_converted_layers_match_the_tf_ops(tmp_path, zero_conv_scale):
    """Conv (HWIO -> OIHW, their u -> our u, v), the lower-bound conv and the dense head, one layer at a time."""
    cfg = variant_cfg("igebm_uncond", 4)
    v = authors_variables("igebm_resnet32_large", 4, 1, zero_conv_scale=zero_conv_scale)
    net = imported_net(cfg, save_tf(tmp_path / "model_300", v), tmp_path / "model.pt")
    x = torch.randn(3, 3, 8, 8)
    h = torch.randn(3, 4, 8, 8)
    nhwc = lambda t: tf.constant(t.permute(0, 2, 3, 1).numpy())  # noqa: E731
    back = lambda t: torch.from_numpy(t.numpy()).permute(0, 3, 1, 2)  # noqa: E731
    with torch.no_grad():
        torch.testing.assert_close(net.stem(x), back(tf_conv(nhwc(x), v, "c1_pre")), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(net.blocks[0].conv2(h),
                                   back(tf_conv(nhwc(h), v, "res_optim_res_c2", lower_bound=True)),
                                   atol=1e-5, rtol=1e-5)
        hs = torch.randn(3, 8, 4, 4)
        torch.testing.assert_close(net.blocks[6].shortcut(hs), back(tf_conv(nhwc(hs), v, "res_6_res_adaptive")),
                                   atol=1e-5, rtol=1e-5)
        z = torch.randn(5, 16)
        ref = tf.matmul(tf.constant(z.numpy()), tf.constant(v[f"{S}fc5/wweight"])) + v[f"{S}fc5/b"]
        torch.testing.assert_close(net.head(z), torch.from_numpy(ref.numpy()), atol=1e-5, rtol=1e-5)
    # eval mode did no power iteration: the first forward already used the TF op's normalised weight
    w_tf = tf_sn(tf.constant(v[f"{S}c1_pre/cweight"]), tf.constant(v[f"{S}c1_pre/c_u"]), False).numpy()
    torch.testing.assert_close(net.stem.weight, torch.from_numpy(w_tf.transpose(3, 2, 0, 1)), atol=1e-6, rtol=1e-5)


# ----------------------------------------------------------------------------- whole nets
@pytest.mark.parametrize("variant,arch,classes", [("igebm_uncond", "igebm_resnet32_large", 1),
                                                  ("igebm_cond", "igebm_resnet32", 10)])
def test_whole_net_energy_matches_the_tf_forward(tmp_path, variant, arch, classes):
    cfg = variant_cfg(variant, 4)
    v = authors_variables(arch, 4, classes, seed=1)
    net = imported_net(cfg, save_tf(tmp_path / "model_121200", v), tmp_path / "model.pt")
    x = torch.rand(4, 3, 32, 32)
    y = torch.tensor([0, 3, 7, 9]) if classes > 1 else None
    with torch.no_grad():
        ours = net(x, y).numpy()
    np.testing.assert_allclose(ours, tf_energy(v, arch, x, y, classes), rtol=1e-4, atol=1e-4)
    if classes > 1:  # the class really selects the class rows (+ the shared gain offset)
        other = net(x, torch.tensor([1, 1, 1, 1])).detach().numpy()
        np.testing.assert_allclose(other, tf_energy(v, arch, x, torch.tensor([1, 1, 1, 1]), classes),
                                   rtol=1e-4, atol=1e-4)


def test_without_spectral_norm_the_kernels_map_directly(tmp_path):
    cfg = variant_cfg("igebm_uncond", 4, spectral_norm=False)
    v = authors_variables("igebm_resnet32_large", 4, 1, seed=2, sn=False)
    net = imported_net(cfg, save_tf(tmp_path / "model_1", v), tmp_path / "model.pt")
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        np.testing.assert_allclose(net(x).numpy(), tf_energy(v, "igebm_resnet32_large", x, None, 1, sn=False),
                                   rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------- the model.pt it writes
def test_cli_writes_our_model_pt_that_the_sampler_loads(tmp_path, monkeypatch):
    from ebm_repro.cli import main

    cfg = resolve(load_params(), "igebm_cond", setting="smoke")  # smoke width 16: the CLI's own config
    v = authors_variables("igebm_resnet32", cfg.hp.model.width, 10, seed=3)
    prefix = save_tf(tmp_path / "model_74700", v)
    out = tmp_path / "authors_igebm_cond" / "model.pt"
    root = Path(__file__).resolve().parents[1]
    main(["import-checkpoint", "--params", str(root / "params.yaml"), "--setting", "smoke", "--source", "igebm_tf",
          "--variant", "igebm_cond", "--path", str(prefix), "--out", str(out)])
    c = torch.load(out, weights_only=True)  # plain data + tensors only
    assert c["format"] == ck.FORMAT and c["kind"] == "model" and c["step"] == 74700
    assert c["snapshots"] == [] and c["ema"] is None and c["diverged"] is None
    imp = c["imported"]
    assert imp["source"] == "igebm_tf" and imp["iteration"] == 74700
    assert set(imp["files"]) == {"model_74700.index", "model_74700.data-00000-of-00001"}
    assert imp["files"]["model_74700.index"] == ck.file_digest(Path(f"{prefix}.index"))
    n_opt = sum(n.endswith(("/Adam", "/Adam_1")) or n.startswith("beta") for n in v)
    assert len(imp["dropped"]["optimizer state (Adam moments / beta powers)"]) == n_opt
    assert imp["n_mapped"] + sum(map(len, imp["dropped"].values())) == len(v)
    net = load_models(cfg, out, "single", torch.device("cpu"))[0]
    x, y = torch.rand(2, 3, 32, 32), torch.tensor([2, 5])
    with torch.no_grad():
        np.testing.assert_allclose(net(x, y).numpy(), tf_energy(v, "igebm_resnet32", x, y, 10), rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------- strictness
def _refused(tmp_path, v, match, variant="igebm_uncond", width=4, **model):
    prefix = save_tf(tmp_path / "model_5", v)
    out = tmp_path / "model.pt"
    with pytest.raises(AuthorsCheckpointError, match=match):
        import_checkpoint("igebm_tf", variant_cfg(variant, width, **model), prefix, out)
    assert not out.exists()  # nothing partial is written


def test_an_unknown_variable_is_refused_by_name(tmp_path):
    v = authors_variables("igebm_resnet32_large", 4, 1)
    v[f"{S}res_9_res_c1/cweight"] = np.zeros((3, 3, 16, 16), np.float32)
    _refused(tmp_path, v, "res_9_res_c1/cweight")


def test_a_missing_variable_is_refused_by_name(tmp_path):
    v = authors_variables("igebm_resnet32_large", 4, 1)
    del v[f"{S}res_4_res_c2/gb"]
    _refused(tmp_path, v, "res_4_res_c2/gb")


def test_an_unread_variable_that_moved_from_its_init_is_refused(tmp_path):
    """A conv bias that trained away from 0 means their forward used it: dropping it would change the net."""
    v = authors_variables("igebm_resnet32_large", 4, 1)
    v[f"{S}res_1_res_c1/b"] = np.full(4, 0.3, np.float32)
    _refused(tmp_path, v, "res_1_res_c1/b.*moved from its initial value")


def test_trained_attention_is_refused(tmp_path):
    v = authors_variables("igebm_resnet32_large", 4, 1)
    v[f"{S}atten/gamma"] = np.array([0.2], np.float32)  # only --use_attention moves gamma off 0
    _refused(tmp_path, v, "atten/gamma")


def test_width_and_spectral_norm_mismatches_are_refused(tmp_path):
    v = authors_variables("igebm_resnet32_large", 4, 1)
    _refused(tmp_path, v, r"c1_pre/cweight.*\(3, 3, 3, 4\).*\(3, 3, 3, 8\)", width=8)
    _refused(tmp_path, v, "spectral norm on", spectral_norm=False)
    _refused(tmp_path, v, "has arch 'igebm_resnet32_large_fig15b'", arch="igebm_resnet32_large_fig15b")


def test_a_conditional_checkpoint_does_not_fill_the_unconditional_net(tmp_path):
    v = authors_variables("igebm_resnet32", 4, 10)
    _refused(tmp_path, v, "res_optim_res_c1/gb.*shape", variant="igebm_cond", n_classes=0)
