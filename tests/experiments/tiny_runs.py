"""Helpers of the qualitative-figure tests: a tiny smoke world (params, data, feature net, model files, samples)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml

from ebm_repro import checkpoint as ck
from ebm_repro import config as C
from ebm_repro.data import prepare_dataset
from ebm_repro.feature_net import train_feature_classifier
from ebm_repro.models import make_model
from ebm_repro.params import load_params
from tests.experiments.run_helpers import ROOT


def tiny_world(root: Path, blocks: dict | None = None, train_models: tuple[str, ...] = ("icd", "igebm_uncond"),
               feature_net: bool = True) -> dict:
    """params.yaml (smoke, width-4 nets, 2 IS splits, small E12/E13/E16 blocks with `blocks` merged over them),
    a 300 / 100 image shapes dataset, a one-epoch feature classifier (if feature_net), untrained model.pt and
    40 uniform-noise samples per variant.
    """
    p = load_params(ROOT / "params.yaml")
    p["setting"] = "smoke"
    p["settings"]["smoke"]["overrides"]["model"] = {"width": 4}
    p["settings"]["smoke"]["metrics"].update(n_samples=40, n_splits=2, batch_size=50)
    small = {"low_temperature": {"n_steps": 3, "n_samples": 4, "n_show": 4, "log_every": 2, "n_reference": 50},
             "aug_chains": {"n_chains": 3, "n_steps": 6, "augment_every": 2, "final_steps_plain": 2,
                            "show_every": 2, "n_reference": 20},
             "neighbours": {"n_queries": 40, "n_reference": 50, "n_show": 3, "k": 3, "query_chunk": 16,
                            "key_chunk": 64}}
    for name in small:
        p[name]["smoke"] = {**p[name].get("smoke", {}), **small[name], **(blocks or {}).get(name, {})}
    params = root / "params.yaml"
    params.write_text(yaml.safe_dump(p, sort_keys=False))
    data = root / "data"
    prepare_dataset("shapes", data, seed=0, n_train=300, n_test=100)
    fnet = root / "clf.pt"
    if feature_net:
        train_feature_classifier(data / "train.npz", data / "test.npz", fnet, epochs=1, seed=0)
    models, samples = {}, {}
    rng = np.random.default_rng(0)
    for v in train_models:
        cfg = C.resolve(load_params(params), v)
        net = make_model(cfg.hp.model)
        models[v] = root / v / "model.pt"
        models[v].parent.mkdir(parents=True)
        ck.save(models[v], {"format": ck.FORMAT, "kind": "model", "model_args": ck.model_args(cfg.hp.model),
                            "config": cfg.to_dict(), "step": 1, "model": net.state_dict(),
                            "ema": net.state_dict(), "snapshots": [net.state_dict()], "diverged": None})
        samples[v] = root / v / "single.npz"
        np.savez(samples[v], images=rng.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8),
                 labels=np.full(40, -1, np.int64), info=json.dumps({"train_step": 1}))
    return {"params": params, "p": load_params(params), "data": data, "feature_net": fnet, "models": models,
            "samples": samples}
