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
    threads: 2
    resources:
        mem_mb=2000,
        runtime=120,
    params:
        embedder=config["embedder"],
        column="text",
    script:
        "../scripts/embed.py"


rule embed_queries:
    input:
        R("corpus/{corpus}/{split}/{task}.parquet"),
    output:
        R("embeddings/{corpus}/{embedder}/queries/{split}/{task}.npy"),
    log:
        R("logs/embed/{corpus}/{embedder}/queries/{split}/{task}.log"),
    benchmark:
        R("benchmarks/embed/{corpus}/{embedder}/queries/{split}/{task}.tsv")
    conda:
        "../../envs/tttnn.yaml"
    threads: 2
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        embedder=config["embedder"],
        column="query",
        retrieve=config["retrieve"],
    script:
        "../scripts/embed.py"
