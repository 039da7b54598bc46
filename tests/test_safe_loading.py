"""Untrusted files cannot run code: every loader reads data only; old files get one conversion message."""
from __future__ import annotations

import argparse
import ast
import hashlib
import io
import json
import pickle
import random
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from ebm_repro import checkpoint as ck
from ebm_repro import cli
from ebm_repro.data import DATASETS, DatasetError, prepare_dataset, safe_extract
from ebm_repro.feature_net import load_feature_classifier
from ebm_repro.cli import main as cli_main

ROOT = Path(__file__).resolve().parents[1]


class _Payload:
    """Unpickling this calls open(marker, "w"): a file appears iff the loader ran code from the file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


def crafted(tmp_path: Path, name: str, zip_format: bool = True, **plain) -> tuple[Path, Path]:
    """A torch file that looks like ours (format 2 plus `plain`) with one code-running object inside."""
    path, marker = tmp_path / name, tmp_path / f"{name}.MARKER"
    obj = {"format": ck.FORMAT, **plain, "evil": _Payload(marker)}
    torch.save(obj, path, _use_new_zipfile_serialization=zip_format)
    return path, marker


def test_the_crafted_file_does_run_code_when_fully_unpickled(tmp_path, capsys):
    # control: without this the refusal tests below could pass with a harmless file
    path, marker = crafted(tmp_path, "x.pt")
    ck.load_third_party(path, trust_pickle=True)
    assert marker.exists()
    assert "WARNING: fully unpickling" in capsys.readouterr().err


# ----------------------------------------------------------------------------- one test per loader
def _checkpoint_load(path: Path, tmp_path: Path) -> str:
    with pytest.raises(ck.UnsafeCheckpointError) as e:
        ck.load(path)
    return str(e.value)


def _feature_net(path: Path, tmp_path: Path) -> str:
    with pytest.raises(ck.UnsafeCheckpointError) as e:
        load_feature_classifier(path)
    return str(e.value)


def _cli_metrics(path: Path, tmp_path: Path) -> str:
    samples = tmp_path / "samples.npz"
    info = {"train_step": 1, "diverged": None, "config": {"hp": {"test_sampling": {}}}}
    np.savez(samples, images=np.zeros((20, 32, 32, 3), np.uint8), labels=np.zeros(20, np.int64),
             info=json.dumps(info))
    with pytest.raises(SystemExit) as e:
        cli.main(["metrics", "--params", str(ROOT / "params.yaml"), "--setting", "smoke", "--variant", "icd",
                  "--mode", "single", "--samples", str(samples), "--data", str(tmp_path / "nodata"),
                  "--feature-net", str(path), "--out", str(tmp_path / "m.json")])
    assert not (tmp_path / "m.json").exists()
    return str(e.value.code)


def _particle_evaluate(path: Path, tmp_path: Path) -> str:
    with pytest.raises(SystemExit) as e:
        cli_main(["particle-evaluate", "--setting", "smoke", "--params", str(ROOT / "params.yaml"),
                           "--model", "feedforward", "--data", str(tmp_path / "nodata.npz"),
                           "--out", str(tmp_path / "r.npz"), "--ckpts", str(path)])
    return str(e.value.code)


def _third_party(path: Path, tmp_path: Path) -> str:
    with pytest.raises(ck.UnsafeCheckpointError) as e:
        ck.load_third_party(path)
    assert "--trust-pickle" in str(e.value)
    return str(e.value)


def _convert(path: Path, tmp_path: Path) -> str:
    before = path.read_bytes()
    with pytest.raises(SystemExit) as e:
        ck.main(["convert", str(path)])
    assert path.read_bytes() == before and not path.with_name(path.name + ".format1.bak").exists()
    return str(e.value.code)


LOADERS = {"checkpoint.load": _checkpoint_load, "feature_net": _feature_net, "cli metrics": _cli_metrics,
           "particle evaluate": _particle_evaluate, "third party": _third_party, "convert": _convert}


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
@pytest.mark.parametrize("loader", LOADERS)
def test_crafted_file_is_refused_by_every_loader_without_running_it(tmp_path, loader, zip_format):
    # plain keys make the file pass any shape check a loader would do after unpickling
    path, marker = crafted(tmp_path, "f.pt", zip_format, kind="feedforward", state_dict={}, arch={})
    msg = LOADERS[loader](path, tmp_path)
    assert "cannot be loaded as data only" in msg and "`io.open`" in msg and str(path) in msg
    assert not marker.exists()


# ----------------------------------------------------------------------------- format 1 -> 2
def _old_format_state() -> dict:
    """A train state as the format-1 code wrote it: numpy's and python's RNG states as their own objects."""
    np.random.seed(3)
    np.random.randn(3)  # odd number of legacy normals: a cached gaussian (has_gauss = 1)
    random.seed(4)
    random.gauss(0, 1)  # python caches the pair's second value too
    net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    return {"format": 1, "kind": "train_state", "step": 7, "model": net.state_dict(),
            "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()},
            "log": [{"step": 2, "loss": 0.5}], "snapshots": ["snap_00000007.pt"]}


def _draws() -> tuple:
    return torch.rand(3).tolist(), np.random.randn(3).tolist(), [random.gauss(0, 1), random.random()]


def test_old_format_gets_the_conversion_message_and_convert_makes_it_equal(tmp_path, capsys):
    path = tmp_path / "last.pt"
    old = _old_format_state()
    ck.atomic_write(path, lambda f: torch.save(old, f))  # exactly how format-1 ck.save wrote it
    original = path.read_bytes()

    with pytest.raises(ck.UnsafeCheckpointError) as e:
        ck.load(path)
    msg = str(e.value)
    assert "format 1" in msg and f"`python -m ebm_repro.checkpoint convert {path}`" in msg and "runs no code" in msg
    assert e.value.global_name.startswith("numpy")
    assert path.read_bytes() == original

    ck.main(["convert", str(path)])
    out = capsys.readouterr()
    assert "converted format 1 -> 2" in out.out and "WARNING" not in out.err
    assert (tmp_path / "last.pt.format1.bak").read_bytes() == original
    new = ck.load(path)  # data only from now on
    assert new["format"] == ck.FORMAT and new["step"] == 7 and new["log"] == old["log"]
    assert new["snapshots"] == old["snapshots"]
    assert new["model"].keys() == old["model"].keys()
    assert all(torch.equal(new["model"][k], old["model"][k]) for k in old["model"])
    assert new["model"]._metadata == old["model"]._metadata  # module versions kept for load_state_dict

    ck.set_rng_state(new["rng"])
    got = _draws()
    torch.set_rng_state(old["rng"]["torch"])
    np.random.set_state(old["rng"]["numpy"])
    random.setstate(old["rng"]["python"])
    assert got == _draws()  # every stream continues exactly where the old file left it

    ck.main(["convert", str(path)])
    assert "already format 2" in capsys.readouterr().out


def test_convert_reads_numpy_arrays_but_runs_nothing(tmp_path):
    # a file that looks like a format-1 train state (numpy RNG first) with a code-running object after it
    path, marker = tmp_path / "last.pt", tmp_path / "MARKER"
    torch.save({"format": 1, "rng": {"numpy": np.random.get_state()}, "evil": _Payload(marker)}, path)
    before = path.read_bytes()
    with pytest.raises(SystemExit, match="Besides numpy arrays it references `io.open`.*nothing written"):
        ck.main(["convert", str(path)])
    assert not marker.exists() and path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no backup, no temp file


def test_old_format_file_without_numpy_converts_too(tmp_path, capsys):
    # format-1 model.pt and snapshots held no numpy objects: they load as data, only the format number is old
    path = tmp_path / "model.pt"
    torch.save({"format": 1, "kind": "model", "model": {"w": torch.ones(2)}, "snapshots": []}, path)
    with pytest.raises(ck.CheckpointError, match=r"format 1.*Convert it once with `python -m ebm_repro\.checkpoint "
                                                 r"convert .*model\.pt`"):
        ck.load(path)
    ck.main(["convert", str(path)])
    assert torch.equal(ck.load(path)["model"]["w"], torch.ones(2))


def test_convert_refuses_to_overwrite_a_backup_and_non_ebm_repro_files(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"format": 1, "model": {}}, path)
    (tmp_path / "model.pt.format1.bak").write_bytes(b"an earlier backup")
    with pytest.raises(ck.CheckpointError, match="already exists"):
        ck.convert(path)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(1)}, other)
    with pytest.raises(ck.CheckpointError, match="not an ebm-repro checkpoint of format 1; nothing written"):
        ck.convert(other)


# ----------------------------------------------------------------------------- format 2 is plain data
def test_rng_state_round_trips_through_a_data_only_file(tmp_path):
    np.random.seed(1)
    np.random.randn(1)
    random.seed(2)
    random.gauss(0, 1)
    s = ck.rng_state()
    assert s["numpy"]["has_gauss"] == 1 and s["python"]["gauss_next"] is not None  # the cached values count
    ck.save(tmp_path / "r.pt", {"format": ck.FORMAT, "rng": s})
    want = _draws()
    ck.set_rng_state(ck.load(tmp_path / "r.pt")["rng"])
    assert _draws() == want


def test_save_refuses_what_would_need_a_full_unpickle(tmp_path):
    with pytest.raises(ck.CheckpointError, match=r"\['log'\]\[0\]\['IS'\].*numpy\.float64 is not plain data"):
        ck.save(tmp_path / "x.pt", {"format": ck.FORMAT, "log": [{"IS": np.float64(1.0)}]})
    assert list(tmp_path.iterdir()) == []


def _load_calls(node: ast.AST, fn: str = "<module>"):
    """(innermost enclosing function, call, weights_only value) of each torch.load / pickle.load(s) call."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Call) and isinstance(child.func, ast.Attribute) \
                and isinstance(child.func.value, ast.Name) and child.func.value.id in ("torch", "pickle") \
                and child.func.attr in ("load", "loads"):
            wo = [k.value.value for k in child.keywords if k.arg == "weights_only"]
            yield fn, f"{child.func.value.id}.{child.func.attr}", wo[0] if wo else None
        inner = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else fn
        yield from _load_calls(child, inner)


