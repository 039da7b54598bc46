rule prepare_dataset:
    """Download (paper: CIFAR-10 / MNIST, md5-checked) or generate (smoke: shapes stand-ins) one image dataset."""
    output:
        train=f"{PREFIX}data/{{dataset}}/train.npz",
        test=f"{PREFIX}data/{{dataset}}/test.npz",
        checksums=f"{PREFIX}data/{{dataset}}/checksums.json",
    log:
        f"{PREFIX}logs/prepare_dataset_{{dataset}}.log",
    params:
        out=lambda w, output: outdir(output.train),
    threads: 1
    shell:
        "{PY} -m ebm_repro.data --dataset {wildcards.dataset} --out {params.out} > {log} 2>&1"


rule prepare_feature_net:
    """Paper: fetch and verify the Inception-v3 weights. Smoke: train a classifier on the shapes data."""
    input:
        train=f"{DATA_DIR}/train.npz",
    output:
        FEATURE_NET,
    log:
        f"{PREFIX}logs/prepare_feature_net.log",
    params:
        data=lambda w, input: outdir(input.train),
    threads: THREADS
    shell:
        "{CLI} prepare-feature-net {ARGS} --threads {threads} --data {params.data} --out {output} > {log} 2>&1"
