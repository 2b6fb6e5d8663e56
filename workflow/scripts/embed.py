"""Rules embed and embed_queries: texts -> float32 embeddings (.npy)."""

from tttnn import logs, steps

logs.to_file(snakemake.log[0])
logs.set_threads(snakemake.threads)
with logs.cpu_slot(snakemake.threads):
    steps.embed_file(
        snakemake.input[0],
        snakemake.output[0],
        snakemake.params.embedder,
        snakemake.params.column,
        snakemake.params.get("retrieve"),
    )
