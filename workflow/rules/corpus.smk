rule build_corpus:
    output:
        train=expand(R("corpus/{corpus}/train/{shard}.parquet"), corpus=CORPUS, shard=SHARDS),
        test=expand(R("corpus/{corpus}/test/{task}.parquet"), corpus=CORPUS, task=ALL_TASKS),
    log:
        R(f"logs/corpus/{CORPUS}.log"),
    benchmark:
        R(f"benchmarks/corpus/{CORPUS}.tsv")
    conda:
        "../../envs/tttnn.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        corpus=config["corpus"],
    script:
        "../scripts/build_corpus.py"
