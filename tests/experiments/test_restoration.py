"""E7 (IGEBM Fig. 5): corruption masks, masked Langevin, the restore/report commands and the claims."""
from __future__ import annotations

import json
import math

import pytest
import torch
import yaml

from ebm_repro import config as C
from ebm_repro.claims import NOT_REPRODUCED, REPRODUCED, SMOKE
from ebm_repro.cli import main
from ebm_repro.config import SamplerConfig
from ebm_repro.experiments import restoration as R
from ebm_repro.models import make_model
from ebm_repro.params import load_params
from tests.experiments.tiny_ebm import ROOT, tiny_checkpoint, tiny_data, tiny_params


def test_salt_and_pepper_touches_exactly_the_drawn_pixel_positions_at_the_rate():
    x = 0.2 + 0.6 * torch.rand(16, 3, 32, 32)       # no clean value equals 0.1 or 0.9
    out, mask = R.salt_and_pepper(x, 0.1, 0.1, 0.9, torch.Generator().manual_seed(3))
    u = torch.rand((16, 1, 32, 32), generator=torch.Generator().manual_seed(3))   # the same draw
    assert torch.equal(mask, u < 0.1)                # the positions the code picks: u < 0.05 or 0.05 <= u < 0.1
    changed = (out != x).any(dim=1, keepdim=True)    # (B, 1, H, W): a position with any channel changed
    assert torch.equal(changed, mask)                # exactly the masked positions, nothing else
    assert torch.equal(out[~mask.expand_as(x)], x[~mask.expand_as(x)])
    hit = out.permute(0, 2, 3, 1)[mask[:, 0]]        # (n_hit, C): every channel of a hit position
    assert torch.all((hit == 0.1).all(1) | (hit == 0.9).all(1))
    n = mask.numel()
    sd = math.sqrt(n * 0.1 * 0.9)
    assert abs(int(mask.sum()) - 0.1 * n) < 4 * sd  # binomial(16384, 0.1): 1638 +- 154 at 4 sd
    assert torch.equal((hit == 0.1).all(1), (u < 0.05)[mask])   # pepper where u < rate / 2, salt above


def test_lower_half_mask_covers_rows_h2_and_below():
    m = R.lower_half_mask(torch.zeros(2, 3, 32, 32))
    assert m.shape == (1, 1, 32, 32)
    assert m[..., :16, :].sum() == 0 and torch.all(m[..., 16:, :] == 1)


def tiny_net(n_classes: int = 10):
    torch.manual_seed(0)
    cfg = C.ModelConfig(arch="igebm_resnet32", width=4, n_classes=n_classes, spectral_norm=True,
                        spectral_norm_head=False, dropout=0.0, attention=False, multiscale=False,
                        activation="leaky_relu", norm="none", image_size=32, channels=3, sn_init="code",
                        head_init="xavier", cond_gain_offset=True, residual_skip=True)
    return make_model(cfg).eval().requires_grad_(False)


def test_inpainting_never_moves_the_known_half_and_changes_the_other():
    net = tiny_net()
    y = torch.arange(4)
    x = torch.rand(4, 3, 32, 32)
    m = R.lower_half_mask(x)
    start = x * (1 - m) + torch.rand_like(x) * m
    sampler = SamplerConfig(n_steps=1, step_size=10.0, noise_std=0.005, grad_clip=0.0, clamp=True)
    out = R.langevin_restore(lambda z: net(z, y), start, sampler, 5, mask=m)
    assert torch.equal(out[..., :16, :], x[..., :16, :])          # bit for bit: no noise, no step there
    assert (out[..., 16:, :] - start[..., 16:, :]).abs().max() > 1e-3
    free = R.langevin_restore(lambda z: net(z, y), start, sampler, 5)   # control: without the mask it moves
    assert not torch.equal(free[..., :16, :], x[..., :16, :])


def run_e7(tmp_path, setting: str = "smoke"):
    params = tiny_params(tmp_path, setting="smoke")
    data = tiny_data(tmp_path)
    _, model = tiny_checkpoint(params, "igebm_cond", tmp_path / "train" / "model.pt")
    common = ["--params", str(params), "--setting", setting]
    judge = tmp_path / "classifier.pt"
    main(["train-classifier", *common, "--data", str(data), "--out", str(judge)])
    res = tmp_path / "results" / "restoration" / "restoration.json"
    npz = tmp_path / "results" / "restoration" / "panel.npz"
    main(["restore-images", *common, "--model", str(model), "--classifier", str(judge), "--data", str(data),
          "--out-json", str(res), "--out-npz", str(npz)])
    table, png = tmp_path / "results" / "tables" / "restoration.md", tmp_path / "results" / "figures" / "r.png"
    main(["report-restoration", *common, "--results", str(res), "--panel", str(npz), "--out-table", str(table),
          "--out-png", str(png)])
    return res, table, png


def test_restore_and_report_write_shares_mse_table_and_figure(tmp_path):
    res, table, png = run_e7(tmp_path)
    r = json.loads(res.read_text())
    assert set(r["tasks"]) == set(R.TASKS) and r["n_images"] == 6
    for t, m in r["tasks"].items():
        assert 0 <= m["share_changed"] <= 1 and m["n_changed"] == round(m["share_changed"] * 6)
        assert m["mse_after"] >= 0
    assert r["tasks"]["identity"]["mse_start"] == 0 and r["tasks"]["inpainting"]["mse_start"] > 0.01
    assert r["tasks"]["inpainting"]["langevin_steps"] == 2 and r["tasks"]["identity"]["langevin_steps"] == 1
    text = table.read_text()
    assert "~10%" in text and "~30%" in text and f"{r['classifier']['test_acc']:.1f}%" in text
    assert "Smoke setting" in text
    assert png.stat().st_size > 1000 and png.with_suffix(".pdf").exists()
    assert json.loads((table.parent / "restoration.md.provenance.json").read_text())["setting"] == "smoke"


def test_claims_compare_each_share_with_the_paper_within_5_points(tmp_path):
    params = load_params(ROOT / "params.yaml")
    missing = R.claims(params, f"{tmp_path}/")
    assert [c.verdict.startswith("not run") for c in missing] == [True] * 3
    out = tmp_path / "results" / "restoration"
    out.mkdir(parents=True)
    tasks = {"identity": 0.14, "salt_and_pepper": 0.36, "inpainting": 0.26}
    body = {"setting": "paper", "tasks": {t: {"share_changed": v} for t, v in tasks.items()}}
    (out / "restoration.json").write_text(json.dumps(body))
    got = {c.claim.split(": ")[-1]: c for c in R.claims(params, f"{tmp_path}/")}
    assert got["test image (identity)"].verdict == REPRODUCED          # |0.14 - 0.10| <= 0.05
    assert got["salt-and-pepper"].verdict == NOT_REPRODUCED            # |0.36 - 0.30| > 0.05
    assert got["lower half inpainted"].verdict == REPRODUCED
    assert got["salt-and-pepper"].paper == 0.30 and got["salt-and-pepper"].reproduced == 0.36
    (out / "restoration.json").write_text(json.dumps({**body, "setting": "smoke"}))
    assert {c.verdict for c in R.claims(params, f"{tmp_path}/")} == {SMOKE}


def test_bad_salt_and_pepper_values_are_rejected_naming_the_key(tmp_path):
    p = yaml.safe_load((ROOT / "params.yaml").read_text())
    p["restoration"]["smoke"]["salt_and_pepper"] = {"low": 0.9, "high": 0.1}
    with pytest.raises(C.ConfigError, match="restoration.smoke.salt_and_pepper"):
        R.check(p)
