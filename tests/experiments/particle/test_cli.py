"""The four CLI commands end to end on a tiny params file."""
import json
from pathlib import Path

import yaml

from ebm_repro.cli import main


def test_cli_pipeline(tmp_path, params):
    p = yaml.safe_load(yaml.safe_dump(params))
    p["particle"]["smoke"].update({"data": {"n_train": 8, "n_test": 4, "n_steps": 30},
                                   "train": {"batch_size": 8, "n_iters": {"feedforward": 2, "ebm_ld": 2, "ebm_mppi": 2}, "n_seeds": 2, "log_every": 1},
                                   "eval": {"horizon": 10, "n_starts": 1}})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(p))
    common = ["--setting", "smoke", "--params", str(tmp_path / "params.yaml")]
    data = str(tmp_path / "d.npz")
    main(["particle-simulate", *common, "--out", data])
    rollouts = []
    for kind in ("feedforward", "ebm_ld", "ebm_mppi"):
        ckpts = []
        for seed in (0, 1):
            ck = str(tmp_path / f"{kind}_{seed}.pt")
            main(["particle-train", *common, "--model", kind, "--seed", str(seed), "--data", data, "--out", ck,
                  "--history", str(tmp_path / f"{kind}_{seed}.json")])
            ckpts.append(ck)
        rollouts.append(str(tmp_path / f"{kind}.npz"))
        main(["particle-evaluate", *common, "--model", kind, "--data", data, "--ckpts", *ckpts, "--out", rollouts[-1]])
    out = {k: str(tmp_path / k) for k in ("t.md", "f.png", "f.pdf", "s.json")}
    main(["particle-report", *common, "--data", data, "--rollouts", *rollouts, "--table", out["t.md"], "--figure-png", out["f.png"],
          "--figure-pdf", out["f.pdf"], "--summary", out["s.json"]])
    assert "| EBM (MPPI) |" in (tmp_path / "t.md").read_text()
    for path in out.values():  # each output names its inputs and config for an auditor
        prov = json.loads(Path(path + ".provenance.json").read_text())
        assert prov["setting"] == "smoke" and data in prov["inputs"] and len(prov["config_hash"]) == 12
