"""Rules embed and embed_queries: texts -> float32 embeddings (.npy), one file per input file."""

from tttnn import logs, steps

logs.to_file(snakemake.log[0])
logs.set_threads(snakemake.threads)
p = snakemake.params
with logs.cpu_slot(snakemake.threads):
    steps.embed_files(list(snakemake.input), list(snakemake.output), p.embedder, p.column, p.get("retrieve"))
