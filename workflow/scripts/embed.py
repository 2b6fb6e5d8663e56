"""Rules embed and embed_queries: texts -> float32 embeddings (.npy), one file per input file."""

from tttnn import logs, steps

p = snakemake.params
with logs.compute_job(snakemake):
    steps.embed_files(list(snakemake.input), list(snakemake.output), p.embedder, p.column, p.get("retrieve"))
