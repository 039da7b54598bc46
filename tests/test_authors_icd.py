"""ICD authors' torch checkpoints: a file with their key names and shapes (tiny widths), written here, converts
strictly into icd_resnet / icd_celeba, and our net's energy equals a reference forward run on their state dict.

The key layout and the reference forward are our own reading of yilundu/improved_contrastive_divergence @7d3d4ee
(models.py CondResBlock, Self_Attn, ResNetModel, CelebAModel; utils.py WSConv2d; train.py checkpoint dict);
no code of theirs is copied.
"""
from __future__ import annotations

import dataclasses
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ebm_repro.authors import AuthorsCheckpointError, import_checkpoint
from ebm_repro.config import RunConfig, resolve
from ebm_repro.generate import load_models
from ebm_repro.params import load_params

torch.set_num_threads(1)

# Blocks per scale as (name, channels, down-conv output channels or None); stems' widths.
RESNET = {"": [("res_1a", 1, None), ("res_1b", 1, 1), ("res_2a", 1, None), ("res_2b", 1, 2),
               ("res_3a", 2, None), ("res_3b", 2, 4), ("res_4a", 4, None), ("res_4b", 4, 8)]}
RESNET["mid_"] = [(f"mid_{n}", c, d) for n, c, d in RESNET[""][:6]]
RESNET["small_"] = [(f"small_{n}", c, d) for n, c, d in RESNET[""][:4]]
CELEBA = {"": [("res_1a", 0.5, 1), ("res_1b", 1, 1), ("res_2a", 1, 1), ("res_2b", 1, 2),
               ("res_3a", 2, None), ("res_3b", 2, 4), ("res_4a", 4, None), ("res_4b", 4, 8)],
          "mid_": [("mid_res_1a", 1, 1), ("mid_res_1b", 1, 1), ("mid_res_2a", 1, 1), ("mid_res_2b", 1, 2),
                   ("mid_res_3a", 2, None), ("mid_res_3b", 2, 4)],
          "small_": [("small_res_1a", 1, 1), ("small_res_1b", 1, 1), ("small_res_2a", 1, 1),
                     ("small_res_2b", 1, 2)]}
ATTN_AFTER = {"resnet": "res_2b", "celeba": "res_3b"}


@dataclasses.dataclass
class Flags:
    """The FLAGS entries that shape their network (train.py:56-109 defaults, unless set)."""
    dataset: str = "cifar10"
    filter_dim: int = 8
    multiscale: bool = True
    self_attn: bool = True
    spec_norm: bool = False
    norm: bool = True
    cond: bool = False
    alias: bool = False
    square_energy: bool = False
    sigmoid: bool = False
    im_size: int = 32


# ----------------------------------------------------------------------------- their layout, written here
def _n(rng, *shape, scale=0.2):
    return torch.from_numpy(rng.normal(size=shape).astype(np.float32) * scale)


def block_state(sd, rng, name, c, down, classes, sn, norm):
    """CondResBlock's keys: conv1/conv2 (WS, or old-API spectral norm), bn1/bn2, latent_map(_2), conv_downsample."""
    for conv in ("conv1", "conv2"):
        if sn:
            sd[f"{name}.{conv}.weight_orig"] = _n(rng, c, c, 3, 3)
            sd[f"{name}.{conv}.weight_u"] = F.normalize(_n(rng, c), dim=0)
            sd[f"{name}.{conv}.weight_v"] = F.normalize(_n(rng, 9 * c), dim=0)
        else:
            sd[f"{name}.{conv}.weight"] = _n(rng, c, c, 3, 3)
        sd[f"{name}.{conv}.bias"] = _n(rng, c, scale=0.1)
    if norm:
        for bn in ("bn1", "bn2"):
            sd[f"{name}.{bn}.weight"], sd[f"{name}.{bn}.bias"] = 1 + _n(rng, c, scale=0.1), _n(rng, c, scale=0.1)
    for lm in ("latent_map", "latent_map_2"):
        sd[f"{name}.{lm}.weight"], sd[f"{name}.{lm}.bias"] = _n(rng, 2 * c, classes), 1 + _n(rng, 2 * c, scale=0.1)
    if down:
        sd[f"{name}.conv_downsample.weight"] = _n(rng, down, c, 3, 3, scale=0.1)
        sd[f"{name}.conv_downsample.bias"] = _n(rng, down, scale=0.1)


