"""The runtime fast path (params.yaml `runtime:`) against the reference path, on tiny IGEBM and ICD nets.

Exact switches (data_on_device, host_sync: log) must give bit-identical runs. Same-maths switches
(channels_last, compile) must agree to float rounding where the computation is not chaotic -- energies, one
Langevin step, gradients and Adam updates -- and, over a whole chain (ICD's step size 100 amplifies rounding
~1e4-fold in 40 steps), deviate no more than the reference deviates from itself under a 1e-6 change of the
chain starts, with final energies of the same law. The tolerances are the TOL_* constants below (docs/speed.md).
EBM_TEST_DEVICE=cuda runs the exact-switch tests on a GPU (deterministic algorithms on).
"""
from __future__ import annotations

import copy
import csv
import dataclasses
import math
import os
from pathlib import Path

import pytest
import torch

from ebm_repro import checkpoint as ck
from ebm_repro import config as C
from ebm_repro.data import prepare_dataset
from ebm_repro.models import make_model
from ebm_repro.params import load_params
from ebm_repro.runtime import HotPath, NCHWDropout, prepare_model
from ebm_repro.sampling import langevin_step, make_langevin
from ebm_repro.train import Trainer

from tests.test_train import tiny_config

ROOT = Path(__file__).resolve().parents[1]
REF = C.RuntimeConfig()
EXACT = dataclasses.replace(REF, data_on_device=True, host_sync="log")
DEVICE = os.environ.get("EBM_TEST_DEVICE", "cpu")   # the exact-switch tests: where the device matters
CL = dataclasses.replace(REF, channels_last=True)

TOL_ENERGY = 1e-5     # relative: energies of the same inputs (max |dE| / max |E|)
TOL_STEP = 1e-5       # absolute, pixels in [0, 1]: one Langevin step from the same state and noise
TOL_GRAD = 1e-4       # relative to the step's max |g|: parameter gradients of one training step
TOL_UPDATE = 1e-2     # relative to lr: Adam updates where |g| > 1e-3 max |g| (Adam sends rounding-level g to +-lr)
CHAIN_SLACK = 3.0     # whole chains: rms deviation <= 3 x the reference's own under a 1e-6 start change


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("data")
    prepare_dataset("shapes", d, seed=0, n_train=64, n_test=16)
    return d


def with_runtime(cfg: C.RunConfig, rt: C.RuntimeConfig, **train) -> C.RunConfig:
    hp = dataclasses.replace(cfg.hp, train=dataclasses.replace(cfg.hp.train, **train)) if train else cfg.hp
    return dataclasses.replace(cfg, hp=hp, runtime=rt)


# ----------------------------------------------------------------------------- exact switches
LONG = dict(n_iters=8, log_every=4, ckpt_every=4, snapshot_every=4, n_snapshots=2)   # steps 1-3, 5-7 not read


def _log_rows(path: Path) -> list[dict]:
    with open(path) as f:
        return [{k: v for k, v in r.items() if k != "sec_per_iter"} for r in csv.DictReader(f)]


@pytest.fixture
def deterministic():
    """Bit-for-bit comparisons on a GPU need deterministic kernels (cuDNN's fastest are not)."""
    if DEVICE == "cpu":
        yield
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    yield
    torch.use_deterministic_algorithms(False)


@pytest.mark.parametrize("variant", ["icd", "igebm_uncond"])
def test_exact_switches_give_the_reference_run_bit_for_bit(tmp_path, data_dir, variant, deterministic):
    runs = {}
    for name, rt in [("ref", REF), ("fast", EXACT)]:
        torch.manual_seed(0)
        t = Trainer(with_runtime(tiny_config(variant), rt, **LONG), data_dir, tmp_path / name, device=DEVICE)
        hosts, step = [], t.train_step
        t.train_step = lambda want_grad_parts=False, host=True: (hosts.append(host), step(want_grad_parts, host))[1]
        t.run(progress=False)
        runs[name] = (ck.load(tmp_path / name / "model.pt"), ck.load(tmp_path / name / "ckpt" / "last.pt"), hosts)
    (ref, ref_last, ref_hosts), (got, got_last, got_hosts) = runs["ref"], runs["fast"]
    assert all(ref_hosts) and got_hosts == [False, False, False, True] * 2   # the fast run really deferred reads
    for key in ("model", "ema"):
        assert ref[key] is None or all(torch.equal(ref[key][k], got[key][k]) for k in ref[key])
    assert all(torch.equal(a[k], b[k]) for a, b in zip(ref["snapshots"], got["snapshots"], strict=True) for k in a)
    assert torch.equal(ref_last["buffer"]["data"], got_last["buffer"]["data"])
    assert _log_rows(tmp_path / "ref" / "train_log.csv") == _log_rows(tmp_path / "fast" / "train_log.csv")


