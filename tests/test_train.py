"""Trainer: one step against a hand-composed reference, spies on its wiring, resume, paper-vs-code switches."""
from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch

from ebm_repro import config as C
from ebm_repro import losses as L
from ebm_repro.augment import make_augment
from ebm_repro.buffer import ReplayBuffer
from ebm_repro.data import load_split, prepare_dataset
from ebm_repro.models import make_model
from ebm_repro.optim import EMA, make_optimizer
from ebm_repro.sampling import make_langevin
from ebm_repro.train import Trainer
from ebm_repro.params import load_params

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("data")
    prepare_dataset("shapes", d, seed=0, n_train=64, n_test=16)
    return d


def tiny_config(variant: str = "icd", optim: dict | None = None, augment: dict | None = None,
                buffer: dict | None = None, **loss) -> C.RunConfig:
    """A variant's recipe at width 8, 2 Langevin steps, batch 8 and a 16-row buffer, smoke setting."""
    p = load_params(ROOT / "params.yaml")
    p["settings"]["smoke"]["overrides"] = {
        "model": {"width": 8}, "sampler": {"n_steps": 2}, "buffer": {"size": 16, **(buffer or {})},
        "loss": {"kl_opt_chains": 4, "ent_min_buffer": 4, "ent_n_neighbours": 4, **loss},
        "optim": optim or {}, "augment": augment or {},
        "train": {"batch_size": 8, "n_iters": 4, "ckpt_every": 2, "snapshot_every": 1, "n_snapshots": 2,
                  "eval_n_samples": 8},
    }
    return C.resolve(p, variant, setting="smoke", validated=False)


def icd_config(**loss) -> C.RunConfig:
    return tiny_config("icd", **loss)


# ----------------------------------------------------------------------------- an independent reference step
def reference_run(cfg: C.RunConfig, data_dir: Path, n_steps: int) -> dict:
    """n training steps composed by hand from the public pieces (IGEBM Alg. 1, ICD Eq. 4 + Eqs. 6-7).

    Seeds as the Trainer documents them: torch.manual_seed(seed) before the model is built, the dataset draws
    from a generator seeded with `seed`, the buffer's from one seeded with `seed + 1`.
    """
    hp, B, seed = cfg.hp, cfg.hp.train.batch_size, cfg.hp.train.seed
    torch.manual_seed(seed)
    images, labels = load_split(data_dir / "train.npz")
    k_all = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()                 # (N, C, H, W) uint8
    y_all = torch.from_numpy(labels).long()                                            # (N,)
    model = make_model(hp.model).train()
    opt = make_optimizer(hp.optim, model.parameters())
    ema = EMA(model, hp.optim.ema_decay) if hp.optim.ema_decay > 0 else None
    data_g = torch.Generator().manual_seed(seed)
    buffer = ReplayBuffer(hp.buffer, tuple(k_all.shape[1:]), torch.Generator().manual_seed(seed + 1))
    sample, augment = make_langevin(hp.sampler), make_augment(hp.augment, hp.model.image_size)
    lc = hp.loss
    kl_chains = lc.kl_opt_chains if lc.kl_opt_coeff > 0 or lc.kl_ent_coeff > 0 else 0
    per_scale = hp.model.multiscale and lc.multiscale_reduce == "mean"
    for _ in range(n_steps):
        idx = torch.randint(0, len(k_all), (B,), generator=data_g)
        x_pos = (k_all[idx].float() + torch.rand(B, *k_all.shape[1:])) / 256           # dequantised, (B, C, H, W)
        y = y_all[idx] if hp.model.n_classes else None
        x0, fresh = buffer.sample(B)                                                   # chain starts
        if hp.augment.fresh_chains:
            x0 = augment(x0)
        elif (~fresh).any():                                                           # buffer draws only
            x0 = x0.clone()
            x0[~fresh] = augment(x0[~fresh])

        def energy(x, y=y):
            return model(x, None if y is None else y[: len(x)])

        def loss_energy(x, y=y):
            return model.scale_energies(x, None if y is None else y[: len(x)]) if per_scale else energy(x)

        res = sample(energy, x0, kl_chains=kl_chains, kl_all_steps=lc.kl_all_steps)
        x_neg = res.x.detach()                                                         # stop_grad(x-)
        if lc.ent_bank_after_push:
            buffer.push(x_neg)                                                         # the chains' ends, first
        def draw_bank():
            b = buffer.recent(lc.ent_n_neighbours)
            return augment(b) if lc.ent_bank_augment else b

        bank = draw_bank if len(buffer) > lc.ent_min_buffer else None
        loss = L.training_loss(lc, model, loss_energy, loss_energy(x_pos), loss_energy(x_neg), res.x_kl, bank).total
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if hp.optim.grad_norm_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), hp.optim.grad_norm_clip)
        opt.step()
        if ema:
            ema.update(model)
        if not lc.ent_bank_after_push:
            buffer.push(x_neg)                                                         # the chains' ends
    return {"model": model.state_dict(), "ema": ema.state_dict() if ema else None, "opt": opt.state_dict(),
            "buffer": buffer.state_dict(), "data_g": data_g.get_state(), "rng": torch.get_rng_state()}