def test_only_the_trusted_path_unpickles_fully():
    # the done-criterion: no weights_only=False outside the explicit, user-confirmed path
    calls = {(str(p.relative_to(ROOT / "src")), *c) for p in (ROOT / "src").rglob("*.py")
             for c in _load_calls(ast.parse(p.read_text()))}
    unsafe = {c for c in calls if c[3] is not True}
    assert unsafe == {("ebm_repro/checkpoint.py", "load_third_party", "torch.load", False)}
    assert ("ebm_repro/checkpoint.py", "load_data", "torch.load", True) in calls


# ----------------------------------------------------------------------------- third-party checkpoints
def test_third_party_plain_file_and_allowlisted_namespace_load_without_trust(tmp_path):
    plain = tmp_path / "plain.pth"
    torch.save({"model_state_dict_0": {"w": torch.arange(3.0)}}, plain)
    assert torch.equal(ck.load_third_party(plain)["model_state_dict_0"]["w"], torch.arange(3.0))
    ns = tmp_path / "ns.pth"
    torch.save({"FLAGS": argparse.Namespace(lr=1e-4, dataset="cifar10")}, ns)
    with pytest.raises(ck.UnsafeCheckpointError, match="argparse.Namespace") as e:
        ck.load_third_party(ns)
    assert e.value.global_name == "argparse.Namespace"
    flags = ck.load_third_party(ns, allow_globals=[argparse.Namespace])["FLAGS"]
    assert vars(flags) == {"lr": 1e-4, "dataset": "cifar10"}


