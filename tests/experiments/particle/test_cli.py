"""The five CLI commands end to end on a tiny params file."""
import json
from pathlib import Path

import torch
import yaml

from ebm_repro.cli import main


def test_cli_pipeline(tmp_path, params):
    p = yaml.safe_load(yaml.safe_dump(params))
    p["particle"]["smoke"].update({"data": {"n_train": 8, "n_test": 4, "n_steps": 30},
                                   "train": {"batch_size": 8, "max_iters": 2, "eval_every": 1, "patience": 2, "n_seeds": 2,
                                             "val_traj": 2, "val_windows": 8},
                                   "fig15c": {"feedforward": False, "ebm_ld": True, "ebm_mppi": False},
                                   "eval": {"horizon": 10, "n_starts": 1, "probe_windows": 4}})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(p))
    common = ["--setting", "smoke", "--params", str(tmp_path / "params.yaml")]
    data = str(tmp_path / "d.npz")
    main(["particle-simulate", *common, "--out", data])
    rollouts, histories = [], []
    for kind in ("feedforward", "ebm_ld", "ebm_mppi", "ebm_ld_fig15c"):
        ckpts = []
        for seed in (0, 1):
            ck = str(tmp_path / f"{kind}_{seed}.pt")
            histories.append(str(tmp_path / f"{kind}_{seed}.json"))
            main(["particle-train", *common, "--model", kind, "--seed", str(seed), "--data", data, "--out", ck,
                  "--history", histories[-1]])
            ckpts.append(ck)
        rollouts.append(str(tmp_path / f"{kind}.npz"))
        main(["particle-evaluate", *common, "--model", kind, "--data", data, "--ckpts", *ckpts, "--out", rollouts[-1]])
    ck = torch.load(tmp_path / "ebm_ld_0.pt", weights_only=True)  # plain types only: safe loading works
    assert ck["iters"] == 2 and ck["stopped"] in ("max_iters", "plateau") and ck["best_iter"] in (1, 2)
    diag = {k: str(tmp_path / k) for k in ("d.json", "d.png", "d.pdf")}
    main(["particle-diagnose", *common, "--data", data, "--rollouts", *rollouts,
          "--ckpts", *(str(tmp_path / f"{k}_0.pt") for k in ("feedforward", "ebm_ld", "ebm_mppi", "ebm_ld_fig15c")),
          "--out", diag["d.json"], "--figure-png", diag["d.png"], "--figure-pdf", diag["d.pdf"]])
    d = json.loads(Path(diag["d.json"]).read_text())
    assert set(d["rollouts"]) == {"feedforward", "ebm_ld", "ebm_mppi", "ebm_ld_fig15c"}
    assert set(d["probes"]) == {"ebm_ld", "ebm_mppi", "ebm_ld_fig15c"} and set(d["one_step"]) == set(d["rollouts"])
    out = {k: str(tmp_path / k) for k in ("t.md", "f.png", "f.pdf", "s.json")}
    main(["particle-report", *common, "--data", data, "--rollouts", *rollouts, "--histories", *histories,
          "--diagnosis", diag["d.json"], "--table", out["t.md"], "--figure-png", out["f.png"],
          "--figure-pdf", out["f.pdf"], "--summary", out["s.json"]])
    table = (tmp_path / "t.md").read_text()
    assert "| EBM (MPPI) |" in table and "| EBM (Langevin), Fig. 15c input |" in table
    assert "- EBM (Langevin): 2 (" in table and "argmin along the step" in table
    for path in [*out.values(), *diag.values()]:  # each output names its inputs and config for an auditor
        prov = json.loads(Path(path + ".provenance.json").read_text())
        assert prov["setting"] == "smoke" and data in prov["inputs"] and len(prov["config_hash"]) == 12
