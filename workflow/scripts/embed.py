"""Rules embed and embed_queries: texts -> float32 embeddings (.npy), one file per input file.

Batch size and device change speed, not the vectors: they are read from the config here, not passed as params,
so lowering embedder.batch_size after an out-of-memory error reruns nothing that finished.
"""

from tttnn import logs, steps

p, emb = snakemake.params, snakemake.config["embedder"]
with logs.compute_job(snakemake):
    steps.embed_files(
        list(snakemake.input),
        list(snakemake.output),
        p.embedder,
        p.column,
        p.get("retrieve"),
        batch_size=emb.get("batch_size", 64),
        device=emb.get("device", "auto"),
    )
