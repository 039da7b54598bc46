"""E13 (ICD Fig. 6 / 12): transitions between the configured Langevin steps, the chain distances, command, claims."""
from __future__ import annotations

import json

import pytest
import torch

from ebm_repro import augment as A
from ebm_repro import cli
from ebm_repro.claims import NOT_REPRODUCED, REPRODUCED, SMOKE
from ebm_repro.config import ConfigError, SamplerConfig
from ebm_repro.experiments import aug_chains as AC
from ebm_repro.params import load_params
from tests.experiments.run_helpers import ROOT
from tests.experiments.tiny_runs import tiny_world


@pytest.fixture(scope="module")
def params():
    return load_params(ROOT / "params.yaml")


def test_transition_steps_leave_the_final_steps_plain():
    assert AC.transition_steps(100, 20, 20) == [20, 40, 60, 80]
    assert AC.transition_steps(100, 20, 21) == [20, 40, 60]
    assert AC.transition_steps(100, 20, 0) == [20, 40, 60, 80]     # never after the last step
    assert AC.transition_steps(1200, 20, 80) == list(range(20, 1121, 20))   # paper: 56 transitions


class Counting:
    """A flat energy (zero gradient) that counts its calls: one per Langevin step."""

    def __init__(self):
        self.calls = 0

    def __call__(self, x):
        self.calls += 1
        return 0.0 * x.flatten(1).sum(1)


def test_run_chains_takes_each_transition_after_its_step_and_snapshots_before_it():
    energy, seen = Counting(), []

    def transition(x):  # stub: remembers how many Langevin steps came before it, marks the chains
        seen.append(energy.calls)
        return x + 0.01

    sampler = SamplerConfig(n_steps=1, step_size=1.0, noise_std=0.0, grad_clip=0.0, clamp=True)
    x0 = torch.zeros(3, 1, 2, 2)
    shots, calls = AC.run_chains(energy, x0, sampler, 100, [20, 40, 60, 80], [0, 30, 60, 90, 100], transition)
    assert seen == [20, 40, 60, 80] and calls == 4 and energy.calls == 100
    # marks seen at steps 0, 30, 60 (before the transition at 60), 90, 100
    want = torch.tensor([0.0, 0.01, 0.02, 0.04, 0.04])[:, None, None, None, None].expand_as(shots)
    assert shots.shape == (5, 3, 1, 2, 2) and torch.allclose(shots, want, atol=1e-7)
    energy = Counting()
    shots, calls = AC.run_chains(energy, x0, sampler, 100, [20, 40, 60, 80], [0, 100], None)
    assert calls == 0 and energy.calls == 100 and torch.equal(shots[-1], x0)


def test_pairwise_rms_by_hand():
    x = torch.stack([torch.zeros(4), torch.ones(4), torch.zeros(4)])
    assert AC.pairwise_rms(x) == pytest.approx(2 / 3)     # pairs: 1, 0, 1


def test_config_refuses_a_variant_without_augmentation_and_bad_columns(params):
    p = json.loads(json.dumps(params))
    p["aug_chains"]["paper"]["variant"] = "icd_abl_cd"      # Tab. 2 row 1: augment.enabled false
    with pytest.raises(ConfigError, match="augment.enabled false"):  # refused as the command starts
        AC.require_augmentation(p, AC.aug_chains_config(p, "paper"), "paper")
    p = json.loads(json.dumps(params))
    p["aug_chains"]["paper"]["show_every"] = 7
    with pytest.raises(ConfigError, match="multiple of show_every"):
        AC.check(p)


def test_command_applies_the_test_time_transition_at_the_configured_steps(tmp_path, monkeypatch):
    w = tiny_world(tmp_path, train_models=("icd",), feature_net=False)
    made, calls = [], []
    real = A.make_augment

    def counting_make_augment(cfg, size, blur=None):
        made.append(blur)
        aug = real(cfg, size, blur)
        return lambda x: (calls.append(len(x)), aug(x))[1]

    monkeypatch.setattr(A, "make_augment", counting_make_augment)
    out, summary = tmp_path / "ac.png", tmp_path / "ac.json"
    cli.main(["plot-aug-chains", "--params", str(w["params"]), "--model", str(w["models"]["icd"]),
              "--data", str(w["data"]), "--out", str(out), "--summary", str(summary)])
    s = json.loads(summary.read_text())
    # n_steps 6, augment_every 2, final_steps_plain 2: transitions after steps 2 and 4, on the 3 augmented chains
    assert s["transition_steps"] == [2, 4] and calls == [3, 3]
    assert s["conditions"]["plain"]["transitions"] == 0 and s["conditions"]["augmented"]["transitions"] == 2
    ts = load_params(w["params"])["recipes"]["icd"]["test_sampling"]
    assert made == [A.Blur(ts["blur_p"], ts["blur_kernel"], ts["blur_sigma_min"], ts["blur_sigma_max"])]
    assert s["snapshot_steps"] == [0, 2, 4, 6]
    assert out.stat().st_size > 10_000 and out.with_suffix(".pdf").exists()


def _summary(root, setting, plain, augmented):
    d = root / "results" / "aug_chains"
    d.mkdir(parents=True)
    c = lambda f: {"final_pairwise_rms": 0.3 * f, "fraction_of_reference": f}  # noqa: E731
    (d / "summary.json").write_text(json.dumps({"setting": setting, "conditions": {"plain": c(plain),
                                                                                   "augmented": c(augmented)}}))


def test_claims_use_the_same_image_fraction(tmp_path, params):
    p = {**params, "setting": "paper"}
    assert all(c.verdict.startswith("not run:") for c in AC.claims(p, f"{tmp_path}/"))
    _summary(tmp_path, "paper", 0.02, 0.09)                # plain collapsed; augmented below 10 %: not separated
    got = {c.key: c.verdict for c in AC.claims(p, f"{tmp_path}/")}
    assert got == {"qualitative/aug_chains/plain": REPRODUCED, "qualitative/aug_chains/augmented": NOT_REPRODUCED}
    smoke = tmp_path / "s"
    _summary(smoke, "smoke", 0.02, 0.5)
    assert {c.verdict for c in AC.claims({**params, "setting": "smoke"}, f"{smoke}/")} == {SMOKE}
