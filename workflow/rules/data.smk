rule prepare_dataset:
    """Download (paper: CIFAR-10, md5-checked) or generate (smoke: shapes) the image dataset."""
    output:
        train=f"{DATA_DIR}/train.npz",
        test=f"{DATA_DIR}/test.npz",
        checksums=f"{DATA_DIR}/checksums.json",
    log:
        f"{PREFIX}logs/prepare_dataset.log",
    params:
        out=lambda w, output: outdir(output.train),
    threads: 1
    shell:
        "{CLI} prepare-data {ARGS} --threads {threads} --out {params.out} > {log} 2>&1"


rule prepare_feature_net:
    """Paper: fetch and verify the Inception-v3 weights. Smoke: train a classifier on the shapes data."""
    input:
        train=rules.prepare_dataset.output.train,
    output:
        FEATURE_NET,
    log:
        f"{PREFIX}logs/prepare_feature_net.log",
    params:
        data=lambda w, input: outdir(input.train),
    threads: THREADS
    shell:
        "{CLI} prepare-feature-net {ARGS} --threads {threads} --data {params.data} --out {output} > {log} 2>&1"
