"""How far a whole Langevin chain moves under each runtime switch: the tolerance behind params.yaml `runtime:`.

    python benchmarks/precision.py --models smoke/results/train      # + trained smoke checkpoints, if present
Writes results/tables/precision.md (+ .json). Not a test.

From the same chain starts and the same noise, each net runs its recipe's whole training chain (40 / 60 steps)
under the reference (eager fp32 NCHW) and under each switch; the final samples are compared with the reference's:
- rms pixel deviation, beside the reference's own deviation when its starts move by U(+-1e-6) (the rounding
  floor: ICD's step size 100 amplifies any rounding ~1e4-fold over a chain);
- final energies (fp32, eval mode): the mean shift over the chains, in units of the reference energies' spread
  (std over chains), and the paired t statistic of the shift (|t| < 4: no shift detectable with these chains).
A switch is "within tolerance" when its rms deviation is at most 3x the rounding floor and its energy shift is
not detectable (|t| < 4) and below 0.1 spread -- the criterion stated in params.yaml.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]

from ebm_repro import checkpoint as ck  # noqa: E402
from ebm_repro import config as C  # noqa: E402
from ebm_repro.models import make_model  # noqa: E402
from ebm_repro.params import load_params  # noqa: E402
from ebm_repro.runtime import HotPath, prepare_model, set_matmul_precision  # noqa: E402
from ebm_repro.sampling import make_langevin  # noqa: E402

REF = C.RuntimeConfig()
SWITCHES = {"channels_last": dataclasses.replace(REF, channels_last=True),
            "bf16": dataclasses.replace(REF, precision="bf16")}
GPU_SWITCHES = {"tf32": dataclasses.replace(REF, precision="tf32")}   # TF32 exists on GPUs only
RMS_SLACK, T_MAX, SHIFT_MAX = 3.0, 4.0, 0.1


def chain_end(net, rt, cfg: C.RunConfig, x0, y, seed: int) -> torch.Tensor:
    set_matmul_precision(rt, x0.device)
    hot = HotPath(prepare_model(copy.deepcopy(net), rt), rt, x0.device)
    sample = make_langevin(cfg.hp.sampler)
    torch.manual_seed(seed)
    with hot.chain_scope():
        x = sample(lambda z: hot.energy(z, y), x0).x
    set_matmul_precision(REF, x0.device)
    return x


def compare(label: str, net: torch.nn.Module, cfg: C.RunConfig, batch: int, dev: torch.device) -> dict:
    m = cfg.hp.model
    net = net.to(dev)
    torch.manual_seed(0)
    x0 = torch.rand(batch, m.channels, m.image_size, m.image_size, device=dev)
    y = torch.arange(batch, device=dev) % m.n_classes if m.n_classes else None
    nudged = (x0 + (torch.rand_like(x0) - 0.5) * 2e-6).clamp(0, 1)
    ref = chain_end(net, REF, cfg, x0, y, 1)
    ends = {"rounding floor (fp32, starts +-1e-6)": chain_end(net, REF, cfg, nudged, y, 1)}
    for k, rt in {**SWITCHES, **(GPU_SWITCHES if dev.type == "cuda" else {})}.items():
        ends[k] = chain_end(net, rt, cfg, x0, y, 1)
    judge = copy.deepcopy(net).eval()
    with torch.no_grad():
        e_ref = judge(ref, y)
        out = {"label": label, "variant": cfg.variant, "batch": batch, "device": str(dev), "steps": cfg.hp.sampler.n_steps,
               "step_size": cfg.hp.sampler.step_size, "energy_spread": float(e_ref.std()), "rows": {}}
        floor = None
        for k, x in ends.items():
            d = judge(x, y) - e_ref
            rms = float((x - ref).pow(2).mean().sqrt())
            floor = rms if floor is None else floor
            t = float(d.mean() / (d.std() / math.sqrt(len(d)) + 1e-12))
            out["rows"][k] = {"rms": rms, "shift": float(d.mean()) / float(e_ref.std()), "t": t}
        for k, r in out["rows"].items():
            r["within"] = (r["rms"] <= RMS_SLACK * floor and abs(r["t"]) < T_MAX and abs(r["shift"]) < SHIFT_MAX)
    return out


def nets(params: dict, models: Path | None, paper_batch: int, smoke_batch: int, paper_nets: list[str]):
    for v in paper_nets:   # paper-size nets, random initialisation
        cfg = C.resolve(params, v, "paper")
        torch.manual_seed(0)
        yield f"{v} (paper size, untrained)", make_model(cfg.hp.model).train(), cfg, paper_batch
    if models is None:
        return
    for v in ("icd", "igebm_uncond", "igebm_cond"):   # trained smoke checkpoints, with the paper's chains
        path = models / v / "model.pt"
        if not path.exists():
            continue
        c = ck.load(path)
        cfg = C.resolve(params, v, "smoke")
        cfg = dataclasses.replace(cfg, hp=dataclasses.replace(
            cfg.hp, sampler=C.resolve(params, v, "paper").hp.sampler))
        net = make_model(cfg.hp.model)
        ck.load_state_strict(net, c["model"], str(path))
        yield f"{v} (smoke-trained, width {cfg.hp.model.width}, step {c['step']})", net.train(), cfg, smoke_batch


def render(rows: list[dict]) -> str:
    L = ["# Whole-chain deviation under each runtime switch (the tolerance of params.yaml `runtime:`)", "",
         f"Device: {rows[0].get('device', 'cpu') if rows else 'cpu'}; torch {torch.__version__}.", "",
         f"Written by `benchmarks/precision.py` (method in its docstring). Within tolerance: rms deviation <= "
         f"{RMS_SLACK:g} x the rounding floor, and the final-energy shift below {SHIFT_MAX} spread and not "
         f"detectable (|t| < {T_MAX:g}).", "",
         "| net | chains | LD steps (size) | energy spread | run | rms pixel deviation | energy shift / spread | "
         "t | within |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        for k, x in r["rows"].items():
            L.append(f"| {r['label']} | {r['batch']} | {r['steps']} ({r['step_size']:g}) | {r['energy_spread']:.3g} | "
                     f"{k} | {x['rms']:.2e} | {x['shift']:+.3f} | {x['t']:+.1f} | {'yes' if x['within'] else 'no'} |")
    return "\n".join(L) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", help="folder with <variant>/model.pt (e.g. smoke/results/train)")
    ap.add_argument("--paper-nets", nargs="*", default=["icd"])
    ap.add_argument("--paper-batch", type=int, default=16)
    ap.add_argument("--smoke-batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=str(ROOT / "results" / "tables" / "precision.md"))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    params = load_params()
    rows = []
    for label, net, cfg, batch in nets(params, Path(a.models) if a.models else None, a.paper_batch, a.smoke_batch,
                                       a.paper_nets):
        rows.append(compare(label, net, cfg, batch, torch.device(a.device)))
        print(json.dumps(rows[-1]), flush=True)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(rows))
    out.with_suffix(".json").write_text(json.dumps({"torch": torch.__version__, "threads": a.threads,
                                                    "device": a.device, "rows": rows}, indent=1) + "\n")
    print(out.read_text())


if __name__ == "__main__":
    sys.exit(main())
