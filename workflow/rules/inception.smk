# A row whose variant trains on a manual download that is not there (large_data.smk) is scored by nothing:
# the table gets that dataset's status.json in its place and prints "not run: dataset missing (put ... at ...)".
ROW_READY = [dataset_ready(run_config(r["variant"]).dataset) for r in ROWS]
ROW_KEYS = [f"{r['variant']}/{r['mode']}" for r, ok in zip(ROWS, ROW_READY) if ok]
ROW_INPUTS = [f"{PREFIX}results/metrics/{r['variant']}/{r['mode']}.json" if ok
              else large_status(run_config(r["variant"]).dataset) for r, ok in zip(ROWS, ROW_READY)]
REPORT_TABLES["inception"] = CAT_GENERATION


rule compute_baseline_metrics:
    """IS/FID of real test images and of uniform noise under the setting's scoring (the scale of every row)."""
    input:
        train=f"{DATA_DIR}/train.npz",
        test=f"{DATA_DIR}/test.npz",
        feature_net=FEATURE_NET,
    output:
        f"{PREFIX}results/metrics/baselines.json",
    log:
        f"{PREFIX}logs/compute_baseline_metrics.log",
    params:
        data=lambda w, input: outdir(input.train),
        metrics=S["metrics"],
    threads: THREADS
    resources:
        gpu=1,
    shell:
        "{CLI} metrics-baselines {ARGS} --threads {threads} --data {params.data} --feature-net {input.feature_net} "
        "--out {output} > {log} 2>&1"


rule make_inception_table:
    """results/tables/inception.md (E1, E2, E3 top row): one row per variant, paper numbers beside."""
    input:
        metrics=ROW_INPUTS,  # one per inception.rows entry, in order
        grids=[f"{PREFIX}results/figures/samples_{k.replace('/', '_')}.png" for k in ROW_KEYS] + AUTHORS_GRIDS,
        authors=AUTHORS_METRICS,  # authors.smk: only the entries whose files are present
        checksums=f"{DATA_DIR}/checksums.json",
        baselines=rules.compute_baseline_metrics.output[0],
    output:
        f"{PREFIX}results/tables/inception.md",
    log:
        f"{PREFIX}logs/make_inception_table.log",
    params:
        rows=ROWS,
        ready=ROW_READY,
        authors_entries=AUTHORS,
        authors=lambda w, input: f" --authors-metrics {' '.join(input.authors)}" if input.authors else "",
    threads: 1
    shell:
        "{CLI} table-inception {ARGS} --metrics {input.metrics}{params.authors} --data-checksums {input.checksums} "
        "--baselines {input.baselines} --out {output} > {log} 2>&1"


INCEPTION_TARGETS = rules.make_inception_table.output
