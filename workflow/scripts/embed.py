"""Rules embed and embed_queries: texts -> float32 embeddings (.npy), one file per input file.

Batch size and device change speed, not the vectors: they are read from the config here, not passed as params,
so lowering embedder.batch_size after an out-of-memory error reruns nothing that finished. A hub embedder or
tokenizer is loaded from its copy under resources/hub/ (an input of the rule), never from the hub.
"""

from tttnn import logs, steps
from tttnn.models import fetch

p, emb = snakemake.params, snakemake.config["embedder"]
texts = snakemake.input.texts
with logs.compute_job(snakemake):
    steps.embed_files(
        [texts] if isinstance(texts, str) else list(texts),
        list(snakemake.output),
        fetch.local_embedder(p.embedder, snakemake.config["resources_dir"]),
        p.column,
        p.get("retrieve"),
        batch_size=emb.get("batch_size", 64),
        device=emb.get("device", "auto"),
    )