def test_deferred_reads_stop_a_diverging_run_at_the_same_step_with_the_same_files(tmp_path, data_dir, deterministic):
    out = {}
    for name, rt in [("ref", REF), ("fast", EXACT)]:
        t = Trainer(with_runtime(tiny_config("igebm_uncond"), rt, **LONG), data_dir, tmp_path / name, device=DEVICE)
        draw, calls = t.positives.draw, [0]

        def poisoned(n, draw=draw, calls=calls):   # the 6th batch of positives is NaN: E(x+) non-finite at step 6
            calls[0] += 1
            x, y = draw(n)
            return (x * float("nan") if calls[0] == 6 else x), y
        t.positives.draw = poisoned
        out[name] = (t.run(progress=False), ck.load(tmp_path / name / "model.pt"))
    (r_sum, r_model), (g_sum, g_model) = out["ref"], out["fast"]
    assert r_sum["diverged"]["step"] == g_sum["diverged"]["step"] == 6
    assert r_model["diverged"] == g_model["diverged"] and r_model["step"] == g_model["step"] == 4
    assert all(torch.equal(r_model["model"][k], g_model["model"][k]) for k in r_model["model"])


# ----------------------------------------------------------------------------- same maths: channels last
def twin_nets(variant: str, rt: C.RuntimeConfig) -> tuple[C.RunConfig, torch.nn.Module, torch.nn.Module]:
    cfg = tiny_config(variant)
    torch.manual_seed(0)
    ref = make_model(cfg.hp.model).train()
    return cfg, ref, prepare_model(copy.deepcopy(ref), rt)


def labels(cfg: C.RunConfig, n: int) -> torch.Tensor | None:
    return torch.arange(n) % cfg.hp.model.n_classes if cfg.hp.model.n_classes else None


@pytest.mark.parametrize("variant", ["icd", "igebm_uncond", "igebm_cond"])   # igebm_uncond: dropout in Langevin
def test_channels_last_energies_and_one_langevin_step_equal_the_reference(variant):
    cfg, ref, fast = twin_nets(variant, CL)
    assert any(isinstance(m, NCHWDropout) and m.p > 0 for m in fast.modules()) == (cfg.hp.model.dropout > 0)
    x, y = torch.rand(16, 3, 32, 32), labels(cfg, 16)
    torch.manual_seed(1)
    e_ref = ref(x, y)
    torch.manual_seed(1)
    e_fast = fast(x, y)       # same dropout masks: drawn in NCHW order in both layouts
    assert (e_fast - e_ref).abs().max() <= TOL_ENERGY * e_ref.abs().max()
    s = cfg.hp.sampler
    noise = torch.randn_like(x) * s.noise_std
    torch.manual_seed(2)
    a = langevin_step(lambda z: ref(z, y), x, s.step_size, s.noise_std, s.grad_clip, s.clamp, noise=noise)
    torch.manual_seed(2)
    b = langevin_step(lambda z: fast(z, y), x, s.step_size, s.noise_std, s.grad_clip, s.clamp, noise=noise)
    assert (a - b).abs().max() <= TOL_STEP


