# E12 -- ICD Fig. 7 (experiments/low_temperature.py): very-low-temperature samples, ICD vs IGEBM.
import dataclasses

from ebm_repro.experiments.low_temperature import low_temperature_config

LT = low_temperature_config(PARAMS, SETTING)
LT_VARIANTS = [LT.ours, LT.baseline]

LOW_TEMPERATURE_TARGETS = [f"{PREFIX}results/figures/low_temperature.png",
                           f"{PREFIX}results/figures/low_temperature.pdf",
                           f"{PREFIX}results/low_temperature/summary.json"]


rule plot_low_temperature:
    """results/figures/low_temperature.{png,pdf} (E12, ICD Fig. 7): N steps of noise-free descent, ICD vs IGEBM."""
    input:
        models=[f"{TRAIN_DIR}/{v}/model.pt" for v in LT_VARIANTS],
        samples=[f"{PREFIX}results/samples/{v}/single.npz" for v in LT_VARIANTS],  # the chains' start
        train=f"{PREFIX}data/{run_config(LT.ours).dataset}/train.npz",
        feature_net=FEATURE_NET,
    output:
        png=report(LOW_TEMPERATURE_TARGETS[0], caption="../report/low_temperature.rst",
                   category="E12 Low-temperature samples (ICD Fig. 7)"),
        pdf=LOW_TEMPERATURE_TARGETS[1],
        summary=LOW_TEMPERATURE_TARGETS[2],
    log:
        f"{PREFIX}logs/plot_low_temperature.log",
    benchmark:
        f"{PREFIX}logs/benchmarks/plot_low_temperature.tsv"
    params:
        data=lambda w, input: outdir(input.train),
        block=dataclasses.asdict(LT),
        sampling=[run_config(v).hash("test_sampling") for v in LT_VARIANTS],  # step size and clip of the descent
    threads: THREADS
    resources:
        gpu=1,
    shell:
        "{CLI} plot-low-temperature {ARGS} --threads {threads} --models {input.models} --samples {input.samples} "
        "--data {params.data} --feature-net {input.feature_net} --out {output.png} --summary {output.summary} "
        "> {log} 2>&1"
