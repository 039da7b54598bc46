# E13 -- ICD Fig. 6 / 12 (experiments/aug_chains.py): Langevin chains with and without augmentation transitions.
import dataclasses

from ebm_repro.experiments.aug_chains import aug_chains_config

AC = aug_chains_config(PARAMS, SETTING)

AUG_CHAINS_TARGETS = [f"{PREFIX}results/figures/aug_chains.png", f"{PREFIX}results/figures/aug_chains.pdf",
                      f"{PREFIX}results/aug_chains/summary.json"]


rule plot_aug_chains:
    """results/figures/aug_chains.{png,pdf} (E13, ICD Fig. 6 / 12): chains from one start, with and without
    augmentation transitions."""
    input:
        model=f"{TRAIN_DIR}/{AC.variant}/model.pt",
        train=f"{PREFIX}data/{run_config(AC.variant).dataset}/train.npz",  # pairwise-distance scale
    output:
        png=report(AUG_CHAINS_TARGETS[0], caption="../report/aug_chains.rst",
                   category="E13 Augmentation transitions (ICD Fig. 6 / 12)"),
        pdf=AUG_CHAINS_TARGETS[1],
        summary=AUG_CHAINS_TARGETS[2],
    log:
        f"{PREFIX}logs/plot_aug_chains.log",
    benchmark:
        f"{PREFIX}logs/benchmarks/plot_aug_chains.tsv"
    params:
        data=lambda w, input: outdir(input.train),
        block=dataclasses.asdict(AC),
        sampling=run_config(AC.variant).hash("test_sampling"),  # Langevin step and test-time blur
        augment=run_config(AC.variant).hash("augment"),
    threads: THREADS
    resources:
        gpu=1,
    shell:
        "{CLI} plot-aug-chains {ARGS} --threads {threads} --model {input.model} --data {params.data} "
        "--out {output.png} --summary {output.summary} > {log} 2>&1"