@pytest.mark.parametrize("variant", ["icd", "igebm_uncond"])
def test_channels_last_whole_chain_deviates_as_little_as_rounding_does(variant):
    cfg, ref, fast = twin_nets(variant, CL)
    n_steps = C.resolve(load_params(ROOT / "params.yaml"), variant, "paper").hp.sampler.n_steps   # 40 / 60
    sample = make_langevin(dataclasses.replace(cfg.hp.sampler, n_steps=n_steps))
    x, y = torch.rand(32, 3, 32, 32), labels(cfg, 32)
    x_nudged = (x + (torch.rand_like(x) - 0.5) * 2e-6).clamp(0, 1)    # a rounding-sized change of the starts

    def chain(net, x0):
        torch.manual_seed(3)
        return sample(lambda z: net(z, y), x0).x

    a, b, c = chain(ref, x), chain(fast, x), chain(ref, x_nudged)
    rms = lambda u, v: float((u - v).pow(2).mean().sqrt())  # noqa: E731
    assert rms(a, b) <= CHAIN_SLACK * rms(a, c), (rms(a, b), rms(a, c))
    # final energies: paired differences centred on 0 (same law), |mean| within 4 standard errors
    with torch.no_grad():
        ref.eval()                                   # no dropout noise in the energies compared
        d = ref(b, y) - ref(a, y)
    assert abs(float(d.mean())) <= 4 * float(d.std()) / math.sqrt(len(d)) + 1e-7


@pytest.mark.parametrize("variant", ["icd", "igebm_uncond"])
def test_channels_last_training_step_gives_the_reference_gradients_and_updates(tmp_path, data_dir, variant):
    got = {}
    for name, rt in [("ref", REF), ("fast", CL)]:
        t = Trainer(with_runtime(tiny_config(variant), rt), data_dir, tmp_path / name, device="cpu")
        before = {n: p.detach().clone() for n, p in t.model.named_parameters()}
        grads, step = {}, t.opt.step
        t.opt.step = lambda: (grads.update({n: p.grad.clone() for n, p in t.model.named_parameters()
                                            if p.grad is not None}), step())[1]
        row = t.train_step()
        got[name] = (grads, {n: p.detach() - before[n] for n, p in t.model.named_parameters()}, row)
    (g_ref, u_ref, r_ref), (g_fast, u_fast, r_fast) = got["ref"], got["fast"]
    assert g_ref.keys() == g_fast.keys()
    lr = tiny_config(variant).hp.optim.lr
    # relative to the step's largest gradient element: a conv bias before a norm has true gradient 0, so its
    # computed gradient is rounding noise in either path
    scale = max(float(g.abs().max()) for g in g_ref.values())
    for n in g_ref:
        assert (g_ref[n] - g_fast[n]).abs().max() <= TOL_GRAD * scale, n
        firm = g_ref[n].abs() > 1e-3 * scale            # gradient elements above rounding level
        assert float((u_ref[n] - u_fast[n]).abs().mul(firm).max()) <= TOL_UPDATE * lr, n
    assert abs(r_ref["e_neg"] - r_fast["e_neg"]) <= TOL_ENERGY * abs(r_ref["e_neg"]) + 1e-7


# ----------------------------------------------------------------------------- compile and bf16
@pytest.mark.parametrize("variant", ["icd", "igebm_cond"])
def test_compiled_hot_path_freezes_theta_for_the_chain_and_keeps_the_l_opt_graph(variant):
    # backend aot_eager: Dynamo + AOTAutograd as inductor gets them, without inductor's minutes of C++ builds
    # (inductor's numerics: test_compiled_inductor_chain_equals_eager, opt-in)
    cfg = tiny_config(variant)
    torch.manual_seed(0)
    net = make_model(cfg.hp.model).train()
    twin = copy.deepcopy(net)   # the same weights and spectral-norm state (each training forward advances it)
    hot = HotPath(net, dataclasses.replace(REF, compile=True), "cpu", compile_backend="aot_eager")
    x, y = torch.rand(8, 3, 32, 32), labels(cfg, 8)
    ys = lambda z: None if y is None else y[: len(z)]  # noqa: E731  (the L_opt step sees the first 4 chains)
    sample = make_langevin(cfg.hp.sampler)
    seen = []
    with hot.chain_scope():
        torch.manual_seed(5)
        res = sample(lambda z: (seen.append(any(p.requires_grad for p in net.parameters())), hot.energy(z, ys(z)))[1],
                     x, kl_chains=4, energy_graph=lambda z: net(z, ys(z)), graph_scope=hot.graph_scope)
    assert seen and not any(seen)                      # theta frozen in every step without a graph
    assert all(p.requires_grad for p in net.parameters())   # and trainable again after the chain
    gt = torch.autograd.grad(net(res.x_kl, ys(res.x_kl)).mean(), list(net.parameters()), allow_unused=True)
    assert any(g is not None and g.abs().sum() > 0 for g in gt)   # L_opt's path into theta (ICD Eq. 6) is there
    torch.manual_seed(5)
    ref = sample(lambda z: twin(z, ys(z)), x, kl_chains=4)
    assert (ref.x - res.x).abs().max() <= TOL_STEP * cfg.hp.sampler.n_steps
    assert (ref.x_kl - res.x_kl).abs().max() <= TOL_STEP * cfg.hp.sampler.n_steps