def _equal(a, b, where: str = "") -> list[str]:
    """Paths at which two nested states differ: integer tensors (buffer rows, RNG states) exactly, floats to 1e-5.

    Float tolerance: the same maths in another memory layout (e.g. channels-last images) differs in the last bits.
    """
    if isinstance(a, torch.Tensor):
        same = isinstance(b, torch.Tensor) and a.shape == b.shape and a.dtype == b.dtype and (
            torch.allclose(a, b, rtol=1e-5, atol=1e-8) if a.is_floating_point() else torch.equal(a, b))
        return [] if same else [where]
    if isinstance(a, dict):
        if not isinstance(b, dict) or a.keys() != b.keys():
            return [where]
        return [d for k in a for d in _equal(a[k], b[k], f"{where}.{k}")]
    if isinstance(a, (list, tuple)):
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in _equal(x, y, f"{where}[{i}]")]
    return [] if a == b else [where]


@pytest.mark.parametrize("variant", ["icd", "igebm_cond"])
def test_two_trainer_steps_equal_a_hand_composed_reference(tmp_path, data_dir, variant):
    # icd: augmentation, per-scale mean loss, L_opt + L_ent (active in step 2), EMA, gradient-norm clip;
    # igebm_cond: labels shared by positives and negatives, spectral norm, Adam's std clip, 5% re-init.
    # Step 2 starts its chains from step 1's pushed ends, so the buffer's wiring is compared too.
    cfg = tiny_config(variant)
    t = Trainer(cfg, data_dir, tmp_path, device="cpu")
    for _ in range(2):
        t.train_step()
    got = {"model": t.model.state_dict(), "ema": t.ema.state_dict() if t.ema else None, "opt": t.opt.state_dict(),
           "buffer": t.buffer.state_dict(), "data_g": t.positives.g.get_state(), "rng": torch.get_rng_state()}
    ref = reference_run(cfg, data_dir, 2)
    assert _equal(ref, got) == []


# ----------------------------------------------------------------------------- spies on one step
class Spy:
    """Wraps a Trainer's sampler, positives, buffer and optimiser to record what one step hands between them."""

    def __init__(self, t: Trainer):
        self.t, self.energy_inputs = t, []
        sample, draw, bsample, push, step = t.sample, t.positives.draw, t.buffer.sample, t.buffer.push, t.opt.step

        def spy_sample(energy, x0, **kw):
            self.x0 = x0
            self.res = sample(energy, x0, **kw)
            return self.res

        def spy_draw(n):
            self.x_pos, self.y_pos = draw(n)
            return self.x_pos, self.y_pos

        def spy_bsample(n):
            self.drawn, self.fresh = bsample(n)
            return self.drawn, self.fresh

        def spy_push(x):
            self.pushed = x
            push(x)

        def spy_step():
            self.grads = [None if p.grad is None else p.grad.clone() for p in t.model.parameters()]
            step()

        t.sample, t.positives.draw, t.buffer.sample, t.buffer.push, t.opt.step = (
            spy_sample, spy_draw, spy_bsample, spy_push, spy_step)
        # every energy evaluation passes the full-resolution net (ICD) or the whole model (IGEBM)
        net = t.model.scales[0] if hasattr(t.model, "scales") else t.model
        net.register_forward_pre_hook(lambda m, args: self.energy_inputs.append(args[0]))