def binomial_filter():
    a = torch.tensor([1.0, 2.0, 1.0])
    f = a[:, None] * a[None, :]
    return (f / f.sum())[None, None].repeat(3, 1, 1, 1)  # Downsample(channels=3).filt, (3, 1, 3, 3)


def authors_state(kind: str, fl: Flags, classes: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict of ResNetModel ('resnet') or CelebAModel ('celeba') with random values."""
    rng = np.random.default_rng(seed)
    f, table = fl.filter_dim, RESNET if kind == "resnet" else CELEBA
    sd: dict[str, torch.Tensor] = {}
    for p in ("", "mid_", "small_") if fl.multiscale else ("",):
        side = p != "" and kind == "celeba"  # CelebA mid/small blocks: norm=True, no spectral norm
        blocks = table[p]
        c0 = int(blocks[0][1] * f)  # stem width: F (ResNetModel), F/2 (CelebAModel main), F (CelebA mid/small)
        sd[f"{p}conv1.weight"], sd[f"{p}conv1.bias"] = _n(rng, c0, 3, 3, 3), _n(rng, c0)
        for name, c, d in blocks:
            block_state(sd, rng, name, int(c * f), None if d is None else int(d * f), classes,
                        sn=fl.spec_norm and not side, norm=fl.norm or side)
        c_last = int((blocks[-1][2] or blocks[-1][1]) * f)
        sd[f"{p}energy_map.weight"], sd[f"{p}energy_map.bias"] = _n(rng, 1, c_last), _n(rng, 1)
    ca = 2 * f if kind == "resnet" else 4 * f
    for part, out in (("query_conv", ca // 8), ("key_conv", ca // 8), ("value_conv", ca)):
        sd[f"self_attn.{part}.weight"], sd[f"self_attn.{part}.bias"] = _n(rng, out, ca, 1, 1), _n(rng, out)
    sd["self_attn.gamma"] = torch.tensor([0.7])
    sd["downsample.filt"] = binomial_filter()
    if fl.multiscale:
        sd["avg_pool.filt"] = binomial_filter()
    if kind == "celeba":
        sd["heir_weight"] = torch.ones(3)
    return sd


class EasyDict(dict):
    """Shaped like easydict.EasyDict (their FLAGS, train.py:754-757): a dict whose attributes are its items."""

    def __setattr__(self, k, v):
        super().__setattr__(k, v)
        super().__setitem__(k, v)


EasyDict.__module__, EasyDict.__qualname__ = "easydict", "EasyDict"


def fake_easydict(monkeypatch) -> None:
    """Make `easydict.EasyDict` importable (the package is not installed here)."""
    mod = types.ModuleType("easydict")
    mod.EasyDict = EasyDict
    monkeypatch.setitem(sys.modules, "easydict", mod)


def write_checkpoint(path: Path, monkeypatch, fl: Flags | None, model: dict, ema: dict | None, **extra) -> Path:
    """torch.save of their train.py dict, FLAGS as an easydict.EasyDict (module faked for the save, then removed)."""
    fake_easydict(monkeypatch)
    ckpt = {"optimizer_state_dict": {"state": {}, "param_groups": [{"lr": 2e-4, "params": [0, 1]}]},
            "best_inception": 0.0, "model_state_dict_0": model, **extra}
    if ema is not None:
        ckpt["ema_model_state_dict_0"] = ema
    if fl is not None:
        flags = EasyDict()
        for k, v in dataclasses.asdict(fl).items():
            setattr(flags, k, v)
        flags.lr = 2e-4
        ckpt["FLAGS"] = flags
    torch.save(ckpt, path)
    monkeypatch.delitem(sys.modules, "easydict")  # loading must not need the package
    return path


# ----------------------------------------------------------------------------- their forward, re-derived
def swish(x):
    return x * torch.sigmoid(x)


def ref_conv(sd, name, x):
    if f"{name}.weight_orig" in sd:  # eval-mode spectral norm: W / (u . W v) with the stored u, v
        w = sd[f"{name}.weight_orig"]
        w = w / torch.dot(sd[f"{name}.weight_u"], w.flatten(1) @ sd[f"{name}.weight_v"])
    else:                            # weight standardisation: per filter, minus mean, over unbiased std + 1e-5
        w = sd[f"{name}.weight"]
        w = w - w.mean(dim=(1, 2, 3), keepdim=True)
        w = w / (w.flatten(1).std(dim=1).view(-1, 1, 1, 1) + 1e-5)
    return F.conv2d(x, w, sd[f"{name}.bias"], padding=1)


def ref_norm(sd, name, x):
    if f"{name}.weight" not in sd:
        return x
    c = x.shape[1]
    if c <= 128:
        return F.instance_norm(x, weight=sd[f"{name}.weight"], bias=sd[f"{name}.bias"], eps=1e-5)
    return F.group_norm(x, 32, sd[f"{name}.weight"], sd[f"{name}.bias"], eps=1e-5)


def ref_block(sd, name, x, y1h):
    c = x.shape[1]
    h = ref_norm(sd, f"{name}.bn1", ref_conv(sd, f"{name}.conv1", x))
    if y1h is not None:
        lm = F.linear(y1h, sd[f"{name}.latent_map.weight"], sd[f"{name}.latent_map.bias"])
        h = lm[:, :c, None, None] * h + lm[:, c:, None, None]
    h = swish(h)
    h = ref_norm(sd, f"{name}.bn2", ref_conv(sd, f"{name}.conv2", h))
    if y1h is not None:
        lm = F.linear(y1h, sd[f"{name}.latent_map_2.weight"], sd[f"{name}.latent_map_2.bias"])
        h = lm[:, :c, None, None] * h + lm[:, c:, None, None]
    out = swish(h) + x
    if f"{name}.conv_downsample.weight" in sd:
        out = F.conv2d(out, sd[f"{name}.conv_downsample.weight"], sd[f"{name}.conv_downsample.bias"], padding=1)
        out = swish(F.avg_pool2d(out, 3, stride=2, padding=1))
    return out


def ref_attention(sd, x):
    b, c, hh, ww = x.shape
    q = F.conv2d(x, sd["self_attn.query_conv.weight"], sd["self_attn.query_conv.bias"]).view(b, -1, hh * ww)
    k = F.conv2d(x, sd["self_attn.key_conv.weight"], sd["self_attn.key_conv.bias"]).view(b, -1, hh * ww)
    v = F.conv2d(x, sd["self_attn.value_conv.weight"], sd["self_attn.value_conv.bias"]).view(b, -1, hh * ww)
    attn = torch.softmax(torch.bmm(q.permute(0, 2, 1), k), dim=-1)
    return sd["self_attn.gamma"] * torch.bmm(v, attn.permute(0, 2, 1)).view(b, c, hh, ww) + x


def ref_energy(kind: str, sd, fl: Flags, x, y, classes) -> torch.Tensor:
    """Their forward summed over scales (sampling differentiates energy.sum(), so the sum is what they follow)."""
    y1h = F.one_hot(y, classes).float() if fl.cond else None
    total = 0
    for n_pool, p in enumerate(("", "mid_", "small_") if fl.multiscale else ("",)):
        h = x
        for _ in range(n_pool):
            h = F.avg_pool2d(h, 3, stride=2, padding=1)
        h = swish(F.conv2d(h, sd[f"{p}conv1.weight"], sd[f"{p}conv1.bias"], padding=1))
        for name, _, _ in (RESNET if kind == "resnet" else CELEBA)[p]:
            h = ref_block(sd, name, h, y1h)
            if p == "" and name == ATTN_AFTER[kind] and fl.self_attn:
                h = ref_attention(sd, h)
        h = swish(h).mean(dim=(2, 3))
        total = total + F.linear(h, sd[f"{p}energy_map.weight"], sd[f"{p}energy_map.bias"])[:, 0]
    return total


# ----------------------------------------------------------------------------- helpers
def icd_cfg(**model) -> RunConfig:
    cfg = resolve(load_params(), "icd", setting="smoke")
    return dataclasses.replace(cfg, hp=dataclasses.replace(cfg.hp, model=dataclasses.replace(cfg.hp.model, **model)))


def check_parity(tmp_path, monkeypatch, kind, fl, classes, cfg, size, seed=0):
    model_sd, ema_sd = authors_state(kind, fl, classes, seed), authors_state(kind, fl, classes, seed + 1)
    path = write_checkpoint(tmp_path / "model_3000.pth", monkeypatch, fl, model_sd, ema_sd)
    out = tmp_path / "model.pt"
    info = import_checkpoint("icd_pth", cfg, path, out)
    c = torch.load(out, weights_only=True)  # plain data + tensors
    assert c["step"] == 3000 and info["iteration"] == 3000 and info["flags"]["filter_dim"] == fl.filter_dim
    x = torch.rand(2, 3, size, size)
    y = torch.tensor([1, 0]) if fl.cond else None
    dev = torch.device("cpu")
    for state, sd in (("ema", ema_sd), ("model", model_sd)):
        net = load_models(dataclasses.replace(cfg, hp=dataclasses.replace(
            cfg.hp, test_sampling=dataclasses.replace(cfg.hp.test_sampling, use_ema=state == "ema"))),
            out, "single", dev)[0]
        with torch.no_grad():
            torch.testing.assert_close(net(x, y), ref_energy(kind, sd, fl, x, y, classes), atol=1e-4, rtol=1e-4)
    return info


# ----------------------------------------------------------------------------- conversion + parity
def test_resnet_unconditional_matches_the_reference_forward(tmp_path, monkeypatch):
    info = check_parity(tmp_path, monkeypatch, "resnet", Flags(), 10, icd_cfg(width=8), 32)
    dropped = info["dropped"]
    assert any("latent_map" in r for r in dropped)  # an unconditional model never reads its latent maps
    assert sorted(next(v for r, v in dropped.items() if r.startswith("Downsample"))) == \
        ["avg_pool.filt", "downsample.filt"]
    assert info["dropped_entries"] == {"optimizer_state_dict": "optimizer_state_dict (Adam state)"}


def test_resnet_conditional_with_spectral_norm_matches(tmp_path, monkeypatch):
    fl = Flags(cond=True, spec_norm=True)
    check_parity(tmp_path, monkeypatch, "resnet", fl, 10, icd_cfg(width=8, n_classes=10, spectral_norm=True), 32)


def test_resnet_wide_blocks_use_group_norm_like_the_code(tmp_path, monkeypatch):
    """Above 128 channels their blocks switch to GroupNorm(32); width 80 has 80 (instance) and 160, 320 (group)."""
    fl = Flags(filter_dim=80, multiscale=False)
    check_parity(tmp_path, monkeypatch, "resnet", fl, 10, icd_cfg(width=80, multiscale=False, image_size=16), 16)


def test_celeba_conditional_matches_the_reference_forward(tmp_path, monkeypatch):
    """CelebAModel: F/2 stem, attention after res_3b, side scales always normed and never spectral-normed."""
    fl = Flags(dataset="celeba", cond=True, spec_norm=True, im_size=128)
    cfg = icd_cfg(arch="icd_celeba", width=8, n_classes=2, spectral_norm=True, image_size=64)
    info = check_parity(tmp_path, monkeypatch, "celeba", fl, 2, cfg, 64)
    assert info["dropped"][next(r for r in info["dropped"] if r.startswith("heir_weight"))] == ["heir_weight"]


# ----------------------------------------------------------------------------- strictness
def _refused(tmp_path, monkeypatch, match, fl=None, cfg=None, model=None, ema="same", **extra):
    """fl: the FLAGS written (default Flags(); "none": no FLAGS entry); model: their state (default tiny ResNet)."""
    fl = Flags() if fl is None else fl
    model = authors_state("resnet", Flags(), 10) if model is None else model
    path = write_checkpoint(tmp_path / "model_1.pth", monkeypatch, None if fl == "none" else fl, model,
                            model if ema == "same" else ema, **extra)
    out = tmp_path / "model.pt"
    with pytest.raises(AuthorsCheckpointError, match=match):
        import_checkpoint("icd_pth", cfg or icd_cfg(width=8), path, out)
    assert not out.exists()


def test_anti_aliased_pooling_is_refused_by_key(tmp_path, monkeypatch):
    sd = authors_state("resnet", Flags(), 10)
    sd["res_1b.avg_pool.filt"] = torch.ones(8, 1, 3, 3)
    _refused(tmp_path, monkeypatch, r"res_1b\.avg_pool\.filt", model=sd)


@pytest.mark.parametrize("flag,value,match", [("self_attn", False, "self_attn: theirs False vs ours True"),
                                              ("square_energy", True, "square_energy"),
                                              ("sigmoid", True, "sigmoid"),
                                              ("filter_dim", 16, "filter_dim: theirs 16 vs ours 8"),
                                              ("dataset", "celeba", "builds icd_celeba")])
def test_flags_that_change_the_forward_must_match(tmp_path, monkeypatch, flag, value, match):
    fl = dataclasses.replace(Flags(), **{flag: value})
    _refused(tmp_path, monkeypatch, match, fl=fl, model=authors_state("resnet", Flags(), 10))


def test_missing_flags_extra_entries_and_missing_ema_are_refused(tmp_path, monkeypatch):
    _refused(tmp_path, monkeypatch, "no 'FLAGS' entry", fl="none")
    _refused(tmp_path, monkeypatch, r"entries we have no place for: \['model_state_dict_1'\]",
             model_state_dict_1=authors_state("resnet", Flags(), 10))
    _refused(tmp_path, monkeypatch, "use_ema.*holds none", ema=None)  # the icd variant samples from the EMA


def test_a_width_mismatch_names_the_key(tmp_path, monkeypatch):
    _refused(tmp_path, monkeypatch, "shape mismatch", fl=Flags(filter_dim=16),
             cfg=icd_cfg(width=16), model=authors_state("resnet", Flags(), 10))


# ----------------------------------------------------------------------------- untrusted pickles
class Gadget:
    """An arbitrary pickled object: a weights-only load must refuse it."""

    def __init__(self):
        self.payload = "anything"


def test_unknown_pickled_objects_need_trust_pickle(tmp_path, monkeypatch, capsys):
    fl = Flags()
    sd = authors_state("resnet", fl, 10)
    path = write_checkpoint(tmp_path / "model_7.pth", monkeypatch, fl, sd, sd, best_inception=Gadget())
    with pytest.raises(AuthorsCheckpointError, match="--trust-pickle"):
        import_checkpoint("icd_pth", icd_cfg(width=8), path, tmp_path / "a.pt")
    assert not (tmp_path / "a.pt").exists()
    fake_easydict(monkeypatch)
    # trusted: the full unpickle runs (and says so); a `best_inception` that is no number is still refused
    with pytest.raises(AuthorsCheckpointError, match="best_inception"):
        import_checkpoint("icd_pth", icd_cfg(width=8), path, tmp_path / "b.pt", trust_pickle=True)
    assert "executes any code the file contains" in capsys.readouterr().err


def test_trust_pickle_is_the_only_way_to_a_full_unpickle(tmp_path, monkeypatch):
    from ebm_repro.authors import icd_pth

    fl = Flags()
    sd = authors_state("resnet", fl, 10)
    path = write_checkpoint(tmp_path / "model_9.pth", monkeypatch, fl, sd, sd)
    assert isinstance(icd_pth._load_pickle(path, trust_pickle=False)["FLAGS"], dict)  # the plain-dict stand-in
    monkeypatch.setattr(icd_pth, "FLAG_TYPES", [])  # without the stand-in, EasyDict is an unknown global
    with pytest.raises(AuthorsCheckpointError, match="--trust-pickle"):
        icd_pth._load_pickle(path, trust_pickle=False)
    with pytest.raises(AuthorsCheckpointError, match="pip install easydict"):  # not installed here
        icd_pth._load_pickle(path, trust_pickle=True)
    fake_easydict(monkeypatch)
    assert type(icd_pth._load_pickle(path, trust_pickle=True)["FLAGS"]) is EasyDict


def test_reading_tf_checkpoints_without_tensorflow_names_the_extra(tmp_path, monkeypatch):
    from ebm_repro.authors.igebm_tf import _read

    monkeypatch.setitem(sys.modules, "tensorflow", None)  # as if the [tf] extra were not installed
    with pytest.raises(AuthorsCheckpointError, match=r"pip install -e \.\[tf\]"):
        _read(tmp_path / "model_1")


def test_flags_missing_a_switch_are_refused():
    from ebm_repro.authors.icd_pth import check_flags

    flags = dataclasses.asdict(Flags())
    del flags["square_energy"]
    with pytest.raises(AuthorsCheckpointError, match=r"FLAGS lacks \['square_energy'\]"):
        check_flags(flags, icd_cfg(width=8).hp.model, "x")
    check_flags(dataclasses.asdict(Flags()), icd_cfg(width=8).hp.model, "x")  # complete and matching: accepted
