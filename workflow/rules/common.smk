# Shared paths and helpers for all rule files (globals PARAMS, SETTING, PREFIX, PY come from the Snakefile).
import functools
import os

from ebm_repro.config import DATASET_SHAPES, resolve
from ebm_repro.datasets_large import LOCAL as LOCAL_DATASETS

S = PARAMS["settings"][SETTING]
DATASET = S["dataset"]
THREADS = S.get("threads", 1)
DATA_DIR = f"{PREFIX}data/{DATASET}"  # the setting's dataset (feature classifier, inception table checksums)
FEATURE_NET = (f"{PREFIX}data/feature_net/pt_inception-2015-12-05-6726825d.pth"
               if S["metrics"]["feature_net"] == "inception"
               else f"{PREFIX}data/feature_net/smoke_classifier.pt")
VARIANTS = sorted(PARAMS["variants"])
ROWS = PARAMS["inception"]["rows"]
CLI = f"{PY} -m ebm_repro"  # every verb, the algorithm's and the experiments' (src/ebm_repro/cli.py)
ARGS = f"--setting {SETTING}"  # every command resolves the same params.yaml under the same setting


wildcard_constraints:
    variant="|".join(VARIANTS),
    mode="single|ensemble",
    dataset="|".join(d for d in DATASET_SHAPES if d not in LOCAL_DATASETS),  # manual downloads: large_data.smk


def outdir(path):
    """Folder of an output file, for commands that write several files."""
    return os.path.dirname(path)


@functools.cache
def run_config(variant):
    """The resolved config of a variant under this setting (resolved once per variant, not per helper call)."""
    return resolve(PARAMS, variant, setting=SETTING, validated=True)


def variant_data(wildcards):
    """Folder of the dataset a variant trains on (variants[v].dataset, or the setting's; smoke: its stand-in)."""
    return f"{PREFIX}data/{run_config(wildcards.variant).dataset}"


def training_hash(wildcards):
    """Changes when a hyperparameter that affects training changes: Snakemake then reruns the job."""
    return run_config(wildcards.variant).training_hash()


def sampling_hash(wildcards):
    return run_config(wildcards.variant).hash("test_sampling")


def eval_every(wildcards):
    """Periodic buffer IS/FID during training (stability curves) needs the feature network as input."""
    return run_config(wildcards.variant).hp.train.eval_every


# Snakemake report (`snakemake --report FILE` after a run): categories, one per experiment (the report's menu sorts
# them alphabetically, hence the two-digit ids), and the Markdown tables it shows as HTML pages (rule
# render_report_tables in audit.smk): table name (results/tables/<name>.md) -> category; caption
# workflow/report/<name>.rst. Each experiment's rule file adds its tables.
CAT_GENERATION = "E01-E03 CIFAR-10 generation (IGEBM Tab. 4b, Figs. 3/4a; ICD Fig. 3)"
REPORT_TABLES = {}
GRID_CATEGORY = {}  # variant -> category of its sample grids (rule plot_samples), when not CAT_GENERATION

TRAIN_DIR = f"{PREFIX}results/train"


def train_files(variants):
    """What the run-comparing commands read from each training folder."""
    return [f"{TRAIN_DIR}/{v}/{n}" for v in variants for n in ("train_log.csv", "train_summary.json", "config.yaml")]


def train_dirs(variants):
    return " ".join(f"{TRAIN_DIR}/{v}" for v in variants)


def single_metrics(variants):
    return [f"{PREFIX}results/metrics/{v}/single.json" for v in variants]
