# Shared paths and helpers for all rule files (globals PARAMS, SETTING, PREFIX, PY come from the Snakefile).
import os

from ebm_repro.config import DATASET_SHAPES, resolve

S = PARAMS["settings"][SETTING]
DATASET = S["dataset"]
THREADS = S.get("threads", 1)
DATA_DIR = f"{PREFIX}data/{DATASET}"  # the setting's dataset (feature classifier, inception table checksums)
FEATURE_NET = (f"{PREFIX}data/feature_net/pt_inception-2015-12-05-6726825d.pth"
               if S["metrics"]["feature_net"] == "inception"
               else f"{PREFIX}data/feature_net/smoke_classifier.pt")
VARIANTS = sorted(PARAMS["variants"])
ROWS = PARAMS["inception_rows"]
CLI = f"{PY} -m ebm_repro.cli"
ARGS = f"--setting {SETTING}"  # every command resolves the same params.yaml under the same setting


wildcard_constraints:
    variant="|".join(VARIANTS),
    mode="single|ensemble|conditional",
    dataset="|".join(DATASET_SHAPES),


def outdir(path):
    """Folder of an output file, for commands that write several files."""
    return os.path.dirname(path)


def variant_data(wildcards):
    """Folder of the dataset a variant trains on (variants[v].dataset, or the setting's; smoke: its stand-in)."""
    return f"{PREFIX}data/{resolve(PARAMS, wildcards.variant, setting=SETTING, validated=True).dataset}"


def training_hash(wildcards):
    """Changes when a hyperparameter that affects training changes: Snakemake then reruns the job."""
    return resolve(PARAMS, wildcards.variant, setting=SETTING, validated=True).training_hash()


def sampling_hash(wildcards):
    return resolve(PARAMS, wildcards.variant, setting=SETTING, validated=True).hash("test_sampling")


def eval_every(wildcards):
    """Periodic buffer IS/FID during training (stability curves) needs the feature network as input."""
    return resolve(PARAMS, wildcards.variant, setting=SETTING, validated=True).hp.train.eval_every
