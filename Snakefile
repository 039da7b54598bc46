# ebm-repro workflow: dataset -> training per variant -> sampling -> metrics -> figures and tables.
#   paper setting (default):  snakemake --cores all results/tables/inception.md
#   smoke setting (CPU, min): snakemake --cores all --config setting=smoke
# Settings come from params.yaml only; they are validated before any job is scheduled.
import sys

from snakemake.utils import min_version

min_version("9.0")

configfile: "params.yaml"

sys.path.insert(0, "src")  # the package also works uninstalled
from ebm_repro.config import ConfigError  # noqa: E402
from ebm_repro.params import validate_params  # noqa: E402

try:
    validate_params(config)
except ConfigError as err:
    raise WorkflowError(f"params.yaml rejected before any job ran:\n{err}")

PARAMS = config
SETTING = config["setting"]
PREFIX = config["settings"][SETTING]["prefix"]
PY = sys.executable


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/sample.smk"
include: "workflow/rules/large_data.smk"  # E17-E19 manual downloads: before the rules whose jobs depend on them
# one rule file per experiment (src/ebm_repro/experiments/)
include: "workflow/rules/authors.smk"
include: "workflow/rules/inception.smk"
include: "workflow/rules/ablation.smk"
include: "workflow/rules/stability.smk"
include: "workflow/rules/kl_grad.smk"
include: "workflow/rules/truncation.smk"
include: "workflow/rules/particle.smk"
include: "workflow/rules/toy2d.smk"
include: "workflow/rules/low_temperature.smk"
include: "workflow/rules/aug_chains.smk"
include: "workflow/rules/neighbours.smk"
include: "workflow/rules/likelihood.smk"
include: "workflow/rules/ood.smk"
include: "workflow/rules/restoration.smk"
include: "workflow/rules/cross_class.smk"  # after restoration.smk: uses its judge classifier
include: "workflow/rules/finetune.smk"
include: "workflow/rules/compose.smk"
include: "workflow/rules/compose_celeba.smk"
include: "workflow/rules/audit.smk"  # after every experiment's file (see its header)

# `snakemake --report results/report.html` after a run (./repro smoke does it for the smoke setting):
# every figure and table marked report(...) in the rules, captioned with the paper place it regenerates.
report: "workflow/report/workflow.rst"


rule all:
    default_target: True
    input:
        INCEPTION_TARGETS,
        PARTICLE_TARGETS,
        ABLATION_TARGETS,
        STABILITY_TARGETS,
        KL_GRAD_TARGETS,
        TRUNCATION_TARGETS,
        TOY2D_TARGETS,
        LOW_TEMPERATURE_TARGETS,
        AUG_CHAINS_TARGETS,
        NEIGHBOURS_TARGETS,
        LIKELIHOOD_TARGETS,
        OOD_TARGETS,
        AUDIT_TARGETS,
        REPORT_PAGES,
        RESTORATION_TARGETS,
        CROSS_CLASS_TARGETS,
        FINETUNE_TARGETS,
        COMPOSE_TARGETS,
        COMPOSE_CELEBA_TARGETS,