@pytest.mark.skipif(os.environ.get("EBM_TEST_COMPILE") != "1",
                    reason="inductor builds C++ kernels for minutes on a CPU: set EBM_TEST_COMPILE=1 to run")
@pytest.mark.parametrize("variant", ["icd", "igebm_uncond"])
def test_compiled_inductor_chain_equals_eager(variant):
    cfg, ref, _ = twin_nets(variant, REF)
    hot = HotPath(copy.deepcopy(ref), dataclasses.replace(REF, compile=True), "cpu")
    x, y = torch.rand(8, 3, 32, 32), labels(cfg, 8)
    s = cfg.hp.sampler
    noise = torch.randn_like(x) * s.noise_std
    with hot.chain_scope():
        torch.manual_seed(2)
        b = langevin_step(lambda z: hot.energy(z, y), x, s.step_size, s.noise_std, s.grad_clip, s.clamp, noise=noise)
    torch.manual_seed(2)
    a = langevin_step(lambda z: ref(z, y), x, s.step_size, s.noise_std, s.grad_clip, s.clamp, noise=noise)
    assert (a - b).abs().max() <= TOL_STEP


def test_bf16_autocast_is_engaged_and_near_fp32():
    cfg, ref, _ = twin_nets("icd", REF)
    hot = HotPath(ref, dataclasses.replace(REF, precision="bf16"), "cpu")
    x = torch.rand(16, 3, 32, 32)
    with torch.no_grad():
        rel = float((hot.energy(x) - ref(x)).abs().max() / ref(x).abs().max())
    assert 1e-6 < rel < 5e-2      # bf16 has an 8-bit mantissa: visibly not fp32, but near it


# ----------------------------------------------------------------------------- the training hash
def test_only_result_changing_switches_enter_the_training_hash():
    cfg = tiny_config("icd")
    h = with_runtime(cfg, REF).training_hash()
    d = dataclasses.asdict(cfg.hp)
    d.pop("test_sampling"), d.pop("metrics")
    d.update(dataset=cfg.dataset, recipe=cfg.recipe)
    assert h == C.stable_hash(d, 16)     # the reference path hashes as before the runtime block existed
    for same in (EXACT, CL, dataclasses.replace(REF, compile=True)):
        assert with_runtime(cfg, same).training_hash() == h
    for other in (dataclasses.replace(REF, precision="bf16"), dataclasses.replace(REF, precision="tf32"),
                  dataclasses.replace(REF, augment="batched")):
        assert with_runtime(cfg, other).training_hash() != h


def test_batched_augmentation_trains_and_generates(tmp_path, data_dir):
    from ebm_repro.generate import generate
    rt = dataclasses.replace(EXACT, channels_last=True, augment="batched")
    cfg = with_runtime(tiny_config("icd"), rt)
    out = Trainer(cfg, data_dir, tmp_path, device="cpu").run(progress=False)
    assert out["finished"] and out["diverged"] is None
    ts = dataclasses.replace(cfg.hp.test_sampling, n_chains=8, draw_size=4, n_iters=5, steps_per_iter=2,
                             final_iters_fixed=1)
    cfg = dataclasses.replace(cfg, hp=dataclasses.replace(cfg.hp, test_sampling=ts))
    images, _ = generate(cfg, tmp_path / "model.pt", "single", 8, device="cpu", progress=False)
    assert images.shape == (8, 32, 32, 3)