def test_positives_are_dequantised_dataset_images(tmp_path, data_dir):
    t = Trainer(tiny_config("igebm_uncond"), data_dir, tmp_path, device="cpu")
    g = torch.Generator().set_state(t.positives.g.get_state())
    spy = Spy(t)
    t.train_step()
    idx = torch.randint(0, len(t.positives.images), (8,), generator=g)   # the draw the step makes
    k = t.positives.images[idx].float()                                   # (8, C, H, W)
    u = spy.x_pos * 256 - k
    # x = (k + u) / 256 with u ~ U(0, 1) independent of k (methods.md); k / 255 would give u = k / 255.
    assert u.min() >= 0 and u.max() < 1 + 1e-5
    n = u.numel()
    assert abs(u.mean() - 0.5) < 4 * math.sqrt(1 / 12 / n) and abs(u.std() - math.sqrt(1 / 12)) < 0.01
    assert abs(torch.corrcoef(torch.stack([u.flatten(), k.flatten()]))[0, 1]) < 4 / math.sqrt(n)
    assert any(x is spy.x_pos for x in spy.energy_inputs), "the drawn positives never reached the energy"


def test_negatives_enter_the_loss_detached_and_the_gradient_is_that_of_stop_grad_negatives(tmp_path, data_dir):
    # kl chains = the whole batch, with the sampler's graph (L_ent needs more than 8 stored chains, which step 1
    # does not have, and L_opt is off, so the loss is L_CD + L2 alone): the CD gradient must be that of
    # E(x+) - E(stop_grad(x-)).
    cfg = tiny_config("icd", optim={"grad_norm_clip": 0.0}, kl_opt_coeff=0.0, kl_ent_coeff=0.3, kl_opt_chains=8,
                      ent_min_buffer=8)
    t = Trainer(cfg, data_dir, tmp_path, device="cpu")
    before = copy.deepcopy(t.model)
    spy = Spy(t)
    t.train_step()
    assert spy.res.x_kl is not None and spy.res.x_kl.requires_grad       # the graph was there to be misused
    fed = [x for x in spy.energy_inputs if x.shape == spy.res.x.shape and torch.equal(x, spy.res.x)]
    assert fed and not any(x.requires_grad for x in fed), "the loss energy never saw the chains' ends detached"

    def e(x):  # the code preset's loss energies: per-scale, (B, 3)
        return before.scale_energies(x)
    e_pos, e_neg = e(spy.x_pos), e(spy.res.x.detach())
    loss = L.cd_loss(e_pos, e_neg) + cfg.hp.loss.l2_coeff * L.l2_reg(e_pos, e_neg)
    want = torch.autograd.grad(loss, list(before.parameters()), allow_unused=True)
    for name_g, (w, g) in zip(before.named_parameters(), zip(want, spy.grads, strict=True)):
        assert (w is None) == (g is None), name_g[0]
        if w is not None:
            assert torch.allclose(g, w, rtol=1e-4, atol=1e-6), name_g[0]


def test_buffer_receives_the_chains_final_states(tmp_path, data_dir):
    t = Trainer(tiny_config("igebm_uncond"), data_dir, tmp_path, device="cpu")
    spy = Spy(t)
    for _ in range(2):
        t.train_step()
        assert torch.equal(spy.pushed, spy.res.x), "the buffer must store the chains' ends"
        assert not torch.equal(spy.pushed, spy.x0)


@pytest.mark.parametrize("enabled", [True, False])
def test_chain_starts_are_buffer_draws_augmented_one_chain_at_a_time(tmp_path, data_dir, enabled):
    # exact copies in, so that only the augmentation can tell the starts apart (not the code's dequantising read)
    t = Trainer(tiny_config("icd", augment={"enabled": enabled}, buffer={"quantize": "round"}), data_dir, tmp_path,
                device="cpu")
    t.buffer.push(torch.rand(1, 3, 32, 32).expand(16, -1, -1, -1))     # 16 copies of one image
    spy = Spy(t)
    t.train_step()
    kept = ~spy.fresh
    assert kept.sum() >= 6 and torch.equal(spy.drawn[kept][0:1].expand(int(kept.sum()), -1, -1, -1),
                                           spy.drawn[kept])
    if not enabled:
        assert torch.equal(spy.x0, spy.drawn)
        return
    # each chain draws its own crop / flip / jitter: no two of the copies come out alike
    starts = spy.x0[kept].flatten(1)
    dist = torch.cdist(starts, starts) + torch.eye(len(starts)) * 1e9
    assert dist.min() > 1e-3


