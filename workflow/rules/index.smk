rule index:
    input:
        R("embeddings/{corpus}/{embedder}/{shard}.npy"),
    output:
        R("index/{corpus}/{embedder}/{faiss_index}/{shard}.faiss"),
    log:
        R("logs/index/{corpus}/{embedder}/{faiss_index}/{shard}.log"),
    benchmark:
        R("benchmarks/index/{corpus}/{embedder}/{faiss_index}/{shard}.tsv")
    conda:
        "../../envs/tttnn.yaml"
    threads: config["job_threads"]
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        index=config["index"],
    script:
        "../scripts/index.py"
