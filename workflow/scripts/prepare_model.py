"""Rule prepare_model: hub id / local dir / GGUF (whole or split across packages) -> a plain local model directory."""

from tttnn import logs, steps

p = snakemake.params
with logs.compute_job(snakemake):
    steps.prepare_model(p.source, snakemake.output[0], p.join_dir)
