rule train_model:
    """Train one variant; resumes from results/train/<variant>/ckpt/last.pt after an interruption."""
    input:
        train=lambda w: f"{variant_data(w)}/train.npz",
        feature_net=lambda w: FEATURE_NET if eval_every(w) else [],
        test=lambda w: f"{variant_data(w)}/test.npz" if eval_every(w) else [],  # FID reference train_test
    output:
        model=f"{PREFIX}results/train/{{variant}}/model.pt",
        log_csv=f"{PREFIX}results/train/{{variant}}/train_log.csv",
        summary=f"{PREFIX}results/train/{{variant}}/train_summary.json",
        config=f"{PREFIX}results/train/{{variant}}/config.yaml",
    log:
        f"{PREFIX}logs/train_{{variant}}.log",
    params:
        data=lambda w, input: outdir(input.train),
        out=lambda w, output: outdir(output.model),
        training_hash=training_hash,
        feature_net=lambda w, input: f"--feature-net {input.feature_net}" if eval_every(w) else "",
    threads: THREADS
    resources:
        gpu=1,
    shell:
        "{CLI} train {ARGS} --threads {threads} --variant {wildcards.variant} "
        "--data {params.data} --out {params.out} {params.feature_net} > {log} 2>&1"
