ROW_KEYS = [f"{r['variant']}/{r['mode']}" for r in ROWS]


rule make_inception_table:
    """results/tables/inception.md (E1, E2, E3 top row): one row per variant, paper numbers beside."""
    input:
        metrics=[f"{PREFIX}results/metrics/{k}.json" for k in ROW_KEYS],
        grids=[f"{PREFIX}results/figures/samples_{k.replace('/', '_')}.png" for k in ROW_KEYS] + AUTHORS_GRIDS,
        authors=AUTHORS_METRICS,  # authors.smk: only the entries whose files are present
        checksums=f"{DATA_DIR}/checksums.json",
    output:
        f"{PREFIX}results/tables/inception.md",
    log:
        f"{PREFIX}logs/make_inception_table.log",
    params:
        rows=ROWS,
        authors_entries=AUTHORS,
        authors=lambda w, input: f" --authors-metrics {' '.join(input.authors)}" if input.authors else "",
    threads: 1
    shell:
        "{CLI} table-inception {ARGS} --metrics {input.metrics}{params.authors} --data-checksums {input.checksums} "
        "--out {output} > {log} 2>&1"


INCEPTION_TARGETS = rules.make_inception_table.output
