# Chunks are cut with the embedder's tokenizer: their folder ({embedder}) names the embedder and the
# chunking settings, so several embedders' chunks, embeddings and indexes live side by side.


rule chunk:
    input:
        R("corpus/{corpus}/train/{shard}.parquet"),
        tokenizer=chunk_tokenizer_download(),
    output:
        R("chunks/{corpus}/{embedder}/{shard}.parquet"),
    log:
        R("logs/chunk/{corpus}/{embedder}/{shard}.log"),
    benchmark:
        R("benchmarks/chunk/{corpus}/{embedder}/{shard}.tsv")
    conda:
        "../../envs/tttnn.yaml"
    threads: 1
    resources:
        mem_mb=job_res("chunk", "mem_mb", 2000),
        runtime=rule_runtime(config, "chunk"),
        gpu=job_res("chunk", "gpus", 0),
    params:
        chunk=config["chunk"],
        tokenizer=config["embedder"].get("tokenizer") or config["embedder"]["path"],
    script:
        "../scripts/chunk.py"