# ----------------------------------------------------------------------------- resume
def test_resumed_run_equals_an_uninterrupted_one(tmp_path, data_dir):
    cfg = tiny_config("icd")
    Trainer(cfg, data_dir, tmp_path / "ref", device="cpu").run(progress=False)
    a = Trainer(cfg, data_dir, tmp_path / "run", device="cpu")
    a.run(stop_after=3, progress=False)   # checkpoint at step 2; step 3 is lost, as after a kill
    b = Trainer(cfg, data_dir, tmp_path / "run", device="cpu")
    torch.manual_seed(1234)                # as in another process: the global RNG elsewhere
    assert b.resume() and b.step == 2
    b.run(progress=False)
    ref, got = (torch.load(p / "model.pt", weights_only=False) for p in (tmp_path / "ref", tmp_path / "run"))
    assert _equal(ref["model"], got["model"]) == [] and _equal(ref["ema"], got["ema"]) == []
    assert _equal(ref["snapshots"], got["snapshots"]) == []


# ----------------------------------------------------------------------------- paper-vs-code switches
def test_code_preset_averages_the_scale_energies_and_paper_text_sums_them(tmp_path, data_dir):
    # Same seed, same data, same Langevin chains (the sampler follows the summed energy either way): the CD
    # term of the summed (paper) loss is exactly 3x the per-scale mean (code) with three scales.
    rows = {}
    for reduce in ("mean", "sum"):
        t = Trainer(icd_config(multiscale_reduce=reduce, kl_opt_coeff=0.0, kl_ent_coeff=0.0, l2_coeff=0.0),
                    data_dir, tmp_path / reduce, device="cpu")
        assert len(t.model.scales) == 3
        rows[reduce] = t.train_step()
    assert rows["sum"]["loss_main"] == pytest.approx(3 * rows["mean"]["loss_main"], rel=1e-4, abs=1e-6)
    assert rows["mean"]["loss_main"] != pytest.approx(rows["sum"]["loss_main"], rel=1e-3)


def test_ml_loss_with_per_scale_mean_is_refused_naming_the_fix():
    with pytest.raises(C.ConfigError, match="multiscale_reduce: sum"):
        icd_config(kind="ml", multiscale_reduce="mean")  # validated with every variant before anything runs


@pytest.mark.parametrize("bank_augment, calls_per_step", [(True, 2), (False, 1)])
def test_entropy_bank_is_augmented_only_when_configured(tmp_path, data_dir, bank_augment, calls_per_step):
    t = Trainer(icd_config(ent_bank_augment=bank_augment), data_dir, tmp_path, device="cpu")
    t.train_step()  # fills the buffer past ent_min_buffer, so L_ent is active from the next step on
    calls = []
    augment = t.augment
    t.augment = lambda x: (calls.append(x.shape[0]), augment(x))[1]
    row = t.train_step()
    assert "loss_ent" in row
    assert len(calls) == calls_per_step  # the chains' start (batch) and, for the code, the bank
    assert calls[0] == 8 and (calls_per_step == 1 or calls[1] == 4)


# ----------------------------------------------------------------------------- issue-8 switches of the step
@pytest.mark.parametrize("fresh_chains", [False, True])
def test_only_buffer_draws_are_augmented_unless_fresh_chains(tmp_path, data_dir, fresh_chains):
    # ICD train.py l.382-390: only replay_buffer.sample applies the transform; re-initialised chains stay U(0, 1)
    t = Trainer(tiny_config("icd", augment={"fresh_chains": fresh_chains}, buffer={"reinit_frac": 0.5}),
                data_dir, tmp_path, device="cpu")
    t.buffer.push(torch.rand(16, 3, 32, 32))
    spy = Spy(t)
    t.train_step()
    fresh = spy.fresh
    assert 0 < fresh.sum() < len(fresh)  # both kinds of chains in this batch
    same = (spy.x0 - spy.drawn).flatten(1).abs().max(1).values < 1e-7     # (B,) start == what the buffer handed out
    assert not same[~fresh].any()                                         # buffer draws: augmented
    assert same[fresh].all() != fresh_chains                              # noise: augmented only when asked


