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
        mem_mb=job_res("index", "mem_mb", index_mem_mb),
        runtime=rule_runtime(config, "index"),
        gpu=job_res("index", "gpus", 0),
    params:
        index={k: config["index"][k] for k in ("factory", "train_size")},
    script:
        "../scripts/index.py"
