"""Rule prepare_model: hub id / local dir / GGUF -> a plain local model directory."""

from tttnn import logs, steps

logs.to_file(snakemake.log[0])
steps.prepare_model(snakemake.params.source, snakemake.output[0])
