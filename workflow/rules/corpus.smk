# minipile: one job builds every file (it reads installed packages, not large files). pile: one job per train
# shard streams its own file(s) (shard i <- train file i), and one job samples the test and validation documents.
# Each job receives only the corpus keys that decide its files (corpus_params).

if config["corpus"]["source"] == "pile":

    rule build_corpus_shard:
        output:
            R("corpus/{corpus}/train/{shard}.parquet"),
            stats=R("corpus/{corpus}/train/{shard}.json"),
        log:
            R("logs/corpus/{corpus}/train/{shard}.log"),
        benchmark:
            R("benchmarks/corpus/{corpus}/train/{shard}.tsv")
        conda:
            "../../envs/tttnn.yaml"
        threads: 1
        resources:
            mem_mb=2000,
            runtime=rule_runtime(config, "build_corpus_shard"),
        params:
            corpus=corpus_params("train"),
        script:
            "../scripts/build_corpus.py"

    rule build_corpus:
        output:
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
            mem_mb=2000,
            runtime=rule_runtime(config, "build_corpus"),
        params:
            corpus=corpus_params("test"),
        script:
            "../scripts/build_corpus.py"

else:

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
            runtime=rule_runtime(config, "build_corpus"),
        params:
            corpus=config["corpus"],
        script:
            "../scripts/build_corpus.py"
