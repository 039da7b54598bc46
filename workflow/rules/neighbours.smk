# E16 -- IGEBM Fig. 13, ICD Fig. 14 (experiments/neighbours.py): nearest training neighbours of samples.
import dataclasses

from ebm_repro.experiments.neighbours import neighbours_config

NN = neighbours_config(PARAMS, SETTING)

NEIGHBOURS_TARGETS = [f"{PREFIX}results/figures/nearest_neighbours.png",
                      f"{PREFIX}results/figures/nearest_neighbours.pdf",
                      f"{PREFIX}results/neighbours/summary.json"]


rule plot_neighbours:
    """results/figures/nearest_neighbours.{png,pdf} (E16): k nearest training images in pixel and feature space."""
    input:
        samples=[f"{PREFIX}results/samples/{v}/single.npz" for v in NN.variants],
        train=f"{PREFIX}data/{run_config(NN.variants[0]).dataset}/train.npz",
        test=f"{PREFIX}data/{run_config(NN.variants[0]).dataset}/test.npz",  # reference NN distances
        feature_net=FEATURE_NET,
    output:
        png=report(NEIGHBOURS_TARGETS[0], caption="../report/nearest_neighbours.rst",
                   category="E16 Nearest neighbours (IGEBM Fig. 13; ICD Fig. 14)"),
        pdf=NEIGHBOURS_TARGETS[1],
        summary=NEIGHBOURS_TARGETS[2],
    log:
        f"{PREFIX}logs/plot_neighbours.log",
    benchmark:
        f"{PREFIX}logs/benchmarks/plot_neighbours.tsv"
    params:
        data=lambda w, input: outdir(input.train),
        block=dataclasses.asdict(NN),
    threads: THREADS
    resources:
        gpu=1,
    shell:
        "{CLI} plot-neighbours {ARGS} --threads {threads} --samples {input.samples} --data {params.data} "
        "--feature-net {input.feature_net} --out {output.png} --summary {output.summary} > {log} 2>&1"
