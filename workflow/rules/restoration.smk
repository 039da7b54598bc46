# E7 -- IGEBM Fig. 5 (experiments/restoration.py): Langevin restoration of test images, judged by a classifier
# trained here (also the judge of E8, workflow/rules/cross_class.smk).

from dataclasses import asdict

from ebm_repro.config import stable_hash
from ebm_repro.experiments.restoration import restoration_config

RC = restoration_config(PARAMS, SETTING)
RESTORATION = RC.variant
RESTORATION_DATA = f"{PREFIX}data/{run_config(RESTORATION).dataset}"
CLASSIFIER = f"{PREFIX}results/classifier/model.pt"

CAT_RESTORATION = "E07 Image restoration (IGEBM Fig. 5)"
REPORT_TABLES["restoration"] = CAT_RESTORATION

RESTORATION_TARGETS = [f"{PREFIX}results/tables/restoration.md", f"{PREFIX}results/figures/restoration.png",
                       f"{PREFIX}results/figures/restoration.pdf"]


rule train_classifier:
    """The judge of E7/E8: a classifier of the EBM's dataset (paper: ResNet-18 on CIFAR-10), weights + test accuracy."""
    input:
        train=f"{RESTORATION_DATA}/train.npz",
        test=f"{RESTORATION_DATA}/test.npz",
    output:
        CLASSIFIER,
    log:
        f"{PREFIX}logs/train_classifier.log",
    params:
        data=lambda w, input: outdir(input.train),
        config=stable_hash(asdict(RC.classifier), 12),  # Snakemake reruns the job when its settings change
    threads: THREADS
    resources:
        gpu=1,
    shell:
        "{CLI} train-classifier {ARGS} --threads {threads} --data {params.data} --out {output} > {log} 2>&1"


rule restore_images:
    """E7: Langevin from test images (identity, salt-and-pepper, lower-half inpainting); class changes and MSE."""
    input:
        model=f"{TRAIN_DIR}/{RESTORATION}/model.pt",
        classifier=CLASSIFIER,
        test=f"{RESTORATION_DATA}/test.npz",
    output:
        json=f"{PREFIX}results/restoration/restoration.json",
        npz=f"{PREFIX}results/restoration/panel.npz",
    log:
        f"{PREFIX}logs/restore_images.log",
    params:
        data=lambda w, input: outdir(input.test),
        config=stable_hash(asdict(RC), 12),
    threads: THREADS
    resources:
        gpu=1,
    shell:
        "{CLI} restore-images {ARGS} --threads {threads} --model {input.model} --classifier {input.classifier} "
        "--data {params.data} --out-json {output.json} --out-npz {output.npz} > {log} 2>&1"


rule make_restoration_report:
    """results/tables/restoration.md and figures/restoration.{png,pdf} (E7, IGEBM Fig. 5)."""
    input:
        json=rules.restore_images.output.json,
        npz=rules.restore_images.output.npz,
    output:
        table=RESTORATION_TARGETS[0],  # shown as HTML: REPORT_TABLES
        png=report(RESTORATION_TARGETS[1], caption="../report/restoration_figure.rst", category=CAT_RESTORATION),
        pdf=RESTORATION_TARGETS[2],
    log:
        f"{PREFIX}logs/make_restoration_report.log",
    threads: 1
    shell:
        "{CLI} report-restoration {ARGS} --results {input.json} --panel {input.npz} --out-table {output.table} "
        "--out-png {output.png} > {log} 2>&1"
