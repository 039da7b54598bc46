rule sample_model:
    """Test-time Langevin sampling: single model, historical ensemble, or class-conditional."""
    input:
        model=rules.train_model.output.model,
    output:
        f"{PREFIX}results/samples/{{variant}}/{{mode}}.npz",
    log:
        f"{PREFIX}logs/sample_{{variant}}_{{mode}}.log",
    params:
        sampling_hash=sampling_hash,
    threads: THREADS
    resources:
        gpu=1,
    shell:
        "{CLI} sample {ARGS} --threads {threads} --variant {wildcards.variant} --mode {wildcards.mode} "
        "--model {input.model} --out {output} > {log} 2>&1"


rule compute_metrics:
    """IS / FID / KID of one sample set (torch-fidelity, TF-faithful settings)."""
    input:
        samples=rules.sample_model.output[0],
        reference=lambda w: f"{variant_data(w)}/train.npz",
        reference_test=lambda w: f"{variant_data(w)}/test.npz",  # metrics.fid_reference train_test (IGEBM code)
        feature_net=FEATURE_NET,
    output:
        f"{PREFIX}results/metrics/{{variant}}/{{mode}}.json",
    log:
        f"{PREFIX}logs/metrics_{{variant}}_{{mode}}.log",
    params:
        data=lambda w, input: outdir(input.reference),
        metrics=S["metrics"],
        scoring=lambda w: run_config(w.variant).hash("metrics"),
    threads: THREADS
    resources:
        gpu=1,
    shell:
        "{CLI} metrics {ARGS} --threads {threads} --variant {wildcards.variant} --mode {wildcards.mode} "
        "--samples {input.samples} --data {params.data} --feature-net {input.feature_net} "
        "--out {output} > {log} 2>&1"


rule plot_samples:
    """Sample grid as PNG and PDF (per-class rows for the conditional model, IGEBM Fig. 4a)."""
    input:
        rules.sample_model.output[0],
    output:
        png=report(f"{PREFIX}results/figures/samples_{{variant}}_{{mode}}.png", caption="../report/samples.rst",
                   category=lambda w: GRID_CATEGORY.get(w.variant, CAT_GENERATION)),
        pdf=f"{PREFIX}results/figures/samples_{{variant}}_{{mode}}.pdf",
    log:
        f"{PREFIX}logs/plot_{{variant}}_{{mode}}.log",
    threads: 1
    shell:
        "{CLI} plot-samples {ARGS} --variant {wildcards.variant} --mode {wildcards.mode} "
        "--samples {input} --out {output.png} > {log} 2>&1"
