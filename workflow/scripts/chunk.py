"""Rule chunk: one shard's documents -> retrieval chunks (a hub tokenizer is read from its copy in resources/hub/)."""

from tttnn import logs, steps
from tttnn.models.specs import local_spec

logs.to_file(snakemake.log[0])
tokenizer = local_spec(snakemake.params.tokenizer, snakemake.config["resources_dir"])
steps.chunk_shard(snakemake.input[0], snakemake.output[0], snakemake.params.chunk, tokenizer)
