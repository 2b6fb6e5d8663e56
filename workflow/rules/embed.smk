rule embed:
    input:
        R("chunks/{corpus}/{embedder}/{shard}.parquet"),
    output:
        R("embeddings/{corpus}/{embedder}/{shard}.npy"),
    log:
        R("logs/embed/{corpus}/{embedder}/{shard}.log"),
    benchmark:
        R("benchmarks/embed/{corpus}/{embedder}/{shard}.tsv")
    conda:
        "../../envs/tttnn.yaml"
    threads: config["job_threads"]
    resources:
        mem_mb=2000,
        runtime=120,
    params:
        embedder=config["embedder"],
        column="text",
    script:
        "../scripts/embed.py"


# every query set (test and validation documents of every task) in one job: one embedder load
rule embed_queries:
    input:
        expand(R("corpus/{{corpus}}/{split}/{task}.parquet"), split=SPLITS, task=ALL_TASKS),
    output:
        expand(R("embeddings/{{corpus}}/{{embedder}}/queries/{split}/{task}.npy"), split=SPLITS, task=ALL_TASKS),
    log:
        R("logs/embed/{corpus}/{embedder}/queries.log"),
    benchmark:
        R("benchmarks/embed/{corpus}/{embedder}/queries.tsv")
    conda:
        "../../envs/tttnn.yaml"
    threads: config["job_threads"]
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        embedder=config["embedder"],
        column="query",
        retrieve=config["retrieve"],
    script:
        "../scripts/embed.py"