# ----------------------------------------------------------------------------- archives
def _tar(path: Path, members: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return path


@pytest.mark.parametrize("bad", ["dotdot", "absolute", "symlink"])
def test_safe_extract_refuses_members_that_leave_the_folder(tmp_path, bad):
    outside = tmp_path / "outside"
    outside.mkdir()
    name = {"dotdot": "../outside/x", "absolute": str(outside / "x"), "symlink": "ok/link"}[bad]
    links = {name: str(outside)} if bad == "symlink" else {}
    archive = _tar(tmp_path / "a.tar.gz", {"ok/a.txt": b"fine", **({} if links else {name: b"evil"})}, links)
    with tarfile.open(archive) as t:
        assert name in t.getnames()  # the archive really holds the hostile name
    dest = tmp_path / "deep" / "dest"
    dest.parent.mkdir()
    with pytest.raises(DatasetError, match=f"member '{name}' is an? (absolute path|'..' component|link)"):
        safe_extract(archive, dest)
    assert list(outside.iterdir()) == [] and not dest.exists()
    assert [p.name for p in (tmp_path / "deep").iterdir()] == []  # no temp folder left


def test_safe_extract_writes_the_files_of_a_clean_archive(tmp_path):
    archive = _tar(tmp_path / "a.tar.gz", {"d/a.txt": b"alpha", "d/sub/b.txt": b"beta"})
    dest = safe_extract(archive, tmp_path / "dest")
    assert (dest / "d/a.txt").read_bytes() == b"alpha" and (dest / "d/sub/b.txt").read_bytes() == b"beta"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tar.gz", "dest"]
    with pytest.raises(DatasetError, match="already exists"):
        safe_extract(archive, dest)


def test_cifar_batches_are_unpickled_as_arrays_only(tmp_path, monkeypatch):
    # even an archive that passed its md5 check (here: by construction) cannot run code through a batch
    marker = tmp_path / "MARKER"
    archive = _tar(tmp_path / "raw" / "cifar-10-python.tar.gz",
                   {"cifar-10-batches-py/data_batch_1": pickle.dumps({b"data": _Payload(marker)}, protocol=2)})
    monkeypatch.setitem(DATASETS["cifar10"], "md5", hashlib.md5(archive.read_bytes()).hexdigest())
    with pytest.raises(DatasetError, match="data_batch_1 is missing or unreadable.*refusing to load global io.open"):
        prepare_dataset("cifar10", tmp_path)
    assert not marker.exists()