def test_fresh_init_replaces_exactly_the_reinitialised_chain_starts(tmp_path, data_dir):
    # IGEBM's dSprites runs (E11) start fresh chains at 0.5 + 0.5 N(0, 1) instead of U(0, 1)
    t = Trainer(tiny_config("igebm_uncond", buffer={"reinit_frac": 0.5, "quantize": "round"}), data_dir, tmp_path,
                device="cpu")
    t.buffer.push(torch.rand(16, 3, 32, 32))
    calls = []
    t.fresh_init = lambda n, g: (calls.append((n, g)), torch.full((n, 3, 32, 32), -7.0))[1]
    spy = Spy(t)
    t.train_step()
    fresh = spy.fresh
    assert 0 < fresh.sum() < len(fresh) and calls == [(int(fresh.sum()), t.buffer.g)]
    assert (spy.x0[fresh] == -7.0).all()
    assert torch.equal(spy.x0[~fresh], spy.drawn[~fresh])                 # buffer draws untouched


@pytest.mark.parametrize("after_push", [True, False])
def test_entropy_bank_is_drawn_after_the_push_when_configured(tmp_path, data_dir, after_push):
    # ICD train.py: replay_buffer.add (l.412) runs before the 100-sample bank is drawn (l.434), so the bank can
    # hold this step's own chains, and L_ent switches on as soon as the buffer passes ent_min_buffer with them.
    t = Trainer(tiny_config("icd", ent_bank_after_push=after_push, ent_min_buffer=4), data_dir, tmp_path,
                device="cpu")
    seen, recent = [], t.buffer.recent
    t.buffer.recent = lambda n: (seen.append(len(t.buffer)), recent(n))[1]
    rows = [t.train_step() for _ in range(2)]
    # step 1 starts from an empty buffer: only with the push first does the bank exist (8 rows > 4)
    assert ("loss_ent" in rows[0]) == after_push
    assert seen[-1] == (16 if after_push else 8)        # the bank of step 2 sees both steps' chains, or step 1's


def test_a_diverged_run_keeps_the_best_training_time_is_weights(tmp_path, data_dir):
    # Both codes keep the checkpoint with the best training-time IS; a run that diverges is scored from it.
    cfg = tiny_config("igebm_uncond")
    cfg = C.dataclasses.replace(cfg, hp=C.dataclasses.replace(cfg.hp, train=C.dataclasses.replace(
        cfg.hp.train, n_iters=8, eval_every=2, ckpt_every=2, log_every=2)))
    t = Trainer(cfg, data_dir, tmp_path, device="cpu")
    scores = iter([1.5, 2.5, 2.0])                      # best at step 4
    weights = {}

    def evaluate(tr):
        weights[tr.step] = copy.deepcopy(tr.model.state_dict())
        return {"eval_IS": next(scores)}

    t.run(stop_after=6, progress=False, evaluate=evaluate)
    with torch.no_grad():
        next(t.model.parameters()).fill_(float("nan"))
    out = t.run(progress=False, evaluate=evaluate)
    assert out["diverged"]["step"] == 7 and out["diverged"]["scored"] == "best training-time IS (2.50), step 4"
    from ebm_repro import checkpoint as ck
    final = ck.load(tmp_path / "model.pt")
    assert final["step"] == 4 and all(torch.equal(final["model"][k], v) for k, v in weights[4].items())


def test_training_augmentation_blurs_with_the_configured_probability():
    # preset paper_text (ICD §2.3 names Gaussian blur) sets augment.blur_p; the code's CIFAR-10 transform has none
    acfg = C.resolve(load_params(ROOT / "params.yaml"), "icd", setting="paper").hp.augment
    plain = C.dataclasses.replace(acfg, crop_scale_min=1.0, hflip=False, jitter_p=0.0, grayscale_p=0.0)
    board = ((torch.arange(16)[:, None] + torch.arange(16)[None]) % 2).float().expand(2, 3, 16, 16).contiguous()
    assert torch.allclose(make_augment(plain, 16)(board), board, atol=1e-6)              # code: blur_p 0
    blurred = make_augment(C.dataclasses.replace(plain, blur_p=1.0, blur_sigma_min=1.0), 16)(board)
    assert blurred[..., 4:12, 4:12].std() < 0.1 * board.std()
    assert C.resolve(load_params(ROOT / "params.yaml"), "icd", setting="paper", preset="paper_text").hp.augment.blur_p == 0.5
