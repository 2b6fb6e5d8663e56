rule build_corpus:
    output:
        train=expand(R("corpus/{corpus}/train/{shard}.parquet"), corpus=CORPUS, shard=SHARDS),
        test=expand(R("corpus/{corpus}/test/{task}.parquet"), corpus=CORPUS, task=ALL_TASKS),
        valid=expand(R("corpus/{corpus}/valid/{task}.parquet"), corpus=CORPUS, task=ALL_TASKS),
        manifest=R(f"corpus/{CORPUS}/manifest.json"),
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
