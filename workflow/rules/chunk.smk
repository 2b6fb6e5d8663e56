rule chunk:
    input:
        R("corpus/{corpus}/train/{shard}.parquet"),
    output:
        R("chunks/{corpus}/{shard}.parquet"),
    log:
        R("logs/chunk/{corpus}/{shard}.log"),
    benchmark:
        R("benchmarks/chunk/{corpus}/{shard}.tsv")
    conda:
        "../../envs/tttnn.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        chunk=config["chunk"],
        tokenizer=config["embedder"]["path"],
    script:
        "../scripts/chunk.py"
