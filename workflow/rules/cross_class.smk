# E8 -- IGEBM Figs. 6 / 12 (experiments/cross_class.py): Langevin under label b from test images of class a,
# judged by the classifier of E7 (rule train_classifier, workflow/rules/restoration.smk, included before).

from ebm_repro.experiments.cross_class import cross_class_config

CC = cross_class_config(PARAMS, SETTING)

CROSS_CLASS_TARGETS = [f"{PREFIX}results/figures/cross_class.png", f"{PREFIX}results/figures/cross_class.pdf",
                       f"{PREFIX}results/cross_class/cross_class.json"]


rule map_cross_class:
    """results/figures/cross_class.{png,pdf} (E8, IGEBM Figs. 6 / 12) and the target-class shares (JSON)."""
    input:
        model=f"{TRAIN_DIR}/{CC.variant}/model.pt",
        classifier=rules.train_classifier.output[0],
        test=f"{PREFIX}data/{run_config(CC.variant).dataset}/test.npz",
    output:
        png=report(CROSS_CLASS_TARGETS[0], caption="../report/cross_class.rst", category="E08 Cross-class mapping (IGEBM Figs. 6 / 12)"),
        pdf=CROSS_CLASS_TARGETS[1],
        json=CROSS_CLASS_TARGETS[2],
    log:
        f"{PREFIX}logs/map_cross_class.log",
    params:
        data=lambda w, input: outdir(input.test),
        config=stable_hash(asdict(CC), 12),
    threads: THREADS
    resources:
        gpu=1,
    shell:
        "{CLI} map-cross-class {ARGS} --threads {threads} --model {input.model} --classifier {input.classifier} "
        "--data {params.data} --out-png {output.png} --out-json {output.json} > {log} 2>&1"
