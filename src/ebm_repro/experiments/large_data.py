"""E17, E18: ImageNet 32x32 (IGEBM Fig. 11, ICD Fig. 3), CelebA-HQ 128 and LSUN bedroom 128 (ICD Fig. 3, App. B.2).

These datasets need an account or a manual download. params.yaml `large_data` names the local folder of each
and the image counts of a complete copy; `check-large-dataset` writes a status record (missing, with the message
naming what to download and where; or present, with counts and a sha256 manifest of the raw files) and
`prepare-large-dataset` converts a checked folder into our .npz splits. Their variants are rows of
results/tables/inception.md (inception.rows); a row whose dataset is absent reads "not run: dataset missing".
The floor module is datasets_large.py; workflow/rules/large_data.smk adds the training jobs only for folders
that are there when Snakemake builds the DAG.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ebm_repro import commands
from ebm_repro import config as C
from ebm_repro import datasets_large as DL
from ebm_repro.claims import Claim, number_claim

BLOCK = "large_data"


@dataclass(frozen=True)
class LocalDataset:
    """A manual download: its folder and the image counts of a complete copy (checked before conversion)."""
    # relative to the setting's prefix, or absolute; no spaces or '..' (it lands in shell commands)
    path: str = field(metadata={"schema": {"pattern": r"^(?!.*\.\.)[A-Za-z0-9_./-]+$"}})
    n_train: int = C._pos()          # images of the training part (celebahq128: of the whole release)
    n_test: int = C._pos()           # images of the test part (celebahq128: held out of the release by us)
    max_train: int = C._pos(minimum=0)  # convert at most this many training images (0 = all)


@dataclass(frozen=True)
class LargeDataConfig:
    imagenet32: LocalDataset
    celebahq128: LocalDataset
    lsun_bedroom128: LocalDataset


def schema() -> dict:
    return C.dataclass_schema(LargeDataConfig)


def check(params: dict) -> None:
    """CelebA-HQ's held-out part must leave training images."""
    c = params[BLOCK]["celebahq128"]
    if c["n_test"] >= c["n_train"]:
        raise C.ConfigError(f"large_data.celebahq128.n_test ({c['n_test']}) must be below n_train "
                            f"({c['n_train']}, the images of the release)")


def expected_counts(name: str, entry: dict) -> dict[str, int]:
    """The counts check() compares with (datasets_large.counts keys)."""
    if name == "celebahq128":
        return {"images": entry["n_train"]}
    return {"train": entry["n_train"], "test": entry["n_test"]}


def dataset_path(params: dict, name: str) -> Path:
    prefix = params["settings"][params["setting"]]["prefix"]
    return DL.resolve_path(params[BLOCK][name]["path"], prefix)


# ----------------------------------------------------------------------------- commands
def cmd_check(a) -> None:
    p = commands.load(a)
    entry, path = p[BLOCK][a.name], dataset_path(p, a.name)
    try:
        status = DL.check(a.name, path, expected_counts(a.name, entry))
    except DL.LargeDatasetError as err:
        raise SystemExit(f"error: {err}")
    from ebm_repro.checkpoint import atomic_write_text

    atomic_write_text(Path(a.manifest), status.pop("manifest", ""))
    atomic_write_text(Path(a.out), json.dumps(status, indent=1) + "\n")
    if status["status"] == "missing":
        print(status["message"], file=sys.stderr)
    print(json.dumps({k: v for k, v in status.items() if k != "message"}))


def cmd_prepare(a) -> None:
    p = commands.load(a)
    entry = p[BLOCK][a.name]
    status = json.loads(Path(a.status).read_text())
    n_test = entry["n_test"] if a.name == "celebahq128" else 0
    try:
        info = DL.prepare(a.name, dataset_path(p, a.name), Path(a.out), status, entry["max_train"], n_test)
    except DL.LargeDatasetError as err:
        raise SystemExit(f"error: {err}")
    print(json.dumps(info, indent=1))


def cmd_prepare_attribute(a) -> None:
    print(json.dumps(DL.prepare_attribute(Path(a.data), Path(a.out), a.attribute), indent=1))


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("check-large-dataset", help="status of a manual download (layout, counts, sha256 manifest)")
    commands.add_common(p)
    p.add_argument("--name", required=True, choices=sorted(DL.SPECS))
    p.add_argument("--out", required=True, help="status JSON")
    p.add_argument("--manifest", required=True, help="sha256sum-format manifest of the raw files")
    p.set_defaults(fn=cmd_check)
    p = sub.add_parser("prepare-large-dataset", help="convert a checked download into {train,test}.npz")
    commands.add_common(p)
    p.add_argument("--name", required=True, choices=sorted(DL.SPECS))
    p.add_argument("--status", required=True)
    p.add_argument("--out", required=True, help="folder for train.npz, test.npz, checksums.json")
    p.set_defaults(fn=cmd_prepare)
    p = sub.add_parser("prepare-attribute-dataset", help="celebahq128 labelled by one attribute (E19)")
    commands.add_common(p)
    p.add_argument("--attribute", required=True, choices=sorted(DL.ATTRIBUTES))
    p.add_argument("--data", required=True, help="the prepared celebahq128 folder")
    p.add_argument("--out", required=True)
    p.set_defaults(fn=cmd_prepare_attribute)


# ----------------------------------------------------------------------------- claims
def claims(params: dict, prefix: str) -> list[Claim]:
    """IS / FID of each inception.rows row that trains on a manual download (E17, E18)."""
    from ebm_repro.report import paper_lookup, paper_source

    out = []
    for row in params["inception"]["rows"]:
        cfg = C.resolve(params, row["variant"], validated=True)
        base = DL.base_of(cfg.dataset)
        if base is None:
            continue
        status_path = Path(f"{prefix}data/{base}/status.json")
        metrics_path = Path(f"{prefix}results/metrics/{row['variant']}/{row['mode']}.json")
        m = json.loads(metrics_path.read_text()) if metrics_path.exists() else None
        status = json.loads(status_path.read_text()) if status_path.exists() else None
        if m is not None:
            missing = None
        elif status and status["status"] == "missing":
            missing = DL.missing_cell(base, Path(status["path"]))[len("not run: "):]
        else:
            missing = "no metrics yet (run the row's target)"
        for key in row["paper"]:
            paper = paper_lookup(key)
            for kind in ("IS", "FID"):
                if paper.get(kind) is None:
                    continue
                value = None if m is None else m.get(f"{kind}_mean" if kind == "IS" else kind)
                out.append(number_claim(f"{key}/{kind}", f"{kind} of {row['row']}",
                                        paper_source(key), paper[kind], value, kind,
                                        "results/tables/inception.md", params["setting"], missing))
    return out
